"""Simulated attackers for robustness experiments (named under ``plugins:`` in a job).

``horizontal/scaled_attacker`` trains like an honest trainer, then sends back the global
model plus its own update scaled by ``SCALE`` (a sign-flipping, boosted model-poisoning
attack). Give a role this program in the topology to make its parties attackers.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from consortium.horizontal import Trainer
from consortium.runtime import PROGRAMS

SCALE = -10.0


class ScaledAttacker(Trainer):
    def outgoing(
        self, received: Mapping[str, np.ndarray], trained: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        return {
            k: (received[k] + SCALE * (v - received[k])).astype(v.dtype)
            if v.dtype.kind == "f"
            else v
            for k, v in trained.items()
        }


PROGRAMS.register("horizontal/scaled_attacker", ScaledAttacker)
