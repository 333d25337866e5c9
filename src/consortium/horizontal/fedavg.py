"""FedAvg: the global model is the example-weighted mean of the trainers' models.

McMahan, Moore, Ramage, Hampson, Agüera y Arcas, "Communication-Efficient Learning of Deep
Networks from Decentralized Data", AISTATS 2017.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from consortium.horizontal._common import num_examples, too_few_updates
from consortium.horizontal.aggregate import WeightedSum, check_update
from consortium.horizontal.strategy import STRATEGIES, ServerState, Strategy, Weights
from consortium.wire import MetaValue

__all__ = ["FedAvg", "FedAvgRound"]


class FedAvgRound:
    """The example-weighted running sum of the valid replies (memory: one model)."""

    def __init__(self, *, reference: Weights) -> None:
        self._reference = reference
        self.sum = WeightedSum(like=reference)

    def add(self, party: str, weights: Weights, meta: Mapping[str, MetaValue]) -> str | None:
        n = num_examples(meta)
        if isinstance(n, str):
            return n
        reason = check_update(weights, self._reference)
        if reason is None:
            self.sum.add(weights, float(n))
        return reason

    def mean(self, strategy: str, failures: Mapping[str, str]) -> dict[str, np.ndarray]:
        """The weighted mean of the valid replies; TooFewUpdates when there is none."""
        if self.sum.count == 0:
            raise too_few_updates(
                strategy, needed=1, received=0, why="a mean of no models", failures=failures
            )
        return self.sum.mean()

    def metrics(self) -> dict[str, float]:
        return {"examples": self.sum.total_weight, "replies": float(self.sum.count)}


@STRATEGIES.decorator("fedavg")
class FedAvg(Strategy[FedAvgRound]):
    """Example-weighted model averaging. No settings."""

    def begin(self, round: int, state: ServerState, *, expected: int | None = None) -> FedAvgRound:
        return FedAvgRound(reference=state.weights)

    def aggregate(
        self, round: int, state: ServerState, acc: FedAvgRound, failures: Mapping[str, str]
    ) -> tuple[ServerState, dict[str, float]]:
        return ServerState(round=round, weights=acc.mean("fedavg", failures)), acc.metrics()
