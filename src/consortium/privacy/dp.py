"""Differential privacy: the Laplace and Gaussian mechanisms, noise split across parties,
and a per-source budget accountant.

A statistic ``f`` of a table has *sensitivity* ``Δ``: the most one row, added or removed,
can change it (in the L1 norm for Laplace, L2 for Gaussian). Releasing ``f + noise`` is

* **Laplace** (Dwork, McSherry, Nissim and Smith (2006), "Calibrating Noise to Sensitivity in
  Private Data Analysis", TCC): noise ``Laplace(0, b)`` with ``b = Δ1 / ε`` gives ε-DP;
* **Gaussian** (Dwork and Roth (2014), "The Algorithmic Foundations of Differential
  Privacy", Theorem A.1): noise ``N(0, sigma²)`` with ``sigma = Δ2 · sqrt(2 ln(1.25 / δ)) / ε``
  gives (ε, δ)-DP for ``ε < 1``.

Nobody holds the exact statistic: each of ``n`` parties adds a *share* of the noise to its
own partial sum before secure summation, and the shares add up to the mechanism's noise.
Gaussian shares are ``N(0, sigma²/n)``. Laplace is infinitely divisible: with ``G1, G2`` i.i.d.
``Gamma(1/n, b)``, the ``n`` shares ``G1 - G2`` sum to ``Laplace(0, b)`` (Kotz, Kozubowski and
Podgórski (2001), "The Laplace Distribution and Generalizations", sec. 2.4.1). A coalition that
knows some parties' shares can remove them: the guarantee then weakens to the remaining
shares' noise, as in every distributed-noise scheme.

:class:`Accountant` keeps one budget per data source and composes sequentially (Dwork and
Roth, Theorem 3.16: the ε's and the δ's add up); a charge past the budget is refused with
:class:`BudgetExceeded` and spends nothing.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from consortium.errors import ConsortiumError
from consortium.registry import Registry

__all__ = [
    "MECHANISMS",
    "Accountant",
    "Budget",
    "BudgetExceeded",
    "Mechanism",
    "gaussian_sigma",
    "laplace_scale",
    "noise_share",
]

# Budgets are compared with this slack so that ε's like 0.1 + 0.2 that add up to the budget
# exactly in decimal are not refused for a floating-point rounding of 1e-16.
_SLACK = 1e-12


class BudgetExceeded(ConsortiumError):
    """A query would spend more privacy budget than its data source has left."""


@dataclass(frozen=True, slots=True)
class Budget:
    """A privacy cost or allowance: ``epsilon`` and ``delta`` (0 for pure ε-DP)."""

    epsilon: float
    delta: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.epsilon) and self.epsilon >= 0):
            raise ValueError(f"epsilon must be a finite number >= 0, got {self.epsilon!r}")
        if not 0 <= self.delta <= 1:
            raise ValueError(f"delta must be in [0, 1], got {self.delta!r}")

    def __add__(self, other: Budget) -> Budget:
        return Budget(self.epsilon + other.epsilon, min(self.delta + other.delta, 1.0))

    def covers(self, cost: Budget) -> bool:
        return cost.epsilon <= self.epsilon + _SLACK and cost.delta <= self.delta + _SLACK


def laplace_scale(sensitivity: float, epsilon: float) -> float:
    """The Laplace mechanism's scale ``b = Δ1 / ε``."""
    if sensitivity < 0 or epsilon <= 0:
        raise ValueError("the Laplace mechanism needs sensitivity >= 0 and epsilon > 0")
    return sensitivity / epsilon


def gaussian_sigma(sensitivity: float, epsilon: float, delta: float) -> float:
    """The Gaussian mechanism's ``sigma = Δ2 · sqrt(2 ln(1.25/δ)) / ε`` (valid for ε < 1)."""
    if sensitivity < 0 or not 0 < epsilon < 1 or not 0 < delta < 1:
        raise ValueError(
            "the Gaussian mechanism needs sensitivity >= 0, 0 < epsilon < 1, 0 < delta < 1"
        )
    return sensitivity * math.sqrt(2.0 * math.log(1.25 / delta)) / epsilon


