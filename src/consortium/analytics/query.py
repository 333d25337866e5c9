"""Queries: which table, which rows (filters), checked against the published schema.

Filters are data: comparisons, ranges, membership and null checks on a column, combined
with ``and``, ``or`` and ``not``. Their JSON form is what travels; in Python they compose
naturally::

    q = Query(table="patients").filter(col("age") >= 40, col("sex").isin(["F"]))
    q = q.filter(~col("bmi").is_null() | (col("bp") > 90))

Semantics follow pandas: a comparison with a missing value is false, ``!=`` and ``not_in``
are the negations of ``==`` and ``in`` (so true for a missing value), ``between`` includes
both ends, and the filters of a query must all hold.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Literal, get_args

import numpy as np
from pydantic import BeforeValidator, Field

from consortium.analytics.tables import Table, TableSpec
from consortium.spec import Strict

__all__ = [
    "Between",
    "Col",
    "Combine",
    "Compare",
    "Filter",
    "IsIn",
    "IsNull",
    "Not",
    "Query",
    "col",
]

Scalar = float | str


class _Composable(Strict):
    """``&``, ``|`` and ``~`` on filters."""

    def __and__(self, other: Filter) -> Combine:
        return Combine(op="and", of=[self, other])  # type: ignore[list-item]

    def __or__(self, other: Filter) -> Combine:
        return Combine(op="or", of=[self, other])  # type: ignore[list-item]

    def __invert__(self) -> Not:
        return Not(op="not", of=self)  # type: ignore[arg-type]


class Compare(_Composable):
    column: str
    op: Literal["==", "!=", "<", "<=", ">", ">="]
    value: Scalar


class Between(_Composable):
    column: str
    op: Literal["between"] = "between"
    value: tuple[float, float]


class IsIn(_Composable):
    column: str
    op: Literal["in", "not_in"] = "in"
    value: list[Scalar] = Field(min_length=1)


class IsNull(_Composable):
    column: str
    op: Literal["is_null", "not_null"] = "is_null"


class Combine(_Composable):
    """Filters that must all hold (``and``) or of which one must (``or``)."""

    op: Literal["and", "or"]
    of: list[Filter] = Field(min_length=1)


class Not(_Composable):
    op: Literal["not"] = "not"
    of: Filter


_FILTERS: tuple[type[_Composable], ...] = (Compare, Between, IsIn, IsNull, Combine, Not)
_OPS = [op for model in _FILTERS for op in get_args(model.model_fields["op"].annotation)]


def _known_op(value: Any) -> Any:
    op = value.get("op") if isinstance(value, dict) else getattr(value, "op", None)
    if op not in _OPS:
        raise ValueError("a filter's op must be one of: " + ", ".join(_OPS))
    return value


Filter = Annotated[
    Compare | Between | IsIn | IsNull | Combine | Not,
    Field(discriminator="op"),
    BeforeValidator(_known_op),
]
for _model in _FILTERS:
    _model.model_rebuild()


class Col:
    """A column reference for building filters in Python: ``col("age") > 40``."""

    def __init__(self, name: str) -> None:
        self.name = name

    def _cmp(self, op: str, value: Scalar) -> Compare:
        return Compare(column=self.name, op=op, value=value)  # type: ignore[arg-type]

    def __eq__(self, value: object) -> Compare:  # type: ignore[override]
        return self._cmp("==", value)  # type: ignore[arg-type]

    def __ne__(self, value: object) -> Compare:  # type: ignore[override]
        return self._cmp("!=", value)  # type: ignore[arg-type]

    def __lt__(self, value: Scalar) -> Compare:
        return self._cmp("<", value)

    def __le__(self, value: Scalar) -> Compare:
        return self._cmp("<=", value)

    def __gt__(self, value: Scalar) -> Compare:
        return self._cmp(">", value)

    def __ge__(self, value: Scalar) -> Compare:
        return self._cmp(">=", value)

    def between(self, low: float, high: float) -> Between:
        return Between(column=self.name, value=(low, high))

    def isin(self, values: Sequence[Scalar]) -> IsIn:
        return IsIn(column=self.name, value=list(values))

    def not_in(self, values: Sequence[Scalar]) -> IsIn:
        return IsIn(column=self.name, op="not_in", value=list(values))

    def is_null(self) -> IsNull:
        return IsNull(column=self.name)

    def not_null(self) -> IsNull:
        return IsNull(column=self.name, op="not_null")


def col(name: str) -> Col:
    return Col(name)


class Query(Strict):
    """Rows of one table that pass every filter in ``where``."""

    table: str
    where: list[Filter] = Field(default_factory=list)

    def filter(self, *filters: Filter) -> Query:
        """A new query with more filters (all must hold)."""
        return Query(table=self.table, where=[*self.where, *filters])

    def check(self, tables: Mapping[str, TableSpec]) -> None:
        """Raise ValueError naming a missing table or column, or a filter that does not fit
        the column's type."""
        if self.table not in tables:
            raise ValueError(
                f"no table {self.table!r}; tables are: {', '.join(sorted(tables)) or 'none'}"
            )
        for f in self.where:
            _check_filter(f, tables[self.table], self.table)

    def apply(self, table: Table) -> Table:
        """The rows of ``table`` this query selects."""
        mask = np.ones(table.n_rows, dtype=bool)
        for f in self.where:
            mask &= _evaluate(f, table)
        return table.rows(mask)


