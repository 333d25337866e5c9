"""Writes the example tables: two scikit-learn datasets split by rows across three parties.

Run once from the repository root (``python examples/data/make_tables.py``); the CSV files it
writes are committed, so the examples need neither this script nor the network.

* ``diabetes_<i>.csv``: scikit-learn's diabetes data (442 patients, raw units), with ``sex``
  as a category (its codes 1 and 2) and an ``age_band`` category derived from ``age``; about
  3% of ``bmi`` and ``bp`` are blanked to show missing values. Rows go to three hospitals in
  unequal, shuffled shares.
* ``wine_<i>.csv``: scikit-learn's wine data (178 wines, 3 cultivars), the label as the
  ``cultivar`` category, with an ``ash_level`` category derived from ``ash`` and about 3% of
  ``magnesium`` blanked; split across three parties the same way.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from sklearn.datasets import load_diabetes, load_wine

HERE = Path(__file__).parent
SHARES = (0.45, 0.25, 0.30)


def _split(n: int, rng: np.random.Generator) -> list[np.ndarray]:
    order = rng.permutation(n)
    cuts = np.cumsum([round(s * n) for s in SHARES[:-1]])
    return [np.sort(part) for part in np.split(order, cuts)]


def _write(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _number(x: float) -> str:
    return f"{x:.10g}"


def diabetes(rng: np.random.Generator) -> None:
    data = load_diabetes(scaled=False)
    x, y = data.data, data.target
    names = list(data.feature_names)
    blank = {c: rng.random(len(y)) < 0.03 for c in ("bmi", "bp")}
    header = ["age", "sex", "age_band", *names[2:], "progression"]
    table = []
    for i in range(len(y)):
        age = x[i, 0]
        band = "under_40" if age < 40 else "40_to_59" if age < 60 else "60_plus"
        row = [_number(age), str(int(x[i, 1])), band]
        for j, c in enumerate(names[2:], start=2):
            row.append("" if c in blank and blank[c][i] else _number(x[i, j]))
        row.append(_number(y[i]))
        table.append(row)
    for k, part in enumerate(_split(len(y), rng)):
        _write(HERE / f"diabetes_{k}.csv", header, [table[i] for i in part])


def wine(rng: np.random.Generator) -> None:
    data = load_wine()
    x, y = data.data, data.target
    names = [n.replace("/", "_") for n in data.feature_names]
    blank = rng.random(len(y)) < 0.03
    ash = names.index("ash")
    low, high = np.quantile(x[:, ash], [1 / 3, 2 / 3])
    header = [*names, "ash_level", "cultivar"]
    table = []
    for i in range(len(y)):
        row = [
            "" if (c == "magnesium" and blank[i]) else _number(x[i, j]) for j, c in enumerate(names)
        ]
        a = x[i, ash]
        row.append("low" if a < low else "medium" if a < high else "high")
        row.append(str(data.target_names[y[i]]))
        table.append(row)
    for k, part in enumerate(_split(len(y), rng)):
        _write(HERE / f"wine_{k}.csv", header, [table[i] for i in part])


if __name__ == "__main__":
    rng = np.random.default_rng(20240611)
    diabetes(rng)
    wine(rng)
