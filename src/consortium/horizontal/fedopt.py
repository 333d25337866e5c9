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

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from pydantic import Field, PositiveFloat

from consortium.horizontal._common import apply_step, pseudo_gradient, too_few_updates
from consortium.horizontal.fedavg import FedAvgRound
from consortium.horizontal.strategy import STRATEGIES, FitInstructions, ServerState, Weights
from consortium.spec import Strict

__all__ = [
    "AdaptiveSettings",
    "FedAdagrad",
    "FedAdagradSettings",
    "FedAdam",
    "FedYogi",
]

FIRST = "m"  # ServerState.extra keys: {tensor name: float64 moment}
SECOND = "v"


class FedAdagradSettings(Strict):
    server_lr: PositiveFloat = Field(default=0.1, description="η: the server's step size")
    beta1: float = Field(default=0.9, ge=0, lt=1, description="β1: the first moment's decay")
    tau: PositiveFloat = Field(default=1e-3, description="τ: the degree of adaptivity")


class AdaptiveSettings(FedAdagradSettings):
    """The settings of FedAdam and FedYogi."""

    beta2: float = Field(default=0.99, ge=0, lt=1, description="β2: the second moment's decay")


class _ServerAdaptive:
    """Algorithm 2, less the second-moment rule each optimiser supplies."""

    name: ClassVar[str]
    settings_model: ClassVar[type[FedAdagradSettings]]
    settings: FedAdagradSettings

    def __init__(self, **settings: Any) -> None:
        self.settings = self.settings_model.model_validate(settings)

    def _second_moment(self, v: np.ndarray, delta_sq: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def init(self, weights: Weights) -> ServerState:
        tau_sq = self.settings.tau**2
        floating = {n: np.shape(x) for n, x in weights.items() if np.asarray(x).dtype.kind == "f"}
        extra = {
            FIRST: {name: np.zeros(shape, np.float64) for name, shape in floating.items()},
            SECOND: {name: np.full(shape, tau_sq, np.float64) for name, shape in floating.items()},
        }
        return ServerState(round=0, weights=dict(weights), extra=extra)

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
                self.name, needed=1, received=0, why="a mean of no models", failures=failures
            )
        s = self.settings
        mean = acc.sum.mean()
        delta = pseudo_gradient(state.weights, mean)
        m_prev: Mapping[str, np.ndarray] = state.extra[FIRST]
        v_prev: Mapping[str, np.ndarray] = state.extra[SECOND]
        m: dict[str, np.ndarray] = {}
        v: dict[str, np.ndarray] = {}
        step: dict[str, np.ndarray] = {}
        for name, d in delta.items():
            m[name] = s.beta1 * m_prev[name] + (1.0 - s.beta1) * d
            v[name] = self._second_moment(v_prev[name], d * d)
            step[name] = s.server_lr * m[name] / (np.sqrt(v[name]) + s.tau)
        weights = apply_step(state.weights, mean, step)
        metrics = {"examples": acc.sum.total_weight, "replies": float(acc.sum.count)}
        return ServerState(round=round, weights=weights, extra={FIRST: m, SECOND: v}), metrics


@STRATEGIES.decorator("fedadagrad")
class FedAdagrad(_ServerAdaptive):
    """Adagrad on the server: v accumulates every squared pseudo-gradient."""

    name = "fedadagrad"
    settings_model = FedAdagradSettings

    def _second_moment(self, v: np.ndarray, delta_sq: np.ndarray) -> np.ndarray:
        return v + delta_sq


@STRATEGIES.decorator("fedadam")
class FedAdam(_ServerAdaptive):
    """Adam on the server (without bias correction, as in the paper)."""

    name = "fedadam"
    settings_model = AdaptiveSettings
    settings: AdaptiveSettings

    def _second_moment(self, v: np.ndarray, delta_sq: np.ndarray) -> np.ndarray:
        beta2 = self.settings.beta2
        return np.asarray(beta2 * v + (1.0 - beta2) * delta_sq)


@STRATEGIES.decorator("fedyogi")
class FedYogi(_ServerAdaptive):
    """Yogi on the server: v moves towards Δ² by an additive, sign-controlled amount."""

    name = "fedyogi"
    settings_model = AdaptiveSettings
    settings: AdaptiveSettings

    def _second_moment(self, v: np.ndarray, delta_sq: np.ndarray) -> np.ndarray:
        beta2 = self.settings.beta2
        return np.asarray(v - (1.0 - beta2) * delta_sq * np.sign(v - delta_sq))
