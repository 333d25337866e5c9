"""Simulated attackers for robustness experiments (named under ``plugins:`` in a job).

``horizontal/scaled_attacker`` trains like an honest trainer, then sends back the global
model plus its own update scaled by ``SCALE`` (a sign-flipping, boosted model-poisoning
attack). Give a role this program in the topology to make its parties attackers.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import numpy as np

from consortium.client import FitConfig, sgd_client
from consortium.horizontal import Trainer
from consortium.runtime import PROGRAMS, LocalData

SCALE = -10.0


def scaled_attack(
    weights: Mapping[str, np.ndarray], data: LocalData, config: FitConfig, rng: np.random.Generator
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    trained, metrics = sgd_client(weights, data, config, rng)
    poisoned = {
        k: (weights[k] + SCALE * (v - weights[k])).astype(v.dtype) if v.dtype.kind == "f" else v
        for k, v in trained.items()
    }
    return poisoned, metrics


PROGRAMS.register("horizontal/scaled_attacker", functools.partial(Trainer, client=scaled_attack))
