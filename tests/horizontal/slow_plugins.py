"""Test plugin: a model whose named parties train ``factor`` times as long (same result).

Under the processes launcher the party's name comes from its command line.
"""

from __future__ import annotations

import sys
from typing import Any

from consortium.ml import MODELS, SoftmaxRegression


def _this_party() -> str | None:
    argv = sys.argv
    return argv[argv.index("--party") + 1] if "--party" in argv else None


class _Slow(SoftmaxRegression):
    def __init__(self, *, factor: int, parties: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._factor, self._parties = factor, parties

    def fit(self, x, y, **kwargs):  # type: ignore[no-untyped-def]
        if _this_party() in self._parties:
            for _ in range(self._factor - 1):  # the same work again, thrown away
                self.evaluate(x, y)
                super().get_weights()
                SoftmaxRegression.fit(_scratch(self), x, y, **kwargs)
        return super().fit(x, y, **kwargs)


def _scratch(model: _Slow) -> SoftmaxRegression:
    copy = SoftmaxRegression(n_features=model.n_features, n_classes=model.n_classes)
    copy.set_weights(model.get_weights())
    return copy


@MODELS.decorator("slow_logreg")
def slow(
    *, n_features: int, n_classes: int | None, seed: int, factor: int = 20, parties: list[str]
) -> _Slow:
    assert n_classes is not None
    return _Slow(factor=factor, parties=parties, n_features=n_features, n_classes=n_classes)
