"""Train/test splits and feature standardisation, in numpy and deterministic for a seed."""

from __future__ import annotations

import dataclasses

import numpy as np

from consortium.errors import ConfigError
from consortium.ml._checks import check_seed
from consortium.ml.datasets import Dataset

__all__ = ["standardize", "train_test_split"]


def train_test_split(
    ds: Dataset, *, test_fraction: float, seed: int, stratify: bool = True
) -> tuple[Dataset, Dataset]:
    """Split ``ds`` into (train, test) with ``round(n * test_fraction)`` test rows.

    For classification with ``stratify=True``, each class contributes to the test set in
    proportion to its size (largest remainder rounding). Rows are drawn with
    ``numpy.random.default_rng(seed)``; each part comes back in a random order.
    """
    fraction = float(test_fraction)
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction!r}")
    n = ds.n_samples
    n_test = round(n * fraction)
    if n_test < 1 or n_test > n - 1:
        raise ConfigError(
            f"test_fraction={fraction} of {n} rows leaves an empty train or test set; "
            "change test_fraction or use a larger dataset"
        )
    rng = np.random.default_rng(check_seed(seed))
    if stratify and ds.task == "classification":
        assert ds.n_classes is not None
        by_class = [np.flatnonzero(ds.y == k) for k in range(ds.n_classes)]
        # largest remainder: each class's exact share of the test rows rounded down, then one
        # more row for the largest remainders (ties to the smaller class) up to n_test in all
        exact = np.bincount(ds.y, minlength=ds.n_classes) * n_test / n
        quotas = np.floor(exact).astype(np.int64)
        quotas[np.argsort(-(exact - quotas), kind="stable")[: n_test - int(quotas.sum())]] += 1
        test_parts, train_parts = [], []
        for rows, quota in zip(by_class, quotas, strict=True):
            shuffled = rng.permutation(rows)
            test_parts.append(shuffled[:quota])
            train_parts.append(shuffled[quota:])
        test_rows = rng.permutation(np.concatenate(test_parts))
        train_rows = rng.permutation(np.concatenate(train_parts))
    else:
        order = rng.permutation(n)
        test_rows, train_rows = order[:n_test], order[n_test:]
    return ds.subset(train_rows), ds.subset(test_rows)


def standardize(train: Dataset, test: Dataset) -> tuple[Dataset, Dataset]:
    """Scale every feature to zero mean and unit variance, with the mean and standard
    deviation measured on ``train`` only (a constant feature keeps a scale of 1), so nothing
    about the test rows leaks into training."""
    if train.n_features != test.n_features:
        raise ValueError(f"train has {train.n_features} features but test has {test.n_features}")
    x = train.x.astype(np.float64)
    mean = x.mean(axis=0)
    # a constant column can have a rounding-error std of 1e-17; test constancy exactly
    std = np.where(np.ptp(x, axis=0) == 0.0, 1.0, x.std(axis=0))

    def scaled(ds: Dataset) -> Dataset:
        return dataclasses.replace(ds, x=((ds.x - mean) / std).astype(np.float32))

    return scaled(train), scaled(test)
