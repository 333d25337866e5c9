"""Test plugins: a model that crashes or gets its own process killed at a chosen fit call
(only while the environment variable ``only_if_env`` names is set, when one is named).

The job names this module under ``plugins``; each party imports it locally.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import numpy as np

from consortium.ml import MODELS, SoftmaxRegression


def _this_party() -> str | None:
    argv = sys.argv
    return argv[argv.index("--party") + 1] if "--party" in argv else None


class _Faulty(SoftmaxRegression):
    def __init__(
        self,
        *,
        fault: str,
        at_call: int,
        parties: list[str] | None,
        only_if_env: str | None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._fault, self._at, self._parties, self._calls = fault, at_call, parties, 0
        self._armed = only_if_env is None or only_if_env in os.environ

    def fit(self, x, y, **kwargs):  # type: ignore[no-untyped-def]
        self._calls += 1
        party_chosen = self._parties is None or _this_party() in self._parties
        if self._armed and self._calls >= self._at and party_chosen:
            if self._fault == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if self._fault == "raise":
                raise RuntimeError("simulated bug in local training")
            self._poisoned = True  # "nan": train, then send NaN weights
        return super().fit(x, y, **kwargs)

    def get_weights(self):  # type: ignore[no-untyped-def]
        weights = super().get_weights()
        if getattr(self, "_poisoned", False):
            weights = {k: np.full_like(v, np.nan) for k, v in weights.items()}
        return weights


def faulty(
    *,
    n_features: int,
    n_classes: int | None,
    seed: int,
    fault: str = "raise",
    at_call: int = 2,
    parties: list[str] | None = None,
    only_if_env: str | None = None,
) -> _Faulty:
    assert n_classes is not None
    return _Faulty(
        fault=fault,
        at_call=at_call,
        parties=parties,
        only_if_env=only_if_env,
        n_features=n_features,
        n_classes=n_classes,
    )


MODELS.register("faulty_logreg", faulty, force=True)
