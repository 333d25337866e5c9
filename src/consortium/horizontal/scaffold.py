"""SCAFFOLD: control variates correct the client drift of local training.

Karimireddy, Kale, Mohri, Reddi, Stich, Suresh, "SCAFFOLD: Stochastic Controlled Averaging
for Federated Learning", ICML 2020, Algorithm 1 with option II. The server keeps a control
variate c (zero at first) and sends it with the model; each trainer corrects its gradients
by c - c_i and returns its model y_i and the change Δc_i of its own control variate (the
client side is ``scaffold`` in :mod:`consortium.horizontal.clients`). The server steps

    x <- x + η_g · (1/|S|) Σ_{i∈S} (y_i - x)
    c <- c + (1/N) Σ_{i∈S} Δc_i

with plain (unweighted) means, as in the paper. N is the number of trainers in the
federation: ``num_clients`` (by default the number that replied, which is right when all
trainers take part every round).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

import numpy as np
from pydantic import Field, PositiveInt, validate_call

from consortium.horizontal._common import float_state, floating, too_few_updates
from consortium.horizontal.aggregate import WeightedSum, check_update
from consortium.horizontal.clients import CONTROL, CONTROL_DELTA, split_aux
from consortium.horizontal.strategy import (
    STRATEGIES,
    FitInstructions,
    ServerState,
    Strategy,
    Weights,
)
from consortium.wire import MetaValue

__all__ = ["Scaffold", "ScaffoldRound"]


class ScaffoldRound:
    """The plain running sums of the valid replies' models and control-variate changes."""

    def __init__(self, *, reference: Weights) -> None:
        self._reference = reference
        self._deltas = {CONTROL_DELTA + k: reference[k] for k in floating(reference)}
        self.models = WeightedSum(like=reference)
        self.controls = WeightedSum(like=self._deltas)

    def add(self, party: str, weights: Weights, meta: Mapping[str, MetaValue]) -> str | None:
        model, aux = split_aux(weights)
        reason = check_update(model, self._reference) or check_update(aux, self._deltas)
        if reason is None:
            self.models.add(model, 1.0)
            self.controls.add(aux, 1.0)
        return reason


@STRATEGIES.decorator("scaffold")
class Scaffold(Strategy[ScaffoldRound]):
    """The server's half of SCAFFOLD; the trainers correct their gradients by c - c_i."""

    @validate_call
    def __init__(
        self,
        *,
        server_lr: Annotated[float, Field(gt=0, description="η_g")] = 1.0,
        num_clients: Annotated[
            PositiveInt | None,
            Field(description="N, trainers in the federation; default: those that replied"),
        ] = None,
    ) -> None:
        self.server_lr = server_lr
        self.num_clients = num_clients

    def init(self, weights: Weights) -> ServerState:
        return ServerState(round=0, weights=dict(weights), extra={"c": float_state(weights)})

    def configure(self, round: int, state: ServerState) -> FitInstructions:
        c = state.extra["c"]
        aux = {CONTROL + k: v.astype(state.weights[k].dtype) for k, v in c.items()}
        return FitInstructions(weights=state.weights, config={"client": "scaffold"}, aux=aux)

    def begin(
        self, round: int, state: ServerState, *, expected: int | None = None
    ) -> ScaffoldRound:
        return ScaffoldRound(reference=state.weights)

    def aggregate(
        self, round: int, state: ServerState, acc: ScaffoldRound, failures: Mapping[str, str]
    ) -> tuple[ServerState, dict[str, float]]:
        replied = acc.models.count
        if replied == 0:
            raise too_few_updates(
                "scaffold", needed=1, received=0, why="a mean of no models", failures=failures
            )
        mean = acc.models.mean()
        dc = acc.controls.mean()  # (1/|S|) Σ Δc_i
        n = self.num_clients or replied
        eta = self.server_lr
        weights: dict[str, np.ndarray] = {}
        for k, x in state.weights.items():
            if k in state.extra["c"]:
                step = eta * (np.asarray(mean[k], np.float64) - np.asarray(x, np.float64))
                weights[k] = (np.asarray(x, np.float64) + step).astype(x.dtype)
            else:
                weights[k] = np.asarray(mean[k])
        c = {
            k: v + (replied / n) * np.asarray(dc[CONTROL_DELTA + k], np.float64)
            for k, v in state.extra["c"].items()
        }
        metrics = {"replies": float(replied)}
        return ServerState(round=round, weights=weights, extra={"c": c}), metrics
