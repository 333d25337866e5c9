"""FedTrimmedAvg: the global model is the coordinate-wise trimmed mean of the trainers' models.

Yin, Chen, Ramchandran, Bartlett, "Byzantine-Robust Distributed Learning: Towards Optimal
Statistical Rates", ICML 2018 (the trimmed-mean algorithm, Option II).

The paper aggregates gradients; here the trainers' models are aggregated, which is the
same thing, since every trainer started from the same global model x and the rule commutes
with a shift: rule(x + u_1, …, x + u_n) = x + rule(u_1, …, u_n).

For every coordinate the n values are sorted, the ⌊β·n⌋ largest and the ⌊β·n⌋ smallest are
dropped, and the rest are averaged. The paper asks for β ≥ the fraction of Byzantine
parties and β < 1/2, so at least one value always remains. It gives no default; ours is
β = 0.1. Unweighted: ``num_examples`` is checked, not used (see
:mod:`consortium.horizontal._robust`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated

from pydantic import Field, validate_call

from consortium.horizontal._robust import RobustStrategy, StackRound
from consortium.horizontal.strategy import STRATEGIES, ServerState

__all__ = ["FedTrimmedAvg", "trim_count"]


def trim_count(beta: float, n: int) -> int:
    """How many values are dropped from each end: ⌊β·n⌋ (less than n/2 since β < 1/2)."""
    return math.floor(beta * n)


@STRATEGIES.decorator("fedtrimmedavg")
class FedTrimmedAvg(RobustStrategy):
    """Coordinate-wise β-trimmed mean of the valid updates."""

    name = "fedtrimmedavg"

    @validate_call
    def __init__(
        self,
        *,
        beta: Annotated[
            float, Field(ge=0, lt=0.5, description="β: the fraction trimmed from each end")
        ] = 0.1,
    ) -> None:
        self.beta = beta

    def aggregate(
        self, round: int, state: ServerState, acc: StackRound, failures: Mapping[str, str]
    ) -> tuple[ServerState, dict[str, float]]:
        acc.require(self.name, 1, why="a mean of no models", failures=failures, setting=None)
        trim = trim_count(self.beta, acc.count)
        weights = acc.stack.trimmed_mean(trim)
        return ServerState(round=round, weights=weights), acc.metrics(trimmed=float(trim))
