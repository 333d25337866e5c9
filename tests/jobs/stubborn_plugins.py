"""Test plugin: a model whose party ignores SIGTERM, so that only SIGKILL ends it.

The job names this module under ``plugins``; each party imports it locally, on its main
thread, and the parties named in ``STUBBORN`` ignore SIGTERM from then on.
"""

from __future__ import annotations

import signal
import sys

from consortium.ml import MODELS, SoftmaxRegression

STUBBORN = ("aggregator",)

if "--party" in sys.argv and sys.argv[sys.argv.index("--party") + 1] in STUBBORN:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def stubborn(*, n_features: int, n_classes: int | None, seed: int) -> SoftmaxRegression:
    assert n_classes is not None
    return SoftmaxRegression(n_features=n_features, n_classes=n_classes)


MODELS.register("stubborn_logreg", stubborn, force=True)
