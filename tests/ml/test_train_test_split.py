from __future__ import annotations

import numpy as np
import pytest

from consortium.errors import ConfigError
from consortium.ml import Dataset, load_dataset, standardize, train_test_split


def _indexed(y: np.ndarray, *, task: str = "classification") -> Dataset:
    """A dataset whose first feature is the row number, to trace rows through a split."""
    n = len(y)
    x = np.stack([np.arange(n), np.zeros(n)], axis=1).astype(np.float32)
    if task == "classification":
        return Dataset(
            x=x, y=y.astype(np.int64), task="classification", n_classes=int(y.max()) + 1, name="t"
        )
    return Dataset(x=x, y=y.astype(np.float32), task="regression", n_classes=None, name="t")


def _rows(ds: Dataset) -> np.ndarray:
    return ds.x[:, 0].astype(np.int64)


@pytest.mark.parametrize("stratify", [True, False])
def test_split_partitions_the_rows(stratify: bool) -> None:
    y = np.repeat([0, 1, 2], [50, 30, 20])
    train, test = train_test_split(_indexed(y), test_fraction=0.3, seed=1, stratify=stratify)
    assert len(test.y) == 30 and len(train.y) == 70
    rows = np.concatenate([_rows(train), _rows(test)])
    np.testing.assert_array_equal(np.sort(rows), np.arange(100))
    np.testing.assert_array_equal(train.y, y[_rows(train)])  # features and labels stay paired


def test_stratified_split_keeps_class_proportions() -> None:
    y = np.repeat([0, 1, 2, 3], [101, 37, 12, 250])
    _, test = train_test_split(_indexed(y), test_fraction=0.2, seed=7)
    counts = np.bincount(test.y, minlength=4)
    assert counts.sum() == 80
    exact = np.bincount(y) * 0.2
    assert np.all(np.abs(counts - exact) < 1.0)  # each class within one row of exact


def test_stratification_beats_chance_on_a_rare_class() -> None:
    y = np.array([1] * 10 + [0] * 990)
    for seed in range(20):
        _, test = train_test_split(_indexed(y), test_fraction=0.1, seed=seed)
        assert int(test.y.sum()) == 1


def test_split_is_deterministic_for_a_seed() -> None:
    ds = load_dataset("wine", seed=0)
    a_train, a_test = train_test_split(ds, test_fraction=0.25, seed=5)
    b_train, b_test = train_test_split(ds, test_fraction=0.25, seed=5)
    _, c_test = train_test_split(ds, test_fraction=0.25, seed=6)
    np.testing.assert_array_equal(a_train.x, b_train.x)
    np.testing.assert_array_equal(a_test.y, b_test.y)
    assert not np.array_equal(a_test.x, c_test.x)


def test_regression_split_is_unstratified() -> None:
    y = np.linspace(0, 1, 40)
    train, test = train_test_split(_indexed(y, task="regression"), test_fraction=0.25, seed=0)
    assert len(test.y) == 10
    assert test.y.dtype == np.float32 and train.task == "regression"


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 0.001, 0.999])
def test_bad_fractions_are_config_errors(fraction: float) -> None:
    with pytest.raises(ConfigError, match="test_fraction"):
        train_test_split(_indexed(np.array([0, 1] * 50)), test_fraction=fraction, seed=0)


def test_standardize_uses_train_statistics_only() -> None:
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(60, 3)) * [1.0, 10.0, 0.1] + [5.0, -2.0, 0.0]).astype(np.float32)
    x[:, 2] = 4.0  # a constant column
    y = np.arange(60) % 2
    train = Dataset(x=x[:40], y=y[:40], task="classification", n_classes=2, name="t")
    test = Dataset(x=x[40:], y=y[40:], task="classification", n_classes=2, name="t")
    s_train, s_test = standardize(train, test)
    assert s_train.x.dtype == np.float32 and s_test.x.dtype == np.float32
    np.testing.assert_allclose(s_train.x[:, :2].mean(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(s_train.x[:, :2].std(axis=0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(s_train.x[:, 2], 0.0)  # constant column: scale 1, no NaN
    mean, std = x[:40, :2].astype(np.float64).mean(0), x[:40, :2].astype(np.float64).std(0)
    np.testing.assert_allclose(s_test.x[:, :2], (x[40:, :2] - mean) / std, rtol=1e-5)
    # the test rows do not influence the scaling of the train rows
    shifted = Dataset(x=test.x + 100.0, y=test.y, task="classification", n_classes=2, name="t")
    np.testing.assert_array_equal(standardize(train, shifted)[0].x, s_train.x)
