"""Shared state and SGD scaffolding for the numpy models that compute ``x @ W + b``.

The parameters live in one float32 matrix ``theta`` of shape ``(features + 1, outputs)``
whose last row is ``b``. ``fit`` copies the rows once into a buffer with a trailing column
of ones, so that the bias is learnt by the same matrix product as ``W``; each epoch gathers
the rows in that epoch's random order into a second buffer, whose minibatches are contiguous
views made once per ``fit``. The inner loops allocate nothing: each step writes through
``out=`` into scratch buffers or into per-row arrays from which the epoch's loss is computed
once, after the last epoch, instead of once per batch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from consortium.errors import ConfigError
from consortium.ml._checks import check_positive_int
from consortium.ml.model import Correction, check_fit_args, check_weights

__all__ = ["AffineModel", "EpochRunner"]

#: ``(run_one_epoch, loss_of_the_last_epoch)``, made by a subclass for one ``fit`` call.
EpochRunner = tuple[Callable[[], None], Callable[[], float]]


class AffineModel:
    """Base of :class:`~consortium.ml.logreg.SoftmaxRegression` and
    :class:`~consortium.ml.linreg.LinearRegression`; subclasses supply the targets, the
    inner loop and the evaluation."""

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
        spec = {
            "W": ((self.n_features, self.n_outputs), np.dtype(np.float32)),
            "b": ((self.n_outputs,), np.dtype(np.float32)),
        }
        checked = check_weights(spec, weights)
        self._theta[:-1] = checked["W"]
        self._theta[-1] = checked["b"]

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
        x = np.asarray(x)
        y = np.asarray(y)
        check_fit_args(x, y, epochs=epochs, batch_size=batch_size, lr=lr)
        features = self._features(x)
        targets = self._targets(y)
        n, d = features.shape
        rows = np.empty((n, d + 1), dtype=np.float32)
        rows[:, :d] = features
        rows[:, d] = 1.0
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
        add ``lr * (mu * (theta - anchor) + shift)``, decay ``W`` by ``l2``, subtract. It
        allocates nothing."""
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
