"""Estimators: count, sum, mean, variance, histogram, quantiles, minimum, maximum, group-by
count and group-by mean, each from secure sums of per-party statistics.

Without differential privacy they equal pandas on the pooled table: counts exactly, means and
variances to float rounding (the variance takes two passes, the global mean first and then
the sum of squared deviations from it, as pandas computes it; ``ddof`` defaults to pandas'
1). Missing values are skipped, as pandas does. Quantiles are numpy's (linear) quantiles of
the exact order statistics (:mod:`consortium.analytics.orderstats`).

With ``dp`` set, values are clipped to the column's published bounds (so that one row's
effect is bounded), each released statistic gets noise for its sensitivity, and the
operation's ε (and δ) are split evenly among its releases. Groups and selections with fewer
rows than the table's ``min_group_size`` are suppressed from the result: they report no
value, only that they were suppressed.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Generator, Mapping
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, Field, NonNegativeInt, PositiveInt, model_validator

from consortium.analytics.operations import (
    OPERATIONS,
    Arrays,
    Finished,
    Flow,
    LocalData,
    Operation,
    Partial,
    QueryArgs,
    State,
    Statistic,
)
from consortium.analytics.orderstats import (
    STAGES,
    float_keys,
    local_counts,
    numpy_quantile,
    quantile_ranks,
    zoom,
)
from consortium.analytics.query import check_column
from consortium.analytics.tables import Table, TableSpec

__all__ = [
    "ColumnArgs",
    "CountArgs",
    "Estimator",
    "Extreme",
    "GroupByArgs",
    "HistogramArgs",
    "QuantileArgs",
    "VarianceArgs",
]


class CountArgs(QueryArgs):
    column: str | None = Field(default=None, description="count its non-missing values")


class ColumnArgs(QueryArgs):
    column: str


class VarianceArgs(ColumnArgs):
    ddof: NonNegativeInt = 1


class HistogramArgs(ColumnArgs):
    bins: PositiveInt = 10
    range: tuple[float, float] | None = Field(
        default=None, description="default: the column's published bounds"
    )
    edges: list[float] | None = Field(default=None, description="explicit bin edges")

    @model_validator(mode="after")
    def _edges(self) -> HistogramArgs:
        if self.edges is not None and (
            len(self.edges) < 2 or any(b <= a for a, b in itertools.pairwise(self.edges))
        ):
            raise ValueError("edges must be at least two increasing numbers")
        return self


class QuantileArgs(ColumnArgs):
    q: list[Annotated[float, Field(ge=0, le=1)]] = Field(
        default_factory=lambda: [0.5], min_length=1
    )


class GroupByArgs(QueryArgs):
    by: str
    column: str | None = Field(default=None, description="for a mean: the numeric column")


def _bound(spec: TableSpec, column: str) -> tuple[float, float]:
    bounds = spec.columns[column].bounds
    assert bounds is not None  # checked before anything runs
    return bounds


def _values(args: Any, table: Table, column: str) -> np.ndarray:
    """The column's present values; clipped to its public bounds under DP."""
    values = table.columns[column][table.present(column)]
    if args.dp is not None:
        values = np.clip(values, *_bound(table.spec, column))
    return values


def _magnitude(args: Any, spec: TableSpec, column: str) -> float:
    """The most one clipped value can add to a sum (0 without DP: no noise to scale)."""
    if args.dp is None:
        return 0.0
    low, high = _bound(spec, column)
    return max(abs(low), abs(high))


def _counts(counts: Any) -> Statistic:
    """Counts (one or a vector): a row changes one of them by one."""
    return Statistic(np.atleast_1d(np.asarray(counts, dtype=np.float64)), 1.0, 1.0)


def _withheld(state: State, *names: str) -> Finished:
    """The result for too few rows: no values, only that it was suppressed."""
    return Finished(result={**dict.fromkeys(names), "suppressed": True}, metrics={}, state=state)


def _released(state: State, **values: float) -> Finished:
    return Finished(result=values, metrics=dict(values), state=state)


class Estimator(Operation):
    """An estimator: the coordinator asks for sums over the query's rows (``sums``), as
    many times as it needs. ``numeric``: whether ``column`` must be numeric (and, under DP,
    bounded) or may be any column; ``statistics``: how many it releases."""

    numeric: ClassVar[bool] = True
    statistics: ClassVar[int] = 1

    def releases(self, args: Any) -> int:
        return self.statistics

    def check(self, args: Any, tables: Mapping[str, TableSpec]) -> None:
        super().check(args, tables)
        table, column = args.query.table, args.column
        if column is None:
            return
        check_column(tables[table], table, column, numeric=self.numeric or None)
        bounded = tables[table].columns[column].bounds is not None
        if self.numeric and args.dp is not None and not bounded:
            raise ValueError(
                f"column {column!r} needs published bounds for differential privacy "
                f"(tables.{table}.columns.{column}.bounds)"
            )

    def local(self, args: Any, request: Arrays, data: LocalData) -> Partial:
        return Partial(sums=self.sums(args, request, data.select(args.query)))

    def sums(self, args: Any, request: Arrays, table: Table) -> dict[str, Statistic]:
        raise NotImplementedError

    @staticmethod
    def too_few(count: float, args: Any, tables: Mapping[str, TableSpec]) -> bool:
        """Whether ``count`` rows are too few to describe (the table's ``min_group_size``)."""
        return not count >= max(1, tables[args.query.table].privacy.min_group_size)


