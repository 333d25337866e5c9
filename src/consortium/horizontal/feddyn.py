"""FedDyn: dynamic regularisation aligns the local optima with the global one.

Acar, Zhao, Matas, Mattina, Whatmough, Saligrama, "Federated Learning Based on Dynamic
Regularization", ICLR 2021, Algorithm 1. Each trainer minimises
L_k(θ) - <∇L_k(θ_k^{t-1}), θ> + (alpha/2) ||θ - θ^{t-1}||^2, keeping its linear term h_k (the
client side is ``feddyn`` in :mod:`consortium.horizontal.clients`); the server keeps

    h <- h - alpha (1/m) Σ_{k∈P} (θ_k - θ^{t-1})
    θ^t = (1/|P|) Σ_{k∈P} θ_k - (1/alpha) h

with m the number of trainers in the federation (``num_clients``, by default the number
that replied, right under full participation).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

import numpy as np
from pydantic import Field, PositiveInt, validate_call

from consortium.horizontal._common import float_state, too_few_updates
from consortium.horizontal.aggregate import WeightedSum, check_update
from consortium.horizontal.strategy import (
    STRATEGIES,
    FitInstructions,
    ServerState,
    Strategy,
    Weights,
)
from consortium.wire import MetaValue

__all__ = ["FedDyn", "FedDynRound"]


class FedDynRound:
    """The plain (unweighted) running sum of the valid replies' models."""

    def __init__(self, *, reference: Weights) -> None:
        self._reference = reference
        self.models = WeightedSum(like=reference)

    def add(self, party: str, weights: Weights, meta: Mapping[str, MetaValue]) -> str | None:
        reason = check_update(weights, self._reference)
        if reason is None:
            self.models.add(weights, 1.0)
        return reason


@STRATEGIES.decorator("feddyn")
class FedDyn(Strategy[FedDynRound]):
    """The server's half of FedDyn; the trainers add the dynamic regulariser."""

    @validate_call
    def __init__(
        self,
        *,
        alpha: Annotated[float, Field(gt=0, description="alpha, the regularisation weight")] = 0.01,
        num_clients: Annotated[
            PositiveInt | None,
            Field(description="m, trainers in the federation; default: those that replied"),
        ] = None,
    ) -> None:
        self.alpha = alpha
        self.num_clients = num_clients

    def init(self, weights: Weights) -> ServerState:
        return ServerState(round=0, weights=dict(weights), extra={"h": float_state(weights)})

    def configure(self, round: int, state: ServerState) -> FitInstructions:
        return FitInstructions(
            weights=state.weights, config={"client": "feddyn", "alpha": self.alpha}
        )

    def begin(self, round: int, state: ServerState, *, expected: int | None = None) -> FedDynRound:
        return FedDynRound(reference=state.weights)

    def aggregate(
        self, round: int, state: ServerState, acc: FedDynRound, failures: Mapping[str, str]
    ) -> tuple[ServerState, dict[str, float]]:
        replied = acc.models.count
        if replied == 0:
            raise too_few_updates(
                "feddyn", needed=1, received=0, why="a mean of no models", failures=failures
            )
        alpha, m = self.alpha, self.num_clients or replied
        mean = acc.models.mean()
        h: dict[str, np.ndarray] = {}
        weights: dict[str, np.ndarray] = {}
        for k, x in state.weights.items():
            if k in state.extra["h"]:
                avg = np.asarray(mean[k], np.float64)
                # Σ_{k∈P} (θ_k - θ^{t-1}) = |P| (mean - θ^{t-1})
                drift = replied * (avg - np.asarray(x, np.float64))
                h[k] = state.extra["h"][k] - alpha * drift / m
                weights[k] = (avg - h[k] / alpha).astype(x.dtype)
            else:
                weights[k] = np.asarray(mean[k])
        return ServerState(round=round, weights=weights, extra={"h": h}), {
            "replies": float(replied)
        }
