"""Federated preprocessing: transformers fitted on global statistics, applied locally.

A ``preprocess`` step fits a pipeline of transformers over a query's rows across all
workers. Each transformer is fitted from secure sums over the rows as the transformers before
it leave them (imputed, scaled, ...), and the fitted pipeline joins the workflow state, so
every later job's workers apply it to their own rows before using them (``pipeline``):

* ``imputer`` fills missing values: ``mean``, ``median`` (exact, by order statistics),
  ``constant``, or, for a category, ``most_frequent`` (ties: the first declared category).
* ``standard_scaler``: ``(x - mean) / std`` with the population std (zero becomes 1),
  scikit-learn's ``StandardScaler``; two passes (mean, then squared deviations).
* ``minmax_scaler`` maps ``[min, max]`` onto ``feature_range`` (scikit-learn's
  ``MinMaxScaler``), with the exact global minimum and maximum.
* ``one_hot``: a 0/1 column ``<column>=<category>`` for each declared category (all 0 for a
  missing value); the categories are public, so fitting needs no statistics.
* ``binning``: the bin index of each value, ``uniform`` bins between the global min and max
  (scikit-learn's ``KBinsDiscretizer(encode="ordinal", strategy="uniform")``) or
  ``quantile`` bins at numpy's quantiles.

What the coordinator learns: the fitted parameters (means, scales, minima, maxima, edges), as
a centralised fit would publish them; never a party's own statistic.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field, PositiveInt

from consortium.analytics.operations import (
    OPERATIONS,
    Arrays,
    Finished,
    Flow,
    LocalData,
    Operation,
    Partial,
    State,
    Statistic,
)
from consortium.analytics.orderstats import (
    float_keys,
    local_counts,
    numpy_quantile,
    quantile_ranks,
    zoom,
)
from consortium.analytics.query import Query, check_column
from consortium.analytics.tables import ColumnSpec, Table, TableSpec
from consortium.spec import Strict

__all__ = ["PipelineArgs", "Transformer", "apply_fitted", "apply_pipeline"]


class _Base(Strict):
    columns: list[str] = Field(min_length=1)


class Imputer(_Base):
    kind: Literal["imputer"] = "imputer"
    strategy: Literal["mean", "median", "most_frequent", "constant"] = "mean"
    fill_value: float | str | None = None


class StandardScaler(_Base):
    kind: Literal["standard_scaler"] = "standard_scaler"


class MinMaxScaler(_Base):
    kind: Literal["minmax_scaler"] = "minmax_scaler"
    feature_range: tuple[float, float] = (0.0, 1.0)


class OneHot(_Base):
    kind: Literal["one_hot"] = "one_hot"


class Binning(_Base):
    kind: Literal["binning"] = "binning"
    bins: PositiveInt = 5
    strategy: Literal["uniform", "quantile"] = "uniform"


Transformer = Annotated[
    Imputer | StandardScaler | MinMaxScaler | OneHot | Binning, Field(discriminator="kind")
]


class PipelineArgs(Strict):
    query: Query
    steps: list[Transformer] = Field(min_length=1)


def _check(t: Any, spec: TableSpec, table: str) -> None:
    for c in t.columns:
        check_column(spec, table, c)
        is_category = not spec.columns[c].numeric
        if isinstance(t, OneHot) and not is_category:
            raise ValueError(f"one_hot: column {c!r} is not a category")
        if isinstance(t, Imputer):
            if is_category and t.strategy not in ("most_frequent", "constant"):
                raise ValueError(f"imputer: category column {c!r} takes most_frequent or constant")
            if not is_category and t.strategy == "most_frequent":
                raise ValueError(f"imputer: most_frequent is for category columns, not {c!r}")
            if t.strategy == "constant" and t.fill_value is None:
                raise ValueError("imputer: the constant strategy needs a fill_value")
            known = spec.columns[c].categories or []
            if t.strategy == "constant" and is_category and str(t.fill_value) not in known:
                raise ValueError(f"imputer: {t.fill_value!r} is not a category of {c!r}")
        elif not isinstance(t, OneHot) and is_category:
            raise ValueError(f"{t.kind}: column {c!r} is a category, not a number")


def _after(t: Any, spec: TableSpec) -> TableSpec:
    """The schema after ``t``: one-hot adds a float column per category."""
    if not isinstance(t, OneHot):
        return spec
    columns = dict(spec.columns)
    for c in t.columns:
        for cat in spec.columns[c].categories or []:
            columns[f"{c}={cat}"] = ColumnSpec(type="float", bounds=(0.0, 1.0))
    return spec.model_copy(update={"columns": columns})


def apply_pipeline(table: Table, steps: list[Any], params: Arrays) -> Table:
    """``table`` through the fitted transformers (``params``: ``p<i>.<name>`` arrays)."""
    for i, t in enumerate(steps):
        p = {k.split(".", 1)[1]: v for k, v in params.items() if k.startswith(f"p{i}.")}
        columns = dict(table.columns)
        for j, c in enumerate(t.columns):
            x = table.columns[c]
            if isinstance(t, Imputer):
                filled = x.copy()
                filled[~table.present(c)] = p["fill"][j]
                columns[c] = filled.astype(x.dtype)
            elif isinstance(t, StandardScaler):
                columns[c] = (x - p["mean"][j]) / p["scale"][j]
            elif isinstance(t, MinMaxScaler):
                low, high = t.feature_range
                span = p["max"][j] - p["min"][j]
                scale = (high - low) / (span if span != 0 else 1.0)
                columns[c] = x * scale + (low - p["min"][j] * scale)
            elif isinstance(t, Binning):
                codes = np.searchsorted(p["edges"][j][1:-1], x, side="right").astype(np.float64)
                columns[c] = np.where(np.isnan(x), np.nan, codes)
            else:
                for k, cat in enumerate(table.spec.columns[c].categories or []):
                    columns[f"{c}={cat}"] = (x == k).astype(np.float64)
        table = Table(name=table.name, spec=_after(t, table.spec), columns=columns)
    return table


def apply_fitted(table: Table, state: State) -> Table:
    """``table`` through the pipeline the workflow state holds, if it was fitted on the same
    table (else unchanged)."""
    meta = state.meta.get("pipeline")
    if not meta or meta["query"]["table"] != table.name:
        return table
    args = PipelineArgs.model_validate(meta)
    params = {k[9:]: v for k, v in state.arrays.items() if k.startswith("pipeline.")}
    return apply_pipeline(table, list(args.steps), params)


def _constant(t: Imputer, column: str, spec: TableSpec) -> float:
    categories = spec.columns[column].categories
    if categories is not None:
        return float(categories.index(str(t.fill_value)))
    return float(t.fill_value)  # type: ignore[arg-type]


class Preprocess(Operation):
    """Fits a pipeline of transformers across the workers (see the module docstring)."""

    Args = PipelineArgs

    def check(self, args: Any, tables: Mapping[str, TableSpec]) -> None:
        super().check(args, tables)
        spec = tables[args.query.table]
        for t in args.steps:
            _check(t, spec, args.query.table)
            spec = _after(t, spec)

    def coordinate(self, args: Any, state: State, tables: Mapping[str, TableSpec]) -> Flow:
        spec = tables[args.query.table]
        params: dict[str, np.ndarray] = {}
        for i, t in enumerate(args.steps):
            ask = {"step": np.array([i], dtype=np.int64)}
            ask.update({f"fit.{k}": v for k, v in params.items()})
            fitted = yield from self._fit(t, spec, ask)
            params.update({f"p{i}.{k}": np.asarray(v, dtype=np.float64) for k, v in fitted.items()})
            spec = _after(t, spec)
        result = {
            "table": args.query.table,
            "steps": [t.model_dump(mode="json") for t in args.steps],
            "params": {k: np.asarray(v).tolist() for k, v in params.items()},
        }
        new_state = state.updated(
            arrays={f"pipeline.{k}": v for k, v in params.items()},
            meta={"pipeline": args.model_dump(mode="json")},
        )
        return Finished(result=result, metrics={}, state=new_state)

    @staticmethod
    def _fit(t: Any, spec: TableSpec, ask: Arrays) -> Generator[Arrays, Any, dict[str, Any]]:
        """The parameters of transformer ``t`` from the sums it asks for (``ask``: the request
        that names it and carries the transformers fitted before it)."""
        if isinstance(t, OneHot):
            return {}  # the categories are public
        if isinstance(t, Imputer) and t.strategy == "constant":
            return {"fill": [_constant(t, c, spec) for c in t.columns]}
        total, _ = yield ask
        if isinstance(t, Imputer) and t.strategy == "most_frequent":
            levels = total["levels"].reshape(len(t.columns), -1)
            return {"fill": np.argmax(levels, axis=1).astype(float)}
        count = total["count"]
        if isinstance(t, Imputer) and t.strategy == "mean":
            return {"fill": total["sum"] / count}
        if isinstance(t, StandardScaler):
            mean = total["sum"] / count
            total, _ = yield {**ask, "mean": mean}
            std = np.sqrt(total["squares"] / count)
            return {"mean": mean, "scale": np.where(std == 0, 1.0, std)}
        # The rest need order statistics, found by the zoom of orderstats all at once.
        n = [round(c) for c in count]
        qs: list[float] | None = None  # None: the minimum and the maximum
        if isinstance(t, Imputer):  # the median
            qs = [0.5]
        elif isinstance(t, Binning) and t.strategy == "quantile":
            qs = list(np.linspace(0, 1, t.bins + 1))
        wanted = [quantile_ranks(max(m, 1), qs) if qs else (0, max(m - 1, 0)) for m in n]
        columns = [j for j, ranks in enumerate(wanted) for _ in ranks]
        request = {**ask, "columns": np.array(columns, dtype=np.int64)}
        values = yield from zoom(tuple(r for ranks in wanted for r in ranks), request)
        found = [[v for c, v in zip(columns, values, strict=True) if c == j] for j in range(len(n))]
        if qs is not None:
            found = [numpy_quantile(m, qs, v) for m, v in zip(n, found, strict=True)]
        if isinstance(t, Imputer):
            return {"fill": [v[0] for v in found]}
        if isinstance(t, MinMaxScaler):
            return {"min": [v[0] for v in found], "max": [v[1] for v in found]}
        if t.strategy == "uniform":
            return {"edges": [np.linspace(v[0], v[1], t.bins + 1) for v in found]}
        return {"edges": found}

    def local(self, args: Any, request: Arrays, data: LocalData) -> Partial:
        i = int(request["step"][0])
        params = {k[4:]: v for k, v in request.items() if k.startswith("fit.")}
        table = apply_pipeline(data.select(args.query), args.steps[:i], params)
        t = args.steps[i]
        values = [table.columns[c] for c in t.columns]
        if isinstance(t, Imputer) and t.strategy == "most_frequent":
            k = len(table.spec.columns[t.columns[0]].categories or [])
            counts = [np.bincount(v[v >= 0], minlength=k) for v in values]
            return Partial(sums={"levels": Statistic(np.concatenate(counts).astype(float), 0, 0)})
        present = [v[~np.isnan(v)] for v in values]
        if "mean" in request:
            squares = [np.sum((p - m) ** 2) for p, m in zip(present, request["mean"], strict=True)]
            return Partial(sums={"squares": Statistic(np.array(squares), 0, 0)})
        if "lows" in request:
            keys = [float_keys(p) for p in present]
            stage = int(request["stage"][0])
            counts = [
                local_counts(keys[int(c)], np.array([low], dtype=np.uint64), stage)
                for c, low in zip(request["columns"], request["lows"], strict=True)
            ]
            return Partial(sums={"counts": Statistic(np.concatenate(counts), 0, 0)})
        sizes = np.array([p.size for p in present], dtype=float)
        sums = np.array([p.sum() for p in present])
        return Partial(sums={"count": Statistic(sizes, 0, 0), "sum": Statistic(sums, 0, 0)})


OPERATIONS.register("preprocess", Preprocess())
