"""FedBuff: asynchronous aggregation through a buffer of K updates.

Nguyen, Malik, Zhan, Yousefpour, Rabbat, Malek, Huba, "Federated Learning with Buffered
Asynchronous Aggregation", AISTATS 2022 (Algorithm 1). Trainers work on whatever model
version they were given; the server keeps the model deltas Δ_i = y_i - x_{τ_i} that arrive,
each scaled by a staleness weight w(s_i) (s_i = the number of server updates since version
τ_i), and once K have arrived it steps: x ← x + η_g · (1/K) Σ w(s_i) Δ_i. Updates staler
than ``max_staleness`` are refused. The paper's default weight is w(s) = 1/sqrt(1 + s).

The strategy is state plus pure functions like every other; the waiting, versioning and
dispatching live in :mod:`consortium.horizontal.asynchronous`, which turns each reply into a
delta against the version it was trained from and passes its staleness in ``meta``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import Field, PositiveFloat, PositiveInt

from consortium.horizontal.aggregate import WeightedSum, check_update
from consortium.horizontal.strategy import STRATEGIES, FitInstructions, ServerState, Weights
from consortium.spec import Strict
from consortium.wire import MetaValue

__all__ = ["FedBuff", "FedBuffRound", "FedBuffSettings", "staleness_weight"]

STALENESS = "staleness"  # meta key set by the asynchronous schedule


class FedBuffSettings(Strict):
    buffer_size: PositiveInt = Field(default=10, description="K: updates per server step")
    server_lr: PositiveFloat = Field(default=1.0, description="η_g")
    max_staleness: int = Field(default=10, ge=0, description="refuse updates staler than this")
    concurrency: PositiveInt | None = Field(
        default=None, description="trainers training at once; default: every trainer"
    )
    staleness: Literal["polynomial", "constant"] = "polynomial"
    exponent: float = Field(default=0.5, ge=0, description="w(s) = (1 + s) ** -exponent")


def staleness_weight(settings: FedBuffSettings, staleness: int) -> float:
    if settings.staleness == "constant":
        return 1.0
    return float((1.0 + staleness) ** -settings.exponent)


class FedBuffRound:
    """The buffer: Σ w(s_i) Δ_i over the deltas accepted so far."""

    def __init__(self, *, settings: FedBuffSettings, reference: Weights) -> None:
        self._settings = settings
        self._reference = reference
        self.sum = WeightedSum(like=reference)
        self.staleness: dict[str, int] = {}

    @property
    def count(self) -> int:
        return self.sum.count

    def add(self, party: str, weights: Weights, meta: Mapping[str, MetaValue]) -> str | None:
        s = meta.get(STALENESS)
        if not isinstance(s, int) or isinstance(s, bool) or s < 0:
            return f"staleness must be a non-negative integer, got {s!r}"
        if s > self._settings.max_staleness:
            return (
                f"stale update: {s} server steps old, the bound is {self._settings.max_staleness}"
            )
        reason = check_update(weights, self._reference)
        if reason is None:
            self.sum.add(weights, staleness_weight(self._settings, s))
            self.staleness[party] = s
        return reason


@STRATEGIES.decorator("fedbuff")
class FedBuff:
    """Buffered asynchronous aggregation; runs on the ``async`` schedule."""

    schedule = "async"

    def __init__(self, **args: object) -> None:
        self.settings = FedBuffSettings.model_validate(args)

    def init(self, weights: Weights) -> ServerState:
        return ServerState(round=0, weights=dict(weights))

    def configure(self, round: int, state: ServerState) -> FitInstructions:
        return FitInstructions(weights=state.weights, config={})

    def begin(self, round: int, state: ServerState, *, expected: int | None = None) -> FedBuffRound:
        return FedBuffRound(settings=self.settings, reference=state.weights)

    def ready(self, acc: FedBuffRound) -> bool:
        """Whether the buffer holds enough updates for a server step."""
        return acc.count >= self.settings.buffer_size

    def aggregate(
        self, round: int, state: ServerState, acc: object, failures: Mapping[str, str]
    ) -> tuple[ServerState, dict[str, float]]:
        assert isinstance(acc, FedBuffRound)
        if acc.count == 0:
            return ServerState(round=round, weights=state.weights, extra=state.extra), {}
        # WeightedSum keeps Σ w_i Δ_i in float64; its mean divides by Σ w_i, so undo that and
        # divide by the number of updates instead, as the paper does.
        mean = acc.sum.mean()
        scale = self.settings.server_lr * acc.sum.total_weight / acc.count
        weights = {
            name: (state.weights[name] + scale * mean[name]).astype(
                state.weights[name].dtype, copy=False
            )
            for name in state.weights
        }
        staleness = list(acc.staleness.values())
        metrics = {
            "updates": float(acc.count),
            "staleness_mean": sum(staleness) / len(staleness),
            "staleness_max": float(max(staleness)),
        }
        return ServerState(round=round, weights=weights, extra=state.extra), metrics
