"""FedAvg: the global model is the example-weighted mean of the trainers' models.

McMahan, Moore, Ramage, Hampson, Agüera y Arcas, "Communication-Efficient Learning of Deep
Networks from Decentralized Data", AISTATS 2017.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from consortium.horizontal._common import num_examples, too_few_updates
from consortium.horizontal.aggregate import WeightedSum, check_update
from consortium.horizontal.strategy import (
    STRATEGIES,
    FitInstructions,
    ServerState,
    Weights,
)
from consortium.spec import Strict
from consortium.wire import MetaValue

__all__ = ["FedAvg", "FedAvgRound", "FedAvgSettings"]


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


class FedAvgSettings(Strict):
    """FedAvg has no settings; any key is a mistake."""


@STRATEGIES.decorator("fedavg")
class FedAvg:
    """Example-weighted model averaging. No settings."""

    def __init__(self, **settings: Any) -> None:
        self.settings = FedAvgSettings.model_validate(settings)

    def init(self, weights: Weights) -> ServerState:
        return ServerState(round=0, weights=dict(weights))

    def configure(self, round: int, state: ServerState) -> FitInstructions:
        return FitInstructions(weights=state.weights, config={})

    def begin(self, round: int, state: ServerState, *, expected: int | None = None) -> FedAvgRound:
        return FedAvgRound(reference=state.weights)

    def aggregate(
        self, round: int, state: ServerState, acc: object, failures: Mapping[str, str]
    ) -> tuple[ServerState, dict[str, float]]:
        assert isinstance(acc, FedAvgRound)
        if acc.sum.count == 0:
            raise too_few_updates(
                "fedavg", needed=1, received=0, why="a mean of no models", failures=failures
            )
        weights = acc.sum.mean()
        metrics = {"examples": acc.sum.total_weight, "replies": float(acc.sum.count)}
        return ServerState(round=round, weights=weights), metrics
