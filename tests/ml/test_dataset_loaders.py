from __future__ import annotations

import numpy as np
import pytest

from consortium.errors import ConfigError, PluginError
from consortium.ml import DATASETS, Dataset, load_dataset

BUNDLED = {
    # name: (rows, features, classes or None)
    "digits": (1797, 64, 10),
    "breast_cancer": (569, 30, 2),
    "wine": (178, 13, 3),
    "iris": (150, 4, 3),
    "diabetes": (442, 10, None),
}


def test_every_builtin_is_registered() -> None:
    assert set(BUNDLED) | {"synthetic", "synthetic_regression"} <= set(DATASETS.names())


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_bundled_datasets_have_the_documented_shape_and_types(name: str) -> None:
    rows, features, classes = BUNDLED[name]
    ds = load_dataset(name, seed=0)
    assert ds.name == name
    assert ds.x.shape == (rows, features)
    assert ds.x.dtype == np.float32
    assert ds.n_classes == classes
    if classes is None:
        assert ds.task == "regression"
        assert ds.y.dtype == np.float32
    else:
        assert ds.task == "classification"
        assert ds.y.dtype == np.int64
        assert sorted(np.unique(ds.y)) == list(range(classes))


def test_digits_keeps_its_image_shape() -> None:
    ds = load_dataset("digits", seed=0)
    assert ds.image_shape == (8, 8)
    from sklearn.datasets import load_digits

    np.testing.assert_array_equal(ds.x[5].reshape(8, 8), load_digits().images[5])


def test_synthetic_defaults_and_determinism() -> None:
    a = load_dataset("synthetic", seed=3)
    b = load_dataset("synthetic", seed=3)
    c = load_dataset("synthetic", seed=4)
    assert a.x.shape == (1000, 20)
    assert a.n_classes == 2
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    assert not np.array_equal(a.x, c.x)


def test_synthetic_args_are_passed_through() -> None:
    ds = load_dataset(
        "synthetic", seed=0, n_samples=300, n_features=6, n_informative=4, n_classes=3
    )
    assert ds.x.shape == (300, 6)
    assert ds.n_classes == 3
    assert np.bincount(ds.y).min() > 50  # make_classification balances the classes


def test_synthetic_regression() -> None:
    ds = load_dataset("synthetic_regression", seed=1, n_samples=50, n_features=5, n_informative=5)
    assert ds.task == "regression"
    assert ds.x.shape == (50, 5)
    assert ds.y.dtype == np.float32


def test_large_derived_seeds_are_accepted() -> None:
    # Consortium derives 63-bit seeds; scikit-learn only takes 32-bit ones.
    ds = load_dataset("synthetic", seed=2**63 - 5, n_samples=20)
    assert ds.x.shape == (20, 20)


def test_unknown_dataset_lists_the_choices() -> None:
    with pytest.raises(PluginError) as err:
        load_dataset("mnist-ish", seed=0)
    assert "mnist-ish" in str(err.value)
    assert "digits" in str(err.value) and "breast_cancer" in str(err.value)


def test_unknown_argument_names_the_argument_and_dataset() -> None:
    with pytest.raises(ConfigError) as err:
        load_dataset("synthetic", seed=0, n_sample=10)
    assert "'n_sample'" in str(err.value)
    assert "'synthetic'" in str(err.value)
    assert "n_samples" in str(err.value)  # the valid choices are listed
    with pytest.raises(ConfigError, match="'digits' has no argument 'n_samples'"):
        load_dataset("digits", seed=0, n_samples=10)


@pytest.mark.parametrize(
    "args", [{"n_classes": 1}, {"n_samples": 0}, {"n_informative": 30}, {"n_samples": "many"}]
)
def test_bad_argument_values_are_config_errors(args: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="synthetic"):
        load_dataset("synthetic", seed=0, **args)


@pytest.mark.parametrize("seed", [-1, 1.5, True, "0"])
def test_bad_seeds_are_refused(seed: object) -> None:
    with pytest.raises(ConfigError, match="seed"):
        load_dataset("iris", seed=seed)  # type: ignore[arg-type]


def test_dataset_checks_its_arrays() -> None:
    x = np.zeros((4, 2), dtype=np.float32)
    ok = Dataset(x=x, y=np.array([0, 1, 0, 1]), task="classification", n_classes=2, name="t")
    assert ok.n_samples == 4 and ok.n_features == 2
    with pytest.raises(ValueError, match="float32"):
        Dataset(x=x.astype(np.float64), y=ok.y, task="classification", n_classes=2, name="t")
    with pytest.raises(ValueError, match="labels"):
        Dataset(x=x, y=np.array([0, 1, 2, 1]), task="classification", n_classes=2, name="t")
    with pytest.raises(ValueError, match="one value per row"):
        Dataset(x=x, y=np.array([0, 1]), task="classification", n_classes=2, name="t")
    with pytest.raises(ValueError, match="regression"):
        Dataset(x=x, y=np.zeros(4), task="regression", n_classes=None, name="t")
    with pytest.raises(ValueError, match="image_shape"):
        Dataset(x=x, y=ok.y, task="classification", n_classes=2, name="t", image_shape=(3, 3))


def test_subset_keeps_the_metadata() -> None:
    ds = load_dataset("digits", seed=0)
    sub = ds.subset(np.array([3, 1]))
    assert sub.image_shape == (8, 8) and sub.n_classes == 10 and sub.name == "digits"
    np.testing.assert_array_equal(sub.x, ds.x[[3, 1]])
    np.testing.assert_array_equal(sub.y, ds.y[[3, 1]])