def check_column(spec: TableSpec, table: str, column: str, *, numeric: bool | None = None) -> None:
    """Raise ValueError unless ``column`` is in the table (and numeric, or a category)."""
    if column not in spec.columns:
        raise ValueError(
            f"column {column!r} is not in table {table!r}; columns are: {', '.join(spec.columns)}"
        )
    kind = spec.columns[column].type
    if numeric is True and kind == "category":
        raise ValueError(f"column {column!r} of table {table!r} is a category, not a number")
    if numeric is False and kind != "category":
        raise ValueError(f"column {column!r} of table {table!r} is {kind}, not a category")


def _check_filter(f: Any, spec: TableSpec, table: str) -> None:
    if isinstance(f, Combine):
        for g in f.of:
            _check_filter(g, spec, table)
        return
    if isinstance(f, Not):
        _check_filter(f.of, spec, table)
        return
    check_column(spec, table, f.column)
    column = spec.columns[f.column]
    if isinstance(f, Compare | IsIn):
        values = [f.value] if isinstance(f, Compare) else f.value
        if column.type == "category":
            if isinstance(f, Compare) and f.op not in ("==", "!="):
                raise ValueError(f"column {f.column!r} is a category: only == and != compare it")
            unknown = [v for v in values if str(v) not in (column.categories or [])]
            if unknown:
                raise ValueError(f"{unknown} not among the categories of column {f.column!r}")
        elif any(isinstance(v, str) for v in values):
            raise ValueError(f"column {f.column!r} is numeric; compare it with numbers")
    elif isinstance(f, Between) and column.type == "category":
        raise ValueError(f"column {f.column!r} is a category: it has no range")


_COMPARE: dict[str, Callable[[np.ndarray, Any], np.ndarray]] = {
    "==": np.equal,
    "!=": lambda a, b: ~np.equal(a, b),
    "<": np.less,
    "<=": np.less_equal,
    ">": np.greater,
    ">=": np.greater_equal,
}


def _codes(table: Table, column: str, values: Sequence[Scalar]) -> list[int]:
    categories = table.spec.columns[column].categories or []
    return [categories.index(str(v)) for v in values]


def _evaluate(f: Any, table: Table) -> np.ndarray:
    if isinstance(f, Combine):
        reduce = np.logical_and.reduce if f.op == "and" else np.logical_or.reduce
        return reduce([_evaluate(g, table) for g in f.of])
    if isinstance(f, Not):
        return ~_evaluate(f.of, table)
    values = table.columns[f.column]
    is_category = not table.spec.columns[f.column].numeric
    if isinstance(f, IsNull):
        present = table.present(f.column)
        return ~present if f.op == "is_null" else present
    if isinstance(f, Compare):
        target = _codes(table, f.column, [f.value])[0] if is_category else float(f.value)
        with np.errstate(invalid="ignore"):
            return np.asarray(_COMPARE[f.op](values, target), dtype=bool)
    if isinstance(f, Between):
        low, high = f.value
        with np.errstate(invalid="ignore"):
            return (values >= low) & (values <= high)
    assert isinstance(f, IsIn)
    targets = _codes(table, f.column, f.value) if is_category else [float(v) for v in f.value]
    inside = np.isin(values, targets)
    return ~inside if f.op == "not_in" else inside