class Count(Estimator):
    Args = CountArgs
    numeric = False

    def sums(self, args: Any, request: Arrays, table: Table) -> dict[str, Statistic]:
        n = table.n_rows if args.column is None else table.present(args.column).sum()
        return {"count": _counts(n)}

    def coordinate(self, args: Any, state: State, tables: Mapping[str, TableSpec]) -> Flow:
        total, _ = yield {}
        n = float(total["count"][0])
        if self.too_few(n, args, tables):
            return _withheld(state, "count")
        return _released(state, count=n)


class Sum(Estimator):
    Args = ColumnArgs
    statistics = 2  # the count and the sum

    def sums(self, args: Any, request: Arrays, table: Table) -> dict[str, Statistic]:
        v = _values(args, table, args.column)
        size = _magnitude(args, table.spec, args.column)
        return {"count": _counts(v.size), "sum": Statistic(np.array([v.sum()]), size, size)}

    def coordinate(self, args: Any, state: State, tables: Mapping[str, TableSpec]) -> Flow:
        total, _ = yield {}
        n, s = float(total["count"][0]), float(total["sum"][0])
        if self.too_few(n, args, tables):
            return _withheld(state, "sum")
        return _released(state, sum=s, count=n)


class Mean(Sum):
    def coordinate(self, args: Any, state: State, tables: Mapping[str, TableSpec]) -> Flow:
        total, _ = yield {}
        n, s = float(total["count"][0]), float(total["sum"][0])
        if self.too_few(n, args, tables):
            return _withheld(state, "mean")
        return _released(state, mean=s / n, count=n)


class Variance(Sum):
    """Two passes: (count, sum), then the sum of squared deviations from the global mean."""

    Args = VarianceArgs
    statistics = 3  # the count, the sum and the squared deviations

    def sums(self, args: Any, request: Arrays, table: Table) -> dict[str, Statistic]:
        if "mean" not in request:
            return super().sums(args, request, table)
        mean = float(request["mean"][0])
        v = _values(args, table, args.column)
        size = 0.0
        if args.dp is not None:
            low, high = _bound(table.spec, args.column)
            centre = min(max(mean, low), high)
            size = max((high - centre) ** 2, (centre - low) ** 2)
        return {"squares": Statistic(np.array([np.sum((v - mean) ** 2)]), size, size)}

    def coordinate(self, args: Any, state: State, tables: Mapping[str, TableSpec]) -> Flow:
        first, _ = yield {}
        n = float(first["count"][0])
        mean = float(first["sum"][0]) / n if n > 0 else 0.0
        second, _ = yield {"mean": np.array([mean])}
        if self.too_few(n, args, tables) or n - args.ddof <= 0:
            return _withheld(state, "variance", "std")
        var = float(second["squares"][0]) / (n - args.ddof)
        std = math.sqrt(var) if var >= 0 else float("nan")
        result = {"variance": var, "std": std, "mean": mean, "count": n}
        return Finished(result=result, metrics={"variance": var, "std": std}, state=state)


class Histogram(Estimator):
    Args = HistogramArgs

    def check(self, args: Any, tables: Mapping[str, TableSpec]) -> None:
        super().check(args, tables)
        column = tables[args.query.table].columns[args.column]
        if args.edges is None and args.range is None and column.bounds is None:
            raise ValueError(
                f"histogram of {args.column!r}: give edges or range, or publish the column's bounds"
            )

    @staticmethod
    def edges(args: Any, spec: TableSpec) -> np.ndarray:
        if args.edges is not None:
            return np.asarray(args.edges, dtype=np.float64)
        low, high = args.range or _bound(spec, args.column)
        return np.linspace(low, high, args.bins + 1)

    def sums(self, args: Any, request: Arrays, table: Table) -> dict[str, Statistic]:
        values = table.columns[args.column][table.present(args.column)]
        return {"counts": _counts(np.histogram(values, bins=self.edges(args, table.spec))[0])}

    def coordinate(self, args: Any, state: State, tables: Mapping[str, TableSpec]) -> Flow:
        total, _ = yield {}
        counts = total["counts"]
        threshold = tables[args.query.table].privacy.min_group_size
        shown = [None if threshold > 1 and c < threshold else float(c) for c in counts]
        result = {
            "edges": self.edges(args, tables[args.query.table]).tolist(),
            "counts": shown,
            "suppressed": [i for i, c in enumerate(shown) if c is None],
        }
        return Finished(result=result, metrics={"total": float(np.sum(counts))}, state=state)


