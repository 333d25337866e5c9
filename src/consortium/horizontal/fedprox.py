"""FedProx: FedAvg whose trainers add a proximal term to their local objective.

Li, Sahu, Zaheer, Sanjabi, Talwalkar, Smith, "Federated Optimization in Heterogeneous
Networks", MLSys 2020. Each trainer minimises F_k(w) + (mu / 2) ||w - w_global||^2 (the
client side is ``fedprox`` in :mod:`consortium.horizontal.clients`); the server averages
the returned models weighted by examples, as FedAvg does.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, validate_call

from consortium.horizontal.fedavg import FedAvg
from consortium.horizontal.strategy import STRATEGIES, FitInstructions, ServerState

__all__ = ["FedProx"]


@STRATEGIES.decorator("fedprox")
class FedProx(FedAvg):
    """FedAvg on the server; the proximal term on the trainers."""

    @validate_call
    def __init__(
        self, *, mu: Annotated[float, Field(ge=0, description="weight of the proximal term")] = 0.01
    ) -> None:
        self.mu = mu

    def configure(self, round: int, state: ServerState) -> FitInstructions:
        return FitInstructions(weights=state.weights, config={"client": "fedprox", "mu": self.mu})
