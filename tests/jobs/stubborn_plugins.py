"""Test plugin: a model whose party ignores SIGTERM, so that only SIGKILL ends it.

The job names this module under ``plugins``; each party imports it locally.
"""

from __future__ import annotations

import signal
import sys

from consortium.ml import MODELS, SoftmaxRegression


def stubborn(
    *, n_features: int, n_classes: int | None, seed: int, parties: list[str]
) -> SoftmaxRegression:
    argv = sys.argv
    if "--party" in argv and argv[argv.index("--party") + 1] in parties:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    assert n_classes is not None
    return SoftmaxRegression(n_features=n_features, n_classes=n_classes)


MODELS.register("stubborn_logreg", stubborn, force=True)
