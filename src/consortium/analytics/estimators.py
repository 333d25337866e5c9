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
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, Field, NonNegativeInt, PositiveInt, model_validator

from consortium.analytics.operations import (
    OPERATIONS,
    Arrays,
    Finished,
    LocalData,
    Operation,
    Partial,
    QueryArgs,
    State,
    Statistic,
)
from consortium.analytics.orderstats import (
    STAGES,
    Search,
    float_keys,
    local_counts,
    numpy_quantile,
    quantile_ranks,
)
from consortium.analytics.query import check_column
from consortium.analytics.tables import Table, TableSpec

__all__ = [
    "ColumnArgs",
    "CountArgs",
    "GroupByArgs",
    "HistogramArgs",
    "QuantileArgs",
    "Staged",
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
    q: list[float] = Field(default_factory=lambda: [0.5], min_length=1)

    @model_validator(mode="after")
    def _q(self) -> QuantileArgs:
        if any(not 0 <= q <= 1 for q in self.q):
            raise ValueError("quantiles q lie in [0, 1]")
        return self


class GroupByArgs(QueryArgs):
    by: str
    column: str | None = Field(default=None, description="for a mean: the numeric column")


def _bound(spec: TableSpec, column: str) -> tuple[float, float]:
    bounds = spec.columns[column].bounds
    assert bounds is not None  # checked before anything runs
    return bounds


def _values(args: Any, table: Table, column: str) -> np.ndarray:
    """The column's present values; clipped to its public bounds under DP."""
    values = table.numeric(column)
    values = values[~np.isnan(values)]
    if args.dp is not None:
        low, high = _bound(table.spec, column)
        values = np.clip(values, low, high)
    return values


def _magnitude(spec: TableSpec, column: str) -> float:
    low, high = _bound(spec, column)
    return max(abs(low), abs(high))


def _count(n: float) -> Statistic:
    return Statistic(np.array([float(n)]), 1.0, 1.0)


def _suppressed(count: float, threshold: int) -> bool:
    return not count >= max(1, threshold)


class Staged(Operation):
    """An estimator of a fixed number of stages; the carry keeps each stage's totals."""

    columns_numeric: tuple[str, ...] = ("column",)

    def stages(self, args: Any) -> int:
        return 1

    def releases(self, args: Any) -> int:
        return self.stages(args)

    def check(self, args: Any, tables: Mapping[str, TableSpec]) -> None:
        super().check(args, tables)
        spec = tables[args.query.table]
        for field_name in self.columns_numeric:
            column = getattr(args, field_name, None)
            if column is None:
                continue
            check_column(spec, args.query.table, column, numeric=True)
            if args.dp is not None and spec.columns[column].bounds is None:
                raise ValueError(
                    f"column {column!r} needs published bounds for a differentially private "
                    f"{type(self).__name__.lower()} (tables.{args.query.table}.columns."
                    f"{column}.bounds)"
                )

    def start(self, args: Any, state: State, tables: Mapping[str, TableSpec]) -> Any:
        spec = tables[args.query.table]
        return {"stage": 0, "totals": [], "spec": spec, "threshold": spec.privacy.min_group_size}

    def done(self, args: Any, carry: Any) -> bool:
        return bool(carry["stage"] >= self.stages(args))

    def request(self, args: Any, carry: Any) -> dict[str, np.ndarray]:
        return {"stage": np.array([carry["stage"]], dtype=np.int64), **self.extra(args, carry)}

    def extra(self, args: Any, carry: Any) -> dict[str, np.ndarray]:
        return {}

    def local(self, args: Any, request: Arrays, data: LocalData) -> Partial:
        stage = int(request["stage"][0])
        return Partial(sums=self.sums(args, stage, request, data.select(args.query)))

    def sums(self, args: Any, stage: int, request: Arrays, table: Table) -> dict[str, Statistic]:
        raise NotImplementedError

    def combine(self, args: Any, carry: Any, total: Arrays, plain: Mapping[str, Arrays]) -> Any:
        carry["totals"].append(dict(total))
        self.advance(args, carry, total)
        carry["stage"] += 1
        return carry

    def advance(self, args: Any, carry: Any, total: Arrays) -> None:
        """Work out the next stage's request from this stage's totals."""


class Count(Staged):
    Args = CountArgs

    def sums(self, args: Any, stage: int, request: Any, table: Table) -> dict[str, Statistic]:
        if args.column is None:
            return {"count": _count(table.n_rows)}
        return {"count": _count(table.present(args.column).sum())}

    def check(self, args: Any, tables: Mapping[str, TableSpec]) -> None:
        Operation.check(self, args, tables)
        if args.column is not None:
            check_column(tables[args.query.table], args.query.table, args.column)

    def finish(self, args: Any, carry: Any, state: State) -> Finished:
        n = float(carry["totals"][0]["count"][0])
        if _suppressed(n, carry["threshold"]):
            return Finished(result={"count": None, "suppressed": True}, metrics={}, state=state)
        return Finished(result={"count": n}, metrics={"count": n}, state=state)


class Sum(Staged):
    Args = ColumnArgs

    def releases(self, args: Any) -> int:
        return 2

    def sums(self, args: Any, stage: int, request: Any, table: Table) -> dict[str, Statistic]:
        v = _values(args, table, args.column)
        size = _magnitude(table.spec, args.column) if args.dp is not None else 0.0
        return {"count": _count(v.size), "sum": Statistic(np.array([v.sum()]), size, size)}

    def finish(self, args: Any, carry: Any, state: State) -> Finished:
        t = carry["totals"][0]
        n, s = float(t["count"][0]), float(t["sum"][0])
        if _suppressed(n, carry["threshold"]):
            return Finished(result={"sum": None, "suppressed": True}, metrics={}, state=state)
        return Finished(result={"sum": s, "count": n}, metrics={"sum": s, "count": n}, state=state)


class Mean(Sum):
    def finish(self, args: Any, carry: Any, state: State) -> Finished:
        t = carry["totals"][0]
        n, s = float(t["count"][0]), float(t["sum"][0])
        if _suppressed(n, carry["threshold"]):
            return Finished(result={"mean": None, "suppressed": True}, metrics={}, state=state)
        mean = s / n
        return Finished(
            result={"mean": mean, "count": n}, metrics={"mean": mean, "count": n}, state=state
        )


class Variance(Sum):
    """Two passes: (count, sum), then the sum of squared deviations from the global mean."""

    Args = VarianceArgs

    def stages(self, args: Any) -> int:
        return 2

    def releases(self, args: Any) -> int:
        return 3

    def extra(self, args: Any, carry: Any) -> dict[str, np.ndarray]:
        return {"mean": np.array([carry.get("mean", 0.0)])}

    def sums(self, args: Any, stage: int, request: Any, table: Table) -> dict[str, Statistic]:
        if stage == 0:
            return super().sums(args, stage, request, table)
        mean = float(request["mean"][0])
        v = _values(args, table, args.column)
        size = 0.0
        if args.dp is not None:
            low, high = _bound(table.spec, args.column)
            centre = min(max(mean, low), high)
            size = max((high - centre) ** 2, (centre - low) ** 2)
        return {"squares": Statistic(np.array([np.sum((v - mean) ** 2)]), size, size)}

    def advance(self, args: Any, carry: Any, total: Arrays) -> None:
        if carry["stage"] == 0:
            n = float(total["count"][0])
            carry["mean"] = float(total["sum"][0]) / n if n > 0 else 0.0

    def finish(self, args: Any, carry: Any, state: State) -> Finished:
        n = float(carry["totals"][0]["count"][0])
        if _suppressed(n, carry["threshold"]) or n - args.ddof <= 0:
            result: dict[str, Any] = {"variance": None, "std": None, "suppressed": True}
            return Finished(result=result, metrics={}, state=state)
        var = float(carry["totals"][1]["squares"][0]) / (n - args.ddof)
        std = math.sqrt(var) if var >= 0 else float("nan")
        result = {"variance": var, "std": std, "mean": carry["mean"], "count": n}
        return Finished(result=result, metrics={"variance": var, "std": std}, state=state)


class Histogram(Staged):
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
        bounds = args.range or spec.columns[args.column].bounds
        assert bounds is not None  # checked before anything runs
        low, high = bounds
        return np.linspace(low, high, args.bins + 1)

    def sums(self, args: Any, stage: int, request: Any, table: Table) -> dict[str, Statistic]:
        values = table.numeric(args.column)
        counts, _ = np.histogram(values[~np.isnan(values)], bins=self.edges(args, table.spec))
        return {"counts": Statistic(counts.astype(np.float64), 1.0, 1.0)}

    def finish(self, args: Any, carry: Any, state: State) -> Finished:
        counts = carry["totals"][0]["counts"]
        threshold = carry["threshold"]
        shown = [None if threshold > 1 and c < threshold else float(c) for c in counts]
        result = {
            "edges": self.edges(args, carry["spec"]).tolist(),
            "counts": shown,
            "suppressed": [i for i, c in enumerate(shown) if c is None],
        }
        return Finished(result=result, metrics={"total": float(np.sum(counts))}, state=state)


class Quantiles(Staged):
    """A count, then 8 zooming stages over the values' bit order."""

    Args: ClassVar[type[BaseModel]] = QuantileArgs

    def targets(self, args: Any, n: int) -> tuple[int, ...]:
        return quantile_ranks(n, list(args.q))

    def stages(self, args: Any) -> int:
        return 1 + STAGES

    def extra(self, args: Any, carry: Any) -> dict[str, np.ndarray]:
        search: Search | None = carry.get("search")
        return {"lows": search.request()["lows"]} if search is not None else {}

    def sums(self, args: Any, stage: int, request: Any, table: Table) -> dict[str, Statistic]:
        v = _values(args, table, args.column)
        if stage == 0:
            return {"count": _count(v.size)}
        lows = request["lows"]
        counts = local_counts(float_keys(v), lows, stage - 1)
        return {"counts": Statistic(counts, float(len(lows)), math.sqrt(len(lows)))}

    def advance(self, args: Any, carry: Any, total: Arrays) -> None:
        if carry["stage"] == 0:
            n = max(0, round(float(total["count"][0])))
            carry["n"] = n
            carry["search"] = Search.begin(self.targets(args, max(n, 1)))
        else:
            carry["search"] = carry["search"].narrow(total["counts"])

    def finish(self, args: Any, carry: Any, state: State) -> Finished:
        n = carry["n"]
        if _suppressed(n, carry["threshold"]):
            return Finished(result={"suppressed": True}, metrics={}, state=state)
        values = numpy_quantile(n, list(args.q), carry["search"].values())
        result = {"q": list(args.q), "values": values, "count": n}
        metrics = {f"q{q:g}": v for q, v in zip(args.q, values, strict=True)}
        return Finished(result=result, metrics=metrics, state=state)


class _Extreme(Quantiles):
    Args = ColumnArgs
    which = "min"

    def targets(self, args: Any, n: int) -> tuple[int, ...]:
        return (0,) if self.which == "min" else (n - 1,)

    def finish(self, args: Any, carry: Any, state: State) -> Finished:
        n = carry["n"]
        if _suppressed(n, carry["threshold"]):
            return Finished(result={self.which: None, "suppressed": True}, metrics={}, state=state)
        value = carry["search"].values()[0]
        return Finished(result={self.which: value}, metrics={self.which: value}, state=state)


class Minimum(_Extreme):
    which = "min"


class Maximum(_Extreme):
    which = "max"


class GroupBy(Staged):
    """Per-category counts and, with ``column``, sums and means (rows whose group is missing
    are left out, as pandas' groupby does)."""

    Args = GroupByArgs

    def releases(self, args: Any) -> int:
        return 1 if args.column is None else 2

    def check(self, args: Any, tables: Mapping[str, TableSpec]) -> None:
        super().check(args, tables)
        check_column(tables[args.query.table], args.query.table, args.by, numeric=False)

    def sums(self, args: Any, stage: int, request: Any, table: Table) -> dict[str, Statistic]:
        groups = table.columns[args.by]
        k = len(table.spec.columns[args.by].categories or [])
        if args.column is None:
            counts = np.bincount(groups[groups >= 0], minlength=k).astype(np.float64)
            return {"counts": Statistic(counts, 1.0, 1.0)}
        values = table.numeric(args.column)
        keep = (groups >= 0) & ~np.isnan(values)
        v = values[keep]
        if args.dp is not None:
            v = np.clip(v, *_bound(table.spec, args.column))
        size = _magnitude(table.spec, args.column) if args.dp is not None else 0.0
        g = groups[keep]
        return {
            "counts": Statistic(np.bincount(g, minlength=k).astype(np.float64), 1.0, 1.0),
            "sums": Statistic(np.bincount(g, weights=v, minlength=k), size, size),
        }

    def finish(self, args: Any, carry: Any, state: State) -> Finished:
        spec: TableSpec = carry["spec"]
        names = spec.columns[args.by].categories or []
        total = carry["totals"][0]
        groups: dict[str, Any] = {}
        suppressed: list[str] = []
        metrics: dict[str, float] = {}
        for i, name in enumerate(names):
            count = float(total["counts"][i])
            if _suppressed(count, carry["threshold"]):
                if count > 0 or args.dp is not None or carry["threshold"] > 1:
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
OPERATIONS.register("min", Minimum())
OPERATIONS.register("max", Maximum())
OPERATIONS.register("groupby", GroupBy())
