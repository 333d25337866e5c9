"""What the aligned records are to the master: its split of them into training and test
records, its batch schedule, and each party's standardisation of its own columns (the
alignment itself, the private set intersection, is the master's: see
:mod:`consortium.vertical.master`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Alignment", "batches", "fit_standardizer", "split_records"]

SPLIT_KEY = 0x5B17  # keeps the master's train/test draw apart from its other random streams
EPOCH_KEY = 0xE90C


@dataclass(frozen=True, slots=True)
class Alignment:
    """The master's view: its own rows of the aligned records (training rows first), how
    many train, and how many columns each member holds."""

    rows: np.ndarray
    n_train: int
    features: dict[str, int] = field(default_factory=dict)


def split_records(n: int, test_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """An order of ``n`` aligned records with the training ones first (each part in
    ascending order), and the training count. At least one record trains; with two or more,
    at least one tests."""
    n_test = min(max(round(n * test_fraction), 1 if n > 1 else 0), n - 1)
    perm = rng.permutation(n)
    test, train = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    return np.concatenate([train, test]), n - n_test


def batches(
    n_train: int, batch_size: int | None, rng: np.random.Generator | None, *, min_size: int = 1
) -> list[np.ndarray]:
    """One epoch's batches of training positions, in the order drawn from ``rng`` (in order
    when it is None). A last batch shorter than ``min_size`` joins the one before it."""
    order = np.arange(n_train) if rng is None else rng.permutation(n_train)
    size = n_train if batch_size is None else batch_size
    out = [order[i : i + size] for i in range(0, n_train, size)]
    if len(out) > 1 and len(out[-1]) < min_size:
        out[-2:] = [np.concatenate(out[-2:])]
    return out


def fit_standardizer(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and scale of each column of the training rows (a constant column keeps scale 1)."""
    values = np.asarray(x, dtype=np.float64)
    mean = values.mean(axis=0)
    scale = np.where(np.ptp(values, axis=0) == 0.0, 1.0, values.std(axis=0))
    return mean, scale
