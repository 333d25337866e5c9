"""FedMedian: the global model is the coordinate-wise median of the trainers' models.

Yin, Chen, Ramchandran, Bartlett, "Byzantine-Robust Distributed Learning: Towards Optimal
Statistical Rates", ICML 2018 (the median-based algorithm, Option I).

The paper aggregates gradients; here the trainers' models are aggregated, which is the
same thing, since every trainer started from the same global model x and the rule commutes
with a shift: rule(x + u_1, …, x + u_n) = x + rule(u_1, …, u_n).

Every coordinate of the new model is the median of that coordinate over the valid updates
(the mean of the two middle values when their number is even). Fewer than half of the
updates being arbitrary cannot move it outside the range of the honest ones. Unweighted:
``num_examples`` is checked, not used (see :mod:`consortium.horizontal._robust`).
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import validate_call

from consortium.horizontal._robust import RobustStrategy, StackRound
from consortium.horizontal.strategy import STRATEGIES, ServerState

__all__ = ["FedMedian"]


@STRATEGIES.decorator("fedmedian")
class FedMedian(RobustStrategy):
    """Coordinate-wise median of the valid updates."""

    name = "fedmedian"

    @validate_call
    def __init__(self) -> None:
        """FedMedian has no settings: any keyword is refused (ValidationError)."""

    def aggregate(
        self, round: int, state: ServerState, acc: StackRound, failures: Mapping[str, str]
    ) -> tuple[ServerState, dict[str, float]]:
        acc.require(self.name, 1, why="a median of no models", failures=failures, setting=None)
        return ServerState(round=round, weights=acc.stack.median()), acc.metrics()