class Quantiles(Estimator):
    """A count, then the zooming stages of :mod:`consortium.analytics.orderstats`."""

    Args: ClassVar[type[BaseModel]] = QuantileArgs
    statistics = 1 + STAGES  # the count and each stage's counts

    def targets(self, args: Any, n: int) -> tuple[int, ...]:
        return quantile_ranks(n, list(args.q))

    def sums(self, args: Any, request: Arrays, table: Table) -> dict[str, Statistic]:
        v = _values(args, table, args.column)
        if "lows" not in request:
            return {"count": _counts(v.size)}
        lows = request["lows"]
        counts = local_counts(float_keys(v), lows, int(request["stage"][0]))
        return {"counts": Statistic(counts, float(len(lows)), math.sqrt(len(lows)))}

    def search(self, args: Any) -> Generator[Arrays, Any, tuple[int, list[float]]]:
        """The count, then the order statistics ``targets`` names."""
        total, _ = yield {}
        n = max(0, round(float(total["count"][0])))
        return n, (yield from zoom(self.targets(args, max(n, 1)), {}))

    def coordinate(self, args: Any, state: State, tables: Mapping[str, TableSpec]) -> Flow:
        n, order_stats = yield from self.search(args)
        if self.too_few(n, args, tables):
            return _withheld(state)
        values = numpy_quantile(n, list(args.q), order_stats)
        result = {"q": list(args.q), "values": values, "count": n}
        metrics = {f"q{q:g}": v for q, v in zip(args.q, values, strict=True)}
        return Finished(result=result, metrics=metrics, state=state)


class Extreme(Quantiles):
    """The minimum or the maximum: one order statistic, found as the quantiles are."""

    Args = ColumnArgs

    def __init__(self, which: Literal["min", "max"]) -> None:
        self.which = which

    def targets(self, args: Any, n: int) -> tuple[int, ...]:
        return (0,) if self.which == "min" else (n - 1,)

    def coordinate(self, args: Any, state: State, tables: Mapping[str, TableSpec]) -> Flow:
        n, order_stats = yield from self.search(args)
        if self.too_few(n, args, tables):
            return _withheld(state, self.which)
        return _released(state, **{self.which: order_stats[0]})


class GroupBy(Estimator):
    """Per-category counts and, with ``column``, sums and means (rows whose group is missing
    are left out, as pandas' groupby does)."""

    Args = GroupByArgs

    def releases(self, args: Any) -> int:
        return 1 if args.column is None else 2

    def check(self, args: Any, tables: Mapping[str, TableSpec]) -> None:
        super().check(args, tables)
        check_column(tables[args.query.table], args.query.table, args.by, numeric=False)

    def sums(self, args: Any, request: Arrays, table: Table) -> dict[str, Statistic]:
        table = table.rows(table.present(args.by))
        k = len(table.spec.columns[args.by].categories or [])
        groups = table.columns[args.by]
        if args.column is None:
            return {"counts": _counts(np.bincount(groups, minlength=k))}
        groups = groups[table.present(args.column)]
        size = _magnitude(args, table.spec, args.column)
        sums = np.bincount(groups, weights=_values(args, table, args.column), minlength=k)
        return {
            "counts": _counts(np.bincount(groups, minlength=k)),
            "sums": Statistic(sums, size, size),
        }

    def coordinate(self, args: Any, state: State, tables: Mapping[str, TableSpec]) -> Flow:
        total, _ = yield {}
        spec = tables[args.query.table]
        groups: dict[str, Any] = {}
        suppressed: list[str] = []
        metrics: dict[str, float] = {}
        for i, name in enumerate(spec.columns[args.by].categories or []):
            count = float(total["counts"][i])
            if self.too_few(count, args, tables):
                if count > 0 or args.dp is not None or spec.privacy.min_group_size > 1:
                    suppressed.append(name)
                continue
            entry: dict[str, float] = {"count": count}
            if args.column is not None:
                entry["mean"] = float(total["sums"][i]) / count
            groups[name] = entry
            metrics.update({f"{name}.{k}": v for k, v in entry.items()})
        result = {"by": args.by, "groups": groups, "suppressed": suppressed}
        return Finished(result=result, metrics=metrics, state=state)


OPERATIONS.register("count", Count())
OPERATIONS.register("sum", Sum())
OPERATIONS.register("mean", Mean())
OPERATIONS.register("variance", Variance())
OPERATIONS.register("histogram", Histogram())
OPERATIONS.register("quantiles", Quantiles())
OPERATIONS.register("min", Extreme("min"))
OPERATIONS.register("max", Extreme("max"))
OPERATIONS.register("groupby", GroupBy())
