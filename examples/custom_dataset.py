"""A dataset of your own, by name: rows read from CSV files, with the label column named.

The loader is registered as ``csv_table``; a job names it in ``data.dataset`` with its
arguments, and every party calls it locally (nothing but the job file is shared). Here the
three ``examples/data/wine_*.csv`` tables are read as one, the numeric columns become the
features and ``cultivar`` the label, and four trainers train a logistic regression on it.

    python examples/custom_dataset.py
    python examples/custom_dataset.py --rounds 3

As a plugin (any launcher): name this module under ``plugins:`` and set
``data.dataset: {name: csv_table, args: {paths: [...], label: cultivar}}``.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

import consortium
from consortium.data import Dataset, classification, register_dataset

HERE = Path(__file__).parent


@register_dataset("csv_table")
def csv_table(*, seed: int, paths: list[str], label: str) -> Dataset:
    """The rows of the CSV files ``paths`` (same header); every column whose values all
    parse as numbers is a feature, ``label`` is the class."""
    rows: list[dict[str, str]] = []
    for path in paths:
        with open(path, newline="", encoding="utf-8") as f:
            rows.extend(csv.DictReader(f))
    if not rows:
        raise ValueError(f"no rows in {paths}")
    if label not in rows[0]:
        raise ValueError(f"no column {label!r} in {paths[0]}; columns: {', '.join(rows[0])}")
    features = [c for c in rows[0] if c != label and all(_number(r[c]) for r in rows)]
    x = np.array([[float(r[c]) for c in features] for r in rows])
    return classification("csv_table", x, [r[label] for r in rows])


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


JOB = {
    "name": "custom-dataset",
    "seed": 7,
    "topology": {"template": "star", "roles": {"aggregator": {}, "trainer": {"count": 4}}},
    "data": {
        "dataset": {
            "name": "csv_table",
            "args": {
                "paths": [str(HERE / "data" / f"wine_{i}.csv") for i in range(3)],
                "label": "cultivar",
            },
        },
    },
    "model": {"name": "logreg"},
    "algorithm": {"rounds": 10, "local": {"epochs": 2, "batch_size": 8, "lr": 0.1}},
    "tracking": {"mlflow": {"enabled": False}},
}


def main(argv: list[str] | None = None) -> consortium.RunResult:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--out", default=None, help="run directory (default: runs/...)")
    args = parser.parse_args(argv)
    result = consortium.run(JOB, overrides=[f"algorithm.rounds={args.rounds}"], out=args.out)
    print(f"{result.status}: accuracy {result.metrics['accuracy']:.3f}, in {result.run_dir}")
    return result


if __name__ == "__main__":
    main()
