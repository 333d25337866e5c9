"""Operations: what a workflow step runs, as a registered, validated piece of data.

An operation is split between the coordinator and the workers, with no I/O of its own; the
scheduler moves its messages. The coordinator's side is a generator (the shape of httpx's
``Auth.auth_flow``), driven by the scheduler: ``coordinate(args, state, tables)`` yields each
request (named arrays) for the job's workers; each worker answers ``local(args, request,
data) -> Partial``; the scheduler adds the partials' ``sums`` by secure summation (and
collects ``plain`` arrays, for operations whose per-party output is the point, such as the
trees of a forest) and sends the generator ``(total, plain)``; it returns ``Finished``.

Workers add differential-privacy noise to each released statistic before masking it, with
the sensitivity the partial declares (computed from public information only: bounds,
categories, the request). An operation's args name the ``table`` it reads (through
``query``) and its optional ``dp`` settings, so the privacy cost of a workflow is known
before anything runs.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, Field, PositiveFloat, ValidationError, model_validator

from consortium.analytics.query import Query
from consortium.analytics.tables import Table, TableSpec
from consortium.errors import ConfigError, PluginError
from consortium.privacy.dp import MECHANISMS, Budget
from consortium.registry import Registry
from consortium.spec import Strict

__all__ = [
    "OPERATIONS",
    "Arrays",
    "DpArgs",
    "Finished",
    "Flow",
    "LocalData",
    "Operation",
    "OperationRef",
    "Partial",
    "QueryArgs",
    "State",
    "Statistic",
    "scalar_sums",
    "validate_args",
]

Arrays = Mapping[str, np.ndarray]  # named arrays: requests, totals, plain answers, state
# The coordinator's side: yields requests, is sent (total, each party's plain arrays).
Flow = Generator[Arrays, tuple[Arrays, Mapping[str, Arrays]], "Finished"]


class DpArgs(Strict):
    """Differential privacy for one operation: its mechanism and total cost."""

    mechanism: Literal["laplace", "gaussian"] = "laplace"
    epsilon: PositiveFloat
    delta: float = Field(default=0.0, ge=0, lt=1)

    @model_validator(mode="after")
    def _valid(self) -> DpArgs:
        if MECHANISMS.get(self.mechanism).needs_delta:
            if self.delta <= 0:
                raise ValueError("the gaussian mechanism needs delta > 0")
            if self.epsilon >= 1:
                raise ValueError("the gaussian mechanism is calibrated for epsilon < 1")
        elif self.delta != 0:
            raise ValueError("the laplace mechanism takes no delta")
        return self


class QueryArgs(Strict):
    """Args of every operation that reads a table."""

    query: Query
    dp: DpArgs | None = None


@dataclass(frozen=True, slots=True)
class Statistic:
    """One released vector of sums and its sensitivity to one row (L1 and L2 norms)."""

    values: np.ndarray
    l1: float
    l2: float


def scalar_sums(**values: float) -> dict[str, Statistic]:
    """Scalars to add up, declared with no sensitivity: for operations that add no noise."""
    return {name: Statistic(np.array([v]), 0, 0) for name, v in values.items()}


@dataclass(frozen=True, slots=True)
class Partial:
    """A worker's answer: statistics to add up securely and, for operations that release
    per-party output by design, plain arrays."""

    sums: Mapping[str, Statistic] = field(default_factory=dict)
    plain: Arrays = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class State:
    """What the workflow carries from job to job and gives every worker: named arrays
    (model weights, fitted transformers) and small JSON-able settings."""

    arrays: Arrays = field(default_factory=dict)
    meta: Mapping[str, Any] = field(default_factory=dict)

    def updated(self, arrays: Arrays | None = None, meta: Mapping[str, Any] | None = None) -> State:
        return State(arrays={**self.arrays, **(arrays or {})}, meta={**self.meta, **(meta or {})})


@dataclass(frozen=True, slots=True)
class Finished:
    """An operation's outcome: a JSON-able result, metrics (floats) and the new state."""

    result: Mapping[str, Any]
    metrics: Mapping[str, float]
    state: State


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalData:
    """What a worker's part of an operation sees: its own tables, the workflow state, and
    randomness private to it and this job."""

    party: str
    tables: Mapping[str, Table]
    state: State
    rng: np.random.Generator

    def select(self, query: Query) -> Table:
        return query.apply(self.tables[query.table])


