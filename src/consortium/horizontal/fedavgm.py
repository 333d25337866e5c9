"""FedAvgM: FedAvg with momentum on the server.

Hsu, Qi, Brown, "Measuring the Effects of Non-Identical Data Distribution for Federated
Visual Classification", arXiv:1909.06335, 2019 (Section 3.2).

Each round the trainers' models are averaged, weighted by their example counts, into the
pseudo-gradient Δ_t = Σ_k (n_k / n) x_k - x_t (the paper's Δw with the sign flipped, so that
it points the way the trainers moved). The server keeps a velocity and steps along it:

    v_t     = β · v_{t-1} + Δ_t          (v_0 = 0)
    x_{t+1} = x_t + η · v_t

With β = 0 and η = 1 this is FedAvg. The paper explores β in {0.7, 0.9, 0.97, 0.99, 0.997}
and reads the pair through the effective rate η / (1 - β); it has no single default, so
ours are η = 1 and β = 0.9. The velocity is kept in float64 in ``ServerState.extra`` and
only floating tensors are stepped; integer tensors take the weighted mean.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

import numpy as np
from pydantic import Field, validate_call

from consortium.horizontal._common import apply_step, float_state, pseudo_gradient
from consortium.horizontal.fedavg import FedAvgRound
from consortium.horizontal.strategy import STRATEGIES, ServerState, Strategy, Weights

__all__ = ["FedAvgM"]

VELOCITY = "velocity"  # ServerState.extra key: {tensor name: float64 velocity}


@STRATEGIES.decorator("fedavgm")
class FedAvgM(Strategy[FedAvgRound]):
    """Example-weighted averaging followed by a heavy-ball step on the server."""

    @validate_call
    def __init__(
        self,
        *,
        server_lr: Annotated[float, Field(gt=0, description="η: the server's step size")] = 1.0,
        momentum: Annotated[float, Field(ge=0, lt=1, description="β: the velocity's decay")] = 0.9,
    ) -> None:
        self.server_lr = server_lr
        self.momentum = momentum

    def init(self, weights: Weights) -> ServerState:
        return ServerState(round=0, weights=dict(weights), extra={VELOCITY: float_state(weights)})

    def begin(self, round: int, state: ServerState, *, expected: int | None = None) -> FedAvgRound:
        return FedAvgRound(reference=state.weights)

    def aggregate(
        self, round: int, state: ServerState, acc: FedAvgRound, failures: Mapping[str, str]
    ) -> tuple[ServerState, dict[str, float]]:
        mean = acc.mean("fedavgm", failures)
        delta = pseudo_gradient(state.weights, mean)
        previous: Mapping[str, np.ndarray] = state.extra[VELOCITY]
        velocity = {name: self.momentum * previous[name] + d for name, d in delta.items()}
        step = {name: self.server_lr * v for name, v in velocity.items()}
        weights = apply_step(state.weights, mean, step)
        extra = {VELOCITY: velocity}
        return ServerState(round=round, weights=weights, extra=extra), acc.metrics()
