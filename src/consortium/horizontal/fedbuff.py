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

from collections.abc import Callable, Mapping
from typing import Annotated, ClassVar, Literal

from pydantic import Field, PositiveInt, validate_call

from consortium.horizontal.aggregate import WeightedSum, check_update
from consortium.horizontal.strategy import STRATEGIES, Schedule, ServerState, Strategy, Weights
from consortium.wire import MetaValue

__all__ = ["FedBuff", "FedBuffRound", "staleness_weight"]

STALENESS = "staleness"  # meta key set by the asynchronous schedule

StalenessRule = Literal["polynomial", "constant"]


def staleness_weight(staleness: int, *, rule: StalenessRule, exponent: float) -> float:
    """w(s): (1 + s) ** -exponent for the polynomial rule, 1 for the constant one."""
    if rule == "constant":
        return 1.0
    return float((1.0 + staleness) ** -exponent)


class FedBuffRound:
    """The buffer: Σ w(s_i) Δ_i over the deltas accepted so far."""

    def __init__(
        self, *, reference: Weights, max_staleness: int, weight: Callable[[int], float]
    ) -> None:
        self._reference = reference
        self._max_staleness = max_staleness
        self._weight = weight
        self.sum = WeightedSum(like=reference)
        self.staleness: dict[str, int] = {}

    @property
    def count(self) -> int:
        return self.sum.count

    def add(self, party: str, weights: Weights, meta: Mapping[str, MetaValue]) -> str | None:
        s = meta.get(STALENESS)
        if not isinstance(s, int) or isinstance(s, bool) or s < 0:
            return f"staleness must be a non-negative integer, got {s!r}"
        if s > self._max_staleness:
            return f"stale update: {s} server steps old, the bound is {self._max_staleness}"
        reason = check_update(weights, self._reference)
        if reason is None:
            self.sum.add(weights, self._weight(s))
            self.staleness[party] = s
        return reason


@STRATEGIES.decorator("fedbuff")
class FedBuff(Strategy[FedBuffRound]):
    """Buffered asynchronous aggregation; runs on the ``async`` schedule."""

    schedule: ClassVar[Schedule] = "async"

    @validate_call
    def __init__(
        self,
        *,
        buffer_size: Annotated[PositiveInt, Field(description="K: updates per server step")] = 10,
        server_lr: Annotated[float, Field(gt=0, description="η_g")] = 1.0,
        max_staleness: Annotated[
            int, Field(ge=0, description="refuse updates staler than this")
        ] = 10,
        concurrency: Annotated[
            PositiveInt | None,
            Field(description="trainers training at once; default: every trainer"),
        ] = None,
        staleness: Annotated[
            StalenessRule,
            Field(description="w(s): polynomial, (1 + s) ** -exponent; or constant, 1"),
        ] = "polynomial",
        exponent: Annotated[float, Field(ge=0, description="w(s) = (1 + s) ** -exponent")] = 0.5,
    ) -> None:
        self.buffer_size = buffer_size
        self.server_lr = server_lr
        self.max_staleness = max_staleness
        self._concurrency = concurrency  # read through concurrency(), the hook
        self.staleness = staleness
        self.exponent = exponent

    def weight(self, staleness: int) -> float:
        """w(s), the weight of an update ``staleness`` server steps old."""
        return staleness_weight(staleness, rule=self.staleness, exponent=self.exponent)

    def begin(self, round: int, state: ServerState, *, expected: int | None = None) -> FedBuffRound:
        return FedBuffRound(
            reference=state.weights, max_staleness=self.max_staleness, weight=self.weight
        )

    def ready(self, acc: FedBuffRound) -> bool:
        """Whether the buffer holds K updates, enough for a server step."""
        return acc.count >= self.buffer_size

    def concurrency(self) -> int | None:
        return self._concurrency

    def aggregate(
        self, round: int, state: ServerState, acc: FedBuffRound, failures: Mapping[str, str]
    ) -> tuple[ServerState, dict[str, float]]:
        if acc.count == 0:
            return ServerState(round=round, weights=state.weights, extra=state.extra), {}
        # WeightedSum keeps Σ w_i Δ_i in float64; its mean divides by Σ w_i, so undo that and
        # divide by the number of updates instead, as the paper does.
        mean = acc.sum.mean()
        scale = self.server_lr * acc.sum.total_weight / acc.count
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