class Operation:
    """Base of every operation. Subclasses set ``Args`` and override what they use.

    ``placement`` is ``workers`` (runs on the workers, coordinated) or ``coordinator`` (runs
    on the coordinator alone: initialise or finalise). ``round_robin`` says whether one
    party's answer may be seen on its own (true for models handed round a ring, never for
    statistics).
    """

    Args: ClassVar[type[BaseModel]] = QueryArgs
    placement: ClassVar[Literal["workers", "coordinator"]] = "workers"
    round_robin: ClassVar[bool] = False

    def check(self, args: Any, tables: Mapping[str, TableSpec]) -> None:
        """Raise ValueError when ``args`` do not fit the published schema."""
        query = getattr(args, "query", None)
        if isinstance(query, Query):
            query.check(tables)

    def cost(self, args: Any) -> dict[str, Budget]:
        """The privacy budget this operation spends, per table."""
        dp = getattr(args, "dp", None)
        query = getattr(args, "query", None)
        if dp is None or query is None:
            return {}
        return {query.table: Budget(dp.epsilon, dp.delta)}

    def releases(self, args: Any) -> int:
        """How many statistics the operation releases under DP (its ε and δ are split
        evenly among them)."""
        return 1

    def coordinate(self, args: Any, state: State, tables: Mapping[str, TableSpec]) -> Flow:
        """The coordinator's side (``tables``: the published schema). By default: one
        request with no arrays, and an empty result."""
        yield {}
        return Finished(result={}, metrics={}, state=state)

    def local(self, args: Any, request: Arrays, data: LocalData) -> Partial:
        """A worker's answer to one request."""
        return Partial()


OPERATIONS: Registry[Operation] = Registry("analytics operation")


class OperationRef(Strict):
    """A registered operation and its args, checked against the operation's model."""

    name: str = Field(min_length=1)
    args: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known(self) -> OperationRef:
        try:
            op = OPERATIONS.get(self.name)
        except PluginError as exc:
            raise ValueError(str(exc)) from None
        validate_args(op, self.args, where=f"operation {self.name!r}")
        return self

    @property
    def operation(self) -> Operation:
        return OPERATIONS.get(self.name)

    def parsed(self) -> Any:
        return validate_args(self.operation, self.args, where=f"operation {self.name!r}")


def validate_args(op: Operation, args: Mapping[str, Any], *, where: str) -> Any:
    """``args`` validated by the operation's model; errors name each bad field."""
    try:
        return op.Args.model_validate(dict(args))
    except ValidationError as exc:
        problems = "; ".join(
            f"args.{'.'.join(str(p) for p in e['loc'])}: "
            + ("unknown key (check its spelling)" if e["type"] == "extra_forbidden" else e["msg"])
            for e in exc.errors()
        )
        raise ValueError(f"{where}: {problems}") from None


def dumps(obj: Any) -> str:
    """Compact JSON for the wire."""
    return json.dumps(obj, separators=(",", ":"), sort_keys=True)


def args_from_wire(name: str, text: str) -> tuple[Operation, Any]:
    """An operation and its args from a task message (data, validated; never code)."""
    try:
        op = OPERATIONS.get(name)
        raw = json.loads(text)
    except (PluginError, ValueError) as exc:
        raise ConfigError(f"task names an unusable operation {name!r}: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"task args for {name!r} must be a JSON object")
    try:
        return op, validate_args(op, raw, where=f"operation {name!r}")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
