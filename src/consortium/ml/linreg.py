"""Linear least squares trained by minibatch SGD, registered as ``linreg``.

The model is ``y_hat = x @ W + b`` with the mean squared error plus ``l2 / 2 * ||W||^2``
(ridge) as its loss. A batch of ``B`` rows has the gradient ``2 / B * x.T @ (y_hat - y)``;
the penalty is applied as weight decay. Same allocation-free inner loop as ``logreg``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from consortium.errors import ConfigError
from consortium.ml._affine import AffineModel, EpochRunner
from consortium.ml.model import MODELS, r2_score

__all__ = ["LinearRegression"]


@MODELS.decorator("linreg")
class LinearRegression(AffineModel):
    """Least-squares regression of one target; weights ``W`` (features, 1) and ``b`` (1,),
    float32, initialised to zero (so ``seed`` is unused)."""

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
