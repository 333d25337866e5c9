"""Multinomial logistic regression (softmax regression) in numpy, registered as ``logreg``.

The model is ``p = softmax(x @ W + b)`` trained on the mean cross-entropy plus
``l2 / 2 * ||W||^2`` by minibatch SGD. The gradient of a batch of ``B`` rows is
``x.T @ (p - onehot(y)) / B`` (the bias takes the column sums), and the penalty is applied as
weight decay, ``W <- (1 - lr * l2) W``, which is the same step.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from consortium.errors import ConfigError
from consortium.ml._affine import AffineModel, EpochRunner
from consortium.ml.model import MODELS, accuracy

__all__ = ["SoftmaxRegression"]


@MODELS.decorator("logreg")
class SoftmaxRegression(AffineModel):
    """Softmax regression over ``n_classes`` classes; weights ``W`` (features, classes) and
    ``b`` (classes,), float32, initialised to zero, the unique symmetric start of this convex
    problem (so ``seed`` is unused)."""

    def __init__(
        self, *, n_features: int, n_classes: int | None, seed: int = 0, l2: float = 0.0
    ) -> None:
        if n_classes is None or n_classes < 2:
            raise ConfigError(
                f"logreg needs a classification dataset with at least 2 classes, got "
                f"n_classes={n_classes!r}; use linreg for regression"
            )
        super().__init__(n_features=n_features, n_outputs=n_classes, l2=l2)
        self.n_classes = self.n_outputs

    def _labels(self, y: np.ndarray) -> np.ndarray:
        labels = np.asarray(y)
        if not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"logreg needs integer class labels, got dtype {labels.dtype}")
        if len(labels) and (labels.min() < 0 or labels.max() >= self.n_classes):
            raise ValueError(f"labels must lie in [0, {self.n_classes})")
        return labels

    def _targets(self, y: np.ndarray) -> np.ndarray:
        labels = self._labels(y)
        onehot = np.zeros((len(labels), self.n_classes), dtype=np.float32)
        onehot[np.arange(len(labels)), labels] = 1.0
        return onehot

    def _runner(
        self, xs: np.ndarray, ts: np.ndarray, batch_size: int, lr: float, update: Callable[[], None]
    ) -> EpochRunner:
        n, k = len(ts), int(ts.shape[1])
        theta, grad = self._theta, self._grad
        shifted = np.empty_like(ts)  # logits minus their row maximum, for every row
        sums = np.empty((n, 1), dtype=np.float32)  # sum over classes of exp(shifted)
        logits = np.empty((min(batch_size, n), k), dtype=np.float32)
        peaks = np.empty((min(batch_size, n), 1), dtype=np.float32)
        batches = []
        for start in range(0, n, batch_size):
            size = min(batch_size, n - start)
            rows = slice(start, start + size)
            views = (xs[rows], xs[rows].T, ts[rows], shifted[rows], sums[rows])
            batches.append((*views, logits[:size], peaks[:size], np.float32(lr / size)))
        dot, subtract, multiply, divide, exp = np.dot, np.subtract, np.multiply, np.divide, np.exp
        row_max, row_sum = np.maximum.reduce, np.add.reduce

        def run_epoch() -> None:
            for xb, xbt, tb, sh, total, z, peak, step in batches:
                dot(xb, theta, out=z)  # logits
                row_max(z, axis=1, keepdims=True, out=peak)
                subtract(z, peak, out=sh)  # <= 0, so exp cannot overflow
                exp(sh, out=z)
                row_sum(z, axis=1, keepdims=True, out=total)
                divide(z, total, out=z)  # probabilities
                subtract(z, tb, out=z)  # batch size times d loss / d logits
                dot(xbt, z, out=grad)
                multiply(grad, step, out=grad)
                update()

        def last_loss() -> float:
            # cross-entropy of a row: log(sum_j exp(shifted_j)) - shifted_label
            log_sums = float(np.log(sums).sum(dtype=np.float64))
            true_class = float((ts * shifted).sum(dtype=np.float64))
            return (log_sums - true_class) / n

        return run_epoch, last_loss

    def log_proba(self, x: np.ndarray) -> np.ndarray:
        """Log class probabilities, float64, shape (rows, classes)."""
        logits = self._affine(x).astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        logits -= np.log(np.exp(logits).sum(axis=1, keepdims=True))
        return logits

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The most probable class of each row."""
        return np.asarray(np.argmax(self._affine(x), axis=1))

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        labels = self._labels(y)
        if len(labels) == 0:
            raise ValueError("cannot evaluate on zero rows")
        logp = self.log_proba(x)
        loss = float(-logp[np.arange(len(labels)), labels].mean())
        return {"loss": loss, "accuracy": accuracy(np.argmax(logp, axis=1), labels)}
