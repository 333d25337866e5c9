"""The numpy models that compute ``x @ W + b``, trained by minibatch SGD: softmax regression
(``logreg``) and least squares (``linreg``), with an ``l2 / 2 * ||W||^2`` penalty applied as
weight decay, ``W <- (1 - lr * l2) W``, which is the same step.

The parameters live in one float32 matrix ``theta`` of shape ``(features + 1, outputs)``
whose last row is ``b``. ``fit`` copies the rows once into a buffer with a trailing column
of ones, so that the bias is learnt by the same matrix product as ``W``; each epoch gathers
the rows in that epoch's random order into a second buffer, whose minibatches are contiguous
views made once per ``fit``. The inner loops allocate nothing: each step writes through
``out=`` into scratch buffers or into per-row arrays from which the epoch's loss is computed
once, after the last epoch, instead of once per batch. The weights start at zero (the
registry's ``seed`` is unused): for these convex problems that is the unique symmetric start.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from consortium.errors import ConfigError
from consortium.ml._checks import check_positive_int
from consortium.ml.model import (
    MODELS,
    Correction,
    accuracy,
    check_fit_args,
    check_weights,
    r2_score,
)

__all__ = ["AffineModel", "EpochRunner", "LinearRegression", "SoftmaxRegression"]

#: ``(run_one_epoch, loss_of_the_last_epoch)``, made by a subclass for one ``fit`` call.
EpochRunner = tuple[Callable[[], None], Callable[[], float]]


class AffineModel:
    """Base of :class:`SoftmaxRegression` and :class:`LinearRegression`; subclasses supply the
    targets, the inner loop and the evaluation."""

    def __init__(self, *, n_features: int, n_outputs: int, l2: float = 0.0) -> None:
        self.n_features = check_positive_int(n_features, "n_features")
        self.n_outputs = check_positive_int(n_outputs, "n_outputs")
        penalty = float(l2)
        if not np.isfinite(penalty) or penalty < 0.0:
            raise ConfigError(f"l2 must be a non-negative number, got {l2!r}")
        self.l2 = penalty
        self._theta = np.zeros((self.n_features + 1, self.n_outputs), dtype=np.float32)
        self._grad = np.empty_like(self._theta)

    def get_weights(self) -> dict[str, np.ndarray]:
        return {"W": self._theta[:-1].copy(), "b": self._theta[-1].copy()}

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        views = {"W": self._theta[:-1], "b": self._theta[-1]}
        checked = check_weights({k: (v.shape, v.dtype) for k, v in views.items()}, weights)
        for name, view in views.items():
            view[...] = checked[name]

    def num_parameters(self) -> int:
        return int(self._theta.size)

    def fit(
        self,
        x: np.ndarray,
        y: np.ndarray,
        *,
        epochs: int,
        batch_size: int,
        lr: float,
        rng: np.random.Generator,
        correction: Correction | None = None,
    ) -> dict[str, float]:
        x, y = np.asarray(x), np.asarray(y)
        check_fit_args(x, y, epochs=epochs, batch_size=batch_size, lr=lr)
        features = self._features(x)
        targets = self._targets(y)
        n = len(features)
        rows = np.hstack([features, np.ones((n, 1), dtype=np.float32)])
        xs = np.empty_like(rows)
        ts = np.empty_like(targets)
        update = self._update(float(lr), correction)
        run_epoch, last_loss = self._runner(xs, ts, int(batch_size), float(lr), update)
        for _ in range(int(epochs)):
            order = rng.permutation(n)
            # mode="clip" skips the bounds check (and its buffering): order is a permutation
            np.take(rows, order, axis=0, out=xs, mode="clip")
            np.take(targets, order, axis=0, out=ts, mode="clip")
            run_epoch()
        steps = int(epochs) * len(range(0, n, int(batch_size)))
        return {"loss": last_loss(), "steps": float(steps)}

    def _as_theta(self, arrays: Mapping[str, np.ndarray], what: str) -> np.ndarray | None:
        """``{"W", "b"}`` (any floating dtype) laid out like ``theta``, zeros for a missing
        one; None when empty."""
        if not arrays:
            return None
        unknown = set(arrays) - {"W", "b"}
        if unknown:
            raise ValueError(f"correction {what} names unknown arrays {sorted(unknown)}")
        out = np.zeros_like(self._theta)
        for name, target in (("W", out[:-1]), ("b", out[-1])):
            if name in arrays:
                arr = np.asarray(arrays[name])
                if arr.shape != target.shape:
                    raise ValueError(
                        f"correction {what} {name!r} has shape {arr.shape}, "
                        f"the model needs {target.shape}"
                    )
                target[...] = arr
        return out

    def _update(self, lr: float, correction: Correction | None) -> Callable[[], None]:
        """The update once a batch has left its gradient, scaled by ``lr``, in ``self._grad``:
        add ``lr * (mu * (theta - anchor) + shift)``, decay ``W`` by ``l2``, subtract; no
        allocation per step."""
        theta, grad, w = self._theta, self._grad, self._theta[:-1]
        correction = correction or Correction()
        anchor = self._as_theta(correction.anchor or {}, "anchor")
        shift = self._as_theta(correction.shift or {}, "shift")
        pull = np.float32(lr * correction.mu)
        scaled_shift = None if shift is None else (shift * np.float32(lr))
        scratch = np.empty_like(theta)
        decay = np.float32(1.0 - lr * self.l2)
        shrink = self.l2 > 0.0

        def update() -> None:
            if anchor is not None and pull:
                np.subtract(theta, anchor, out=scratch)
                np.multiply(scratch, pull, out=scratch)
                np.add(grad, scratch, out=grad)
            if scaled_shift is not None:
                np.add(grad, scaled_shift, out=grad)
            if shrink:
                np.multiply(w, decay, out=w)
            np.subtract(theta, grad, out=theta)

        return update

    def _features(self, x: np.ndarray) -> np.ndarray:
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"x must have shape (rows, {self.n_features}), got {x.shape}")
        return np.ascontiguousarray(x, dtype=np.float32)

    def _affine(self, x: np.ndarray) -> np.ndarray:
        """``x @ W + b`` in float32 for evaluation."""
        features = self._features(np.asarray(x))
        out: np.ndarray = features @ self._theta[:-1]
        out += self._theta[-1]
        return out

    def _targets(self, y: np.ndarray) -> np.ndarray:
        """Targets as a float32 ``(rows, outputs)`` matrix."""
        raise NotImplementedError

    def _runner(
        self, xs: np.ndarray, ts: np.ndarray, batch_size: int, lr: float, update: Callable[[], None]
    ) -> EpochRunner:
        """The SGD epoch over the shuffled buffers ``xs`` (rows with a column of ones) and
        ``ts`` (targets), calling ``update()`` once each batch's gradient is in ``self._grad``,
        and the mean loss of the epoch last run."""
        raise NotImplementedError


@MODELS.decorator("logreg")
class SoftmaxRegression(AffineModel):
    """Multinomial logistic regression, ``p = softmax(x @ W + b)``, over ``n_classes``
    classes, trained on the mean cross-entropy; weights ``W`` (features, classes) and ``b``
    (classes,), float32. The gradient of a batch of ``B`` rows is ``x.T @ (p - onehot(y)) / B``
    (the bias takes the column sums)."""

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


@MODELS.decorator("linreg")
class LinearRegression(AffineModel):
    """Least squares, ``y_hat = x @ W + b``, for one target, trained on the mean squared error
    (with ``l2``: ridge); weights ``W`` (features, 1) and ``b`` (1,), float32. A batch of ``B``
    rows has the gradient ``2 / B * x.T @ (y_hat - y)``."""

    def __init__(
        self, *, n_features: int, n_classes: int | None = None, seed: int = 0, l2: float = 0.0
    ) -> None:
        if n_classes is not None:
            raise ConfigError(
                f"linreg needs a regression dataset, got one with {n_classes} classes; "
                "use logreg for classification"
            )
        super().__init__(n_features=n_features, n_outputs=1, l2=l2)

    def _targets(self, y: np.ndarray) -> np.ndarray:
        target = np.asarray(y)
        if not np.issubdtype(target.dtype, np.number) or not np.all(np.isfinite(target)):
            raise ValueError("linreg needs finite numeric targets")
        return np.ascontiguousarray(target, dtype=np.float32).reshape(-1, 1)

    def _runner(
        self, xs: np.ndarray, ts: np.ndarray, batch_size: int, lr: float, update: Callable[[], None]
    ) -> EpochRunner:
        n = len(ts)
        theta, grad = self._theta, self._grad
        residuals = np.empty_like(ts)  # prediction minus target, for every row
        batches = []
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            xb = xs[start:stop]
            step = np.float32(2.0 * lr / (stop - start))
            batches.append((xb, xb.T, ts[start:stop], residuals[start:stop], step))
        dot, subtract, multiply = np.dot, np.subtract, np.multiply

        def run_epoch() -> None:
            for xb, xbt, tb, r, step in batches:
                dot(xb, theta, out=r)
                subtract(r, tb, out=r)
                dot(xbt, r, out=grad)
                multiply(grad, step, out=grad)
                update()

        def last_loss() -> float:
            return float(np.square(residuals.astype(np.float64)).mean())

        return run_epoch, last_loss

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predicted targets, float32, shape (rows,)."""
        return self._affine(x)[:, 0]

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        target = self._targets(y)[:, 0].astype(np.float64)
        if len(target) == 0:
            raise ValueError("cannot evaluate on zero rows")
        predicted = self.predict(x).astype(np.float64)
        mse = float(np.mean((predicted - target) ** 2))
        return {"loss": mse, "r2": r2_score(predicted, target)}
