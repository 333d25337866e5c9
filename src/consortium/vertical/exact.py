"""The exact least-squares (ridge) solver, without pooling features: CGLS, conjugate gradients
on the normal equations ``(X^T X + lam D) w = X^T y`` (Hestenes and Stiefel (1952), "Methods
of Conjugate Gradients for Solving Linear Systems", J. Res. NBS 49; Bjorck (1996),
"Numerical Methods for Least Squares Problems", SIAM, section 7.4). In exact arithmetic it
ends in at most as many steps as there are unknowns, with the closed-form solution.

The unknowns split by column blocks, one per party: each keeps its weights ``w_p``, search
direction ``p_p`` and gradient ``s_p = X_p^T r - lam D_p w_p`` to itself. The master holds the
residual ``r`` (it starts as ``y``) and the scalars. ``D`` is 1 on every weight and 0 on the
intercept, which the master's block carries as a column of ones, so the intercept is not
penalised (as in scikit-learn's ``Ridge``).

Per step the parties exchange exactly what honest gradient training exchanges: the master
sends the residual ``r`` (label-derived) and members return ``X_p p_p`` (a partial output)
and squared norms.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["CglsBlock", "cgls"]


class CglsBlock:
    """One party's block of the unknowns; ``weight`` is updated in place."""

    def __init__(
        self, *, x: np.ndarray, weight: np.ndarray, penalised: np.ndarray, lam: float
    ) -> None:
        self.x = np.asarray(x, dtype=np.float64)
        self.w = weight  # a view into the party's model, shape (columns,)
        self.d = np.asarray(penalised, dtype=np.float64)
        self.lam = float(lam)
        self.p = np.zeros_like(self.w)
        self.s = np.zeros_like(self.w)

    def residual(self, alpha: float, r: np.ndarray) -> float:
        """Take the step ``w += alpha p``; then the new gradient block and its squared norm."""
        self.w += alpha * self.p
        self.s = self.x.T @ r - self.lam * self.d * self.w
        return float(self.s @ self.s)

    def direction(self, beta: float) -> tuple[np.ndarray, float]:
        """The new direction ``p = s + beta p``; returns ``X_p p_p`` and ``lam |D_p p_p|^2``."""
        self.p = self.s + beta * self.p
        dp = self.d * self.p
        return self.x @ self.p, self.lam * float(dp @ dp)


Residuals = Callable[[float, np.ndarray], float]
Directions = Callable[[float], tuple[np.ndarray, float]]


def cgls(
    y: np.ndarray,
    *,
    residual: Residuals,
    direction: Directions,
    tolerance: float,
    max_steps: int,
) -> int:
    """Run CGLS over all blocks: ``residual(alpha, r)`` and ``direction(beta)`` apply the
    step to every block and return the sums. Returns the number of steps taken."""
    r = np.array(y, dtype=np.float64)
    gamma = residual(0.0, r)
    start = gamma
    if start == 0.0:
        return 0
    beta = 0.0
    for step in range(1, max_steps + 1):
        q, penalty = direction(beta)
        delta = float(q @ q) + penalty
        if delta == 0.0:
            return step - 1
        alpha = gamma / delta
        r = r - alpha * q  # a new array: the old one may still be in flight
        fresh = residual(alpha, r)
        if np.sqrt(fresh) <= tolerance * np.sqrt(start):
            return step
        beta, gamma = fresh / gamma, fresh
    return max_steps
