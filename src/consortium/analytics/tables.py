"""Data sources: each party's tables, declared in the job with their schema, loaded locally.

The job declares every table once: its columns (name, type and, where needed, public bounds
or categories) and where each party's file lies. That declaration is the *published schema*:
queries are checked against it before anything runs, and each party checks its own file
against it when the run starts. Rows never leave the party.

A loaded :class:`Table` is columnar numpy: ``float`` and ``int`` columns as ``float64`` with
NaN for a missing value, ``category`` columns as ``int64`` codes into the declared categories
with -1 for a missing value (only columns declared ``nullable`` may have one). CSV is read with the standard library; Parquet needs pyarrow.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, PositiveInt, model_validator

from consortium.errors import ConfigError
from consortium.spec import Strict

__all__ = ["ColumnSpec", "PrivacySpec", "Table", "TableSpec", "load_table"]

ColumnType = Literal["float", "int", "category"]
_NULLS = frozenset({"", "na", "nan", "null", "none"})


class ColumnSpec(Strict):
    """One column of a table's published schema."""

    type: ColumnType = "float"
    bounds: tuple[float, float] | None = Field(
        default=None, description="public [low, high] of a numeric column: DP clips to it"
    )
    categories: list[str] | None = Field(
        default=None, description="the levels of a category column, in a fixed order"
    )
    nullable: bool = Field(
        default=False,
        description="whether a cell may be missing (empty, NA, NaN, null, None); a missing "
        "cell in a column that is not nullable is an error naming its row",
    )

    @model_validator(mode="after")
    def _consistent(self) -> ColumnSpec:
        if self.type == "category":
            if not self.categories:
                raise ValueError("a category column lists its categories (the published levels)")
            if len(set(self.categories)) != len(self.categories):
                raise ValueError("categories must be distinct")
            if self.bounds is not None:
                raise ValueError("bounds apply to numeric columns only")
        elif self.categories is not None:
            raise ValueError("categories apply to category columns only")
        elif self.bounds is not None:
            low, high = self.bounds
            if not (math.isfinite(low) and math.isfinite(high) and low < high):
                raise ValueError("bounds must be finite with low < high")
        return self

    @property
    def numeric(self) -> bool:
        return self.type != "category"


class PrivacySpec(Strict):
    """A table's differential-privacy budget (the data owners' allowance for the whole job)
    and the smallest group a result may describe."""

    epsilon: float = Field(default=0.0, ge=0, description="total epsilon for this source")
    delta: float = Field(default=0.0, ge=0, lt=1, description="total delta for this source")
    min_group_size: PositiveInt = Field(
        default=1, description="groups with fewer rows are suppressed in results"
    )


class TableSpec(Strict):
    """A table the worker parties hold, split by rows among them."""

    format: Literal["csv", "parquet"] = "csv"
    files: str | dict[str, str] = Field(
        description="a path with {party} or {index} in it, or a path per party; relative "
        "paths are relative to the job file"
    )
    columns: dict[str, ColumnSpec] = Field(min_length=1)
    privacy: PrivacySpec = PrivacySpec()

    def path_for(self, party: str, index: int, base: Path) -> Path:
        if isinstance(self.files, dict):
            if party not in self.files:
                raise ConfigError(f"no file named for party {party!r}")
            text = self.files[party]
        else:
            text = self.files.replace("{party}", party).replace("{index}", str(index))
        return base / text  # an absolute path stays as it is


@dataclass(frozen=True, slots=True)
class Table:
    """A party's rows of one table, by column (see the module docstring for the encoding)."""

    name: str
    spec: TableSpec
    columns: Mapping[str, np.ndarray]

    @property
    def n_rows(self) -> int:
        return len(next(iter(self.columns.values())))

    def rows(self, mask: np.ndarray) -> Table:
        """The rows where ``mask`` is true."""
        return replace(self, columns={k: v[mask] for k, v in self.columns.items()})

    def present(self, column: str) -> np.ndarray:
        """Which rows have a value in ``column``."""
        values = self.columns[column]
        if self.spec.columns[column].numeric:
            return ~np.isnan(values)
        return values >= 0


def load_table(name: str, spec: TableSpec, path: Path) -> Table:
    """Read ``path`` and check it against the published schema; errors name the file, the
    column and, for a bad value, the row."""
    if not path.is_file():
        raise ConfigError(f"table {name!r}: no such file {str(path)!r}")
    raw = _read_parquet(path) if spec.format == "parquet" else _read_csv(path)
    missing = [c for c in spec.columns if c not in raw]
    if missing:
        raise ConfigError(
            f"table {name!r}: {path} lacks the declared column(s) {', '.join(missing)}"
        )
    columns = {c: _convert(raw[c], col, f"{path}: column {c!r}") for c, col in spec.columns.items()}
    return Table(name=name, spec=spec, columns=columns)


def _read_csv(path: Path) -> dict[str, list[Any]]:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader)
        except StopIteration:
            raise ConfigError(f"{path}: the file is empty (no header row)") from None
        data: dict[str, list[Any]] = {h: [] for h in header}
        for line, row in enumerate(reader, start=2):
            if len(row) != len(header):
                raise ConfigError(
                    f"{path}: line {line} has {len(row)} fields, the header has {len(header)}"
                )
            for h, v in zip(header, row, strict=True):
                data[h].append(v)
    return data


def _read_parquet(path: Path) -> dict[str, list[Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError(f"{path}: reading Parquet needs pyarrow (pip install pyarrow)") from None
    return pq.read_table(path).to_pydict()


def _convert(values: list[Any], spec: ColumnSpec, where: str) -> np.ndarray:
    is_category = spec.type == "category"
    index = {c: i for i, c in enumerate(spec.categories or [])}
    out = np.empty(len(values), dtype=np.int64 if is_category else np.float64)
    for i, v in enumerate(values):
        if v is None or (isinstance(v, str) and v.strip().lower() in _NULLS):
            if not spec.nullable:
                raise ConfigError(
                    f"{where}: row {i + 1}: a missing value; declare the column "
                    "'nullable: true' if it may have them"
                )
            out[i] = -1 if is_category else np.nan
        elif is_category:
            key = str(v).strip()
            if key not in index:
                raise ConfigError(
                    f"{where}: row {i + 1}: {key!r} is not one of the declared categories "
                    f"{spec.categories}"
                )
            out[i] = index[key]
        else:
            try:
                out[i] = float(v)
            except (TypeError, ValueError):
                raise ConfigError(f"{where}: row {i + 1}: {v!r} is not a number") from None
            if not math.isfinite(out[i]):
                raise ConfigError(f"{where}: row {i + 1}: {v!r} is not a finite number")
            if spec.type == "int" and not float(out[i]).is_integer():
                raise ConfigError(f"{where}: row {i + 1}: {v!r} is not an integer")
    return out
