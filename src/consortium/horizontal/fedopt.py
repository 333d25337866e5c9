"""FedAdagrad, FedAdam and FedYogi: adaptive optimisers on the server.

Reddi, Charles, Zaheer, Garrett, Rush, Konečný, Kumar, McMahan, "Adaptive Federated
Optimization", ICLR 2021 (Algorithm 2).

Each round the trainers' models are averaged, weighted by their example counts, into the
pseudo-gradient Δ_t = Σ_k (n_k / n) x_k - x_t, and the server takes one adaptive step
(every operation coordinate-wise):

    m_t = β1 · m_{t-1} + (1 - β1) · Δ_t                           (m_{-1} = 0)
    v_t = v_{t-1} + Δ_t²                                   FedAdagrad
    v_t = v_{t-1} - (1 - β2) · Δ_t² · sign(v_{t-1} - Δ_t²)   FedYogi
    v_t = β2 · v_{t-1} + (1 - β2) · Δ_t²                     FedAdam
    x_{t+1} = x_t + η · m_t / (√v_t + τ)

as in the paper there is no bias correction, and v starts at v_{-1} = τ² (Algorithm 2 asks
for v_{-1} ≥ τ²; we take the smallest). Settings and defaults: ``beta1`` β1 = 0.9 and
``beta2`` β2 = 0.99, the values the paper fixes in its experiments; ``tau`` τ = 1e-3, the
adaptivity degree the paper uses by default; ``server_lr`` η is tuned per task in the paper,
which gives no single default: ours is 0.1. FedAdagrad has no β2.

m and v are kept in float64 in ``ServerState.extra`` and carried across rounds. Only floating
tensors are stepped; integer tensors take the weighted mean.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from typing import Annotated, ClassVar

import numpy as np
from pydantic import Field, validate_call

from consortium.horizontal._common import apply_step, float_state, pseudo_gradient
from consortium.horizontal.fedavg import FedAvgRound
from consortium.horizontal.strategy import STRATEGIES, ServerState, Strategy, Weights

__all__ = ["FedAdagrad", "FedAdam", "FedYogi"]

FIRST = "m"  # ServerState.extra keys: {tensor name: float64 moment}
SECOND = "v"

# The settings, as each constructor declares them.
ServerLr = Annotated[float, Field(gt=0, description="η: the server's step size")]
Beta1 = Annotated[float, Field(ge=0, lt=1, description="β1: the first moment's decay")]
Beta2 = Annotated[float, Field(ge=0, lt=1, description="β2: the second moment's decay")]
Tau = Annotated[float, Field(gt=0, description="τ: the degree of adaptivity")]


class _ServerAdaptive(Strategy[FedAvgRound]):
    """Algorithm 2, less the second-moment rule each optimiser supplies. Each optimiser's
    constructor sets the settings it takes (FedAdagrad has no β2)."""

    name: ClassVar[str]
    server_lr: float
    beta1: float
    tau: float

    @abstractmethod
    def second_moment(self, v: np.ndarray, delta_sq: np.ndarray) -> np.ndarray:
        """v_t from v_{t-1} and Δ_t², coordinate-wise."""

    def init(self, weights: Weights) -> ServerState:
        extra = {FIRST: float_state(weights), SECOND: float_state(weights, fill=self.tau**2)}
        return ServerState(round=0, weights=dict(weights), extra=extra)

    def begin(self, round: int, state: ServerState, *, expected: int | None = None) -> FedAvgRound:
        return FedAvgRound(reference=state.weights)

    def aggregate(
        self, round: int, state: ServerState, acc: FedAvgRound, failures: Mapping[str, str]
    ) -> tuple[ServerState, dict[str, float]]:
        mean = acc.mean(self.name, failures)
        delta = pseudo_gradient(state.weights, mean)
        m_prev: Mapping[str, np.ndarray] = state.extra[FIRST]
        v_prev: Mapping[str, np.ndarray] = state.extra[SECOND]
        m: dict[str, np.ndarray] = {}
        v: dict[str, np.ndarray] = {}
        step: dict[str, np.ndarray] = {}
        for name, d in delta.items():
            m[name] = self.beta1 * m_prev[name] + (1.0 - self.beta1) * d
            v[name] = self.second_moment(v_prev[name], d * d)
            step[name] = self.server_lr * m[name] / (np.sqrt(v[name]) + self.tau)
        weights = apply_step(state.weights, mean, step)
        extra = {FIRST: m, SECOND: v}
        return ServerState(round=round, weights=weights, extra=extra), acc.metrics()


@STRATEGIES.decorator("fedadagrad")
class FedAdagrad(_ServerAdaptive):
    """Adagrad on the server: v accumulates every squared pseudo-gradient."""

    name = "fedadagrad"

    @validate_call
    def __init__(self, *, server_lr: ServerLr = 0.1, beta1: Beta1 = 0.9, tau: Tau = 1e-3) -> None:
        self.server_lr, self.beta1, self.tau = server_lr, beta1, tau

    def second_moment(self, v: np.ndarray, delta_sq: np.ndarray) -> np.ndarray:
        return v + delta_sq


@STRATEGIES.decorator("fedadam")
class FedAdam(_ServerAdaptive):
    """Adam on the server (without bias correction, as in the paper)."""

    name = "fedadam"

    @validate_call
    def __init__(
        self,
        *,
        server_lr: ServerLr = 0.1,
        beta1: Beta1 = 0.9,
        beta2: Beta2 = 0.99,
        tau: Tau = 1e-3,
    ) -> None:
        self.server_lr, self.beta1, self.beta2, self.tau = server_lr, beta1, beta2, tau

    def second_moment(self, v: np.ndarray, delta_sq: np.ndarray) -> np.ndarray:
        return np.asarray(self.beta2 * v + (1.0 - self.beta2) * delta_sq)


@STRATEGIES.decorator("fedyogi")
class FedYogi(_ServerAdaptive):
    """Yogi on the server: v moves towards Δ² by an additive, sign-controlled amount."""

    name = "fedyogi"

    @validate_call
    def __init__(
        self,
        *,
        server_lr: ServerLr = 0.1,
        beta1: Beta1 = 0.9,
        beta2: Beta2 = 0.99,
        tau: Tau = 1e-3,
    ) -> None:
        self.server_lr, self.beta1, self.beta2, self.tau = server_lr, beta1, beta2, tau

    def second_moment(self, v: np.ndarray, delta_sq: np.ndarray) -> np.ndarray:
        return np.asarray(v - (1.0 - self.beta2) * delta_sq * np.sign(v - delta_sq))