@dataclass(frozen=True, slots=True)
class Mechanism:
    """A noise mechanism: ``scale(sensitivity, ε, δ)`` (L1 sensitivity for Laplace, L2 for
    Gaussian) and ``share(rng, scale, parties, shape)``, one of ``parties`` shares whose sum
    has the mechanism's distribution."""

    needs_delta: bool
    scale: Callable[[float, float, float], float]
    share: Callable[[np.random.Generator, float, int, tuple[int, ...]], np.ndarray]


def _laplace_share(
    rng: np.random.Generator, scale: float, parties: int, shape: tuple[int, ...]
) -> np.ndarray:
    if scale == 0:
        return np.zeros(shape)
    shape_k = 1.0 / parties
    return rng.gamma(shape_k, scale, size=shape) - rng.gamma(shape_k, scale, size=shape)


def _gaussian_share(
    rng: np.random.Generator, scale: float, parties: int, shape: tuple[int, ...]
) -> np.ndarray:
    return rng.normal(0.0, scale / math.sqrt(parties), size=shape)


MECHANISMS: Registry[Mechanism] = Registry("dp mechanism")
MECHANISMS.register(
    "laplace",
    Mechanism(
        needs_delta=False,
        scale=lambda sens, eps, _delta: laplace_scale(sens, eps),
        share=_laplace_share,
    ),
)
MECHANISMS.register(
    "gaussian", Mechanism(needs_delta=True, scale=gaussian_sigma, share=_gaussian_share)
)


def noise_share(
    mechanism: str,
    rng: np.random.Generator,
    *,
    sensitivity: float,
    cost: Budget,
    parties: int,
    shape: tuple[int, ...],
) -> np.ndarray:
    """One party's share of the noise that makes a statistic of sensitivity ``sensitivity``
    (cost.epsilon, cost.delta)-DP when ``parties`` shares are summed."""
    mech = MECHANISMS.get(mechanism)
    scale = mech.scale(sensitivity, cost.epsilon, cost.delta)
    return mech.share(rng, scale, parties, shape)


class Accountant:
    """Privacy budgets per data source, under sequential composition. :meth:`charge` spends
    a cost or raises :class:`BudgetExceeded` naming the source, what was asked, what is spent
    and what is left; a refused charge spends nothing. Thread-safe."""

    def __init__(self, budgets: Mapping[str, Budget]) -> None:
        self._budgets = dict(budgets)
        self._spent = {name: Budget(0.0, 0.0) for name in budgets}
        self._lock = threading.Lock()

    def spent(self, source: str) -> Budget:
        with self._lock:
            return self._spent[self._known(source)]

    def remaining(self, source: str) -> Budget:
        budget, spent = self._budgets[self._known(source)], self.spent(source)
        return Budget(
            max(0.0, budget.epsilon - spent.epsilon), max(0.0, budget.delta - spent.delta)
        )

    def charge(self, source: str, cost: Budget, *, what: str = "a query") -> Budget:
        """Spend ``cost`` from ``source``'s budget; returns the total spent so far."""
        with self._lock:
            budget = self._budgets[self._known(source)]
            after = self._spent[source] + cost
            if not budget.covers(after):
                spent = self._spent[source]
                raise BudgetExceeded(
                    f"{what} on {source!r} asks for epsilon={cost.epsilon:g}, "
                    f"delta={cost.delta:g}, but {source!r} has spent epsilon={spent.epsilon:g}, "
                    f"delta={spent.delta:g} of its budget epsilon={budget.epsilon:g}, "
                    f"delta={budget.delta:g}; lower the query's epsilon or raise the budget"
                )
            self._spent[source] = after
            return after

    def _known(self, source: str) -> str:
        if source not in self._budgets:
            raise BudgetExceeded(
                f"data source {source!r} has no privacy budget; give it one to allow noisy queries"
            )
        return source
