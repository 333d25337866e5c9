"""Datasets: one in-memory table of features and targets, its train/test split and
standardisation (numpy, deterministic for a seed), and a registry of loaders.

The built-in loaders use scikit-learn's bundled datasets (``load_*``, which read files shipped
with the package and never touch the network) and its generators (``make_*``), and one table
shipped by another package (German credit, the ``credit`` extra). scikit-learn
is imported inside each loader, so ``import consortium.ml`` stays light.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from consortium.errors import ConfigError
from consortium.ml._checks import check_plugin_args, check_positive_int, check_seed, sklearn_seed
from consortium.registry import Registry

__all__ = [
    "DATASETS",
    "Dataset",
    "DatasetLoader",
    "Task",
    "apply_standardizer",
    "classification",
    "fit_standardizer",
    "load_dataset",
    "regression",
    "standardize",
    "train_test_split",
]

Task = Literal["classification", "regression"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Dataset:
    """Rows of features ``x`` (float32, shape ``(n, features)``; images flattened, their
    shape kept in ``image_shape``) with targets ``y``: int64 class labels in
    ``[0, n_classes)`` for classification, float32 values for regression."""

    x: np.ndarray
    y: np.ndarray
    task: Task
    n_classes: int | None
    name: str
    image_shape: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        x, y, k = self.x, self.y, self.n_classes
        problem = None
        if x.ndim != 2 or x.dtype != np.float32:
            problem = f"x must be a 2-D float32 array, got shape {x.shape} dtype {x.dtype}"
        elif y.ndim != 1 or len(y) != len(x):
            problem = (
                f"y must be 1-D with one value per row of x, got shape {y.shape} for {len(x)} rows"
            )
        elif self.task == "classification" and (y.dtype != np.int64 or k is None or k < 2):
            problem = (
                "classification needs int64 labels and n_classes >= 2, "
                f"got dtype {y.dtype} and n_classes={k}"
            )
        elif self.task == "classification" and len(y) and (y.min() < 0 or y.max() >= k):
            problem = f"labels must lie in [0, {k})"
        elif self.task == "regression" and (y.dtype != np.float32 or k is not None):
            problem = (
                "regression needs float32 targets and n_classes=None, "
                f"got dtype {y.dtype} and n_classes={k}"
            )
        elif self.task not in ("classification", "regression"):
            problem = f"unknown task {self.task!r}"
        elif self.image_shape is not None and int(np.prod(self.image_shape)) != x.shape[1]:
            problem = f"image_shape {self.image_shape} does not match {x.shape[1]} features"
        if problem:
            raise ValueError(f"dataset {self.name!r}: {problem}")

    @property
    def n_samples(self) -> int:
        return int(self.x.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.x.shape[1])

    def subset(self, rows: np.ndarray) -> Dataset:
        """The rows selected by an index array (a copy), everything else unchanged."""
        return dataclasses.replace(self, x=self.x[rows], y=self.y[rows])


#: A loader is called as ``loader(*, seed=..., **args)`` and returns a :class:`Dataset`.
DatasetLoader = Callable[..., Dataset]

DATASETS: Registry[DatasetLoader] = Registry("dataset")


def load_dataset(name: str, *, seed: int, **args: Any) -> Dataset:
    """Load the dataset registered as ``name`` with the loader's own ``args``.

    Raises PluginError (a ConfigError) listing the choices for an unknown name, and
    ConfigError naming the argument for an argument the loader does not take.
    """
    loader = DATASETS.get(name)
    seed = check_seed(seed)
    check_plugin_args(loader, args, kind="dataset", name=name, reserved=("seed",))
    try:
        return loader(seed=seed, **args)
    except (ConfigError, TypeError, ValueError) as exc:
        raise ConfigError(f"dataset {name!r}: {exc}") from exc


def classification(
    name: str, x: Any, y: Any, image_shape: tuple[int, ...] | None = None
) -> Dataset:
    """A classification dataset from feature rows ``x`` and labels ``y`` of any type: the
    labels are numbered 0..k-1 in sorted order, the features made float32."""
    classes, codes = np.unique(np.asarray(y), return_inverse=True)
    return Dataset(
        x=np.ascontiguousarray(x, dtype=np.float32),
        y=codes.astype(np.int64).reshape(-1),
        task="classification",
        n_classes=len(classes),
        name=name,
        image_shape=image_shape,
    )


def regression(name: str, x: Any, y: Any) -> Dataset:
    """A regression dataset from feature rows ``x`` and real targets ``y`` (both float32)."""
    return Dataset(
        x=np.ascontiguousarray(x, dtype=np.float32),
        y=np.ascontiguousarray(y, dtype=np.float32).reshape(-1),
        task="regression",
        n_classes=None,
        name=name,
    )


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
    mean, scale = fit_standardizer(train.x)

    def scaled(ds: Dataset) -> Dataset:
        return dataclasses.replace(ds, x=apply_standardizer(ds.x, mean, scale))

    return scaled(train), scaled(test)


def fit_standardizer(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and scale (standard deviation) of each column of the training rows, float64; a
    constant column keeps a scale of 1 (its std can be a rounding error of 1e-17, so
    constancy is tested exactly)."""
    values = np.asarray(x, dtype=np.float64)
    mean = values.mean(axis=0)
    return mean, np.where(np.ptp(values, axis=0) == 0.0, 1.0, values.std(axis=0))


def apply_standardizer(x: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``x`` standardised as :func:`standardize` does it, as float32."""
    return ((np.asarray(x, dtype=np.float32) - mean) / scale).astype(np.float32)


@DATASETS.decorator("digits")
def load_digits(*, seed: int) -> Dataset:
    """8x8 images of handwritten digits, 1,797 rows, 10 classes, pixel values 0-16."""
    from sklearn.datasets import load_digits as sk_load

    x, y = sk_load(return_X_y=True)
    return classification("digits", x, y, image_shape=(8, 8))


@DATASETS.decorator("breast_cancer")
def load_breast_cancer(*, seed: int) -> Dataset:
    """Wisconsin diagnostic breast cancer: 569 rows, 30 features, 2 classes."""
    from sklearn.datasets import load_breast_cancer as sk_load

    return classification("breast_cancer", *sk_load(return_X_y=True))


@DATASETS.decorator("wine")
def load_wine(*, seed: int) -> Dataset:
    """Wine recognition: 178 rows, 13 features, 3 classes."""
    from sklearn.datasets import load_wine as sk_load

    return classification("wine", *sk_load(return_X_y=True))


@DATASETS.decorator("iris")
def load_iris(*, seed: int) -> Dataset:
    """Fisher's iris: 150 rows, 4 features, 3 classes."""
    from sklearn.datasets import load_iris as sk_load

    return classification("iris", *sk_load(return_X_y=True))


@DATASETS.decorator("diabetes")
def load_diabetes(*, seed: int) -> Dataset:
    """Diabetes progression: 442 rows, 10 (already scaled) features, a real-valued target."""
    from sklearn.datasets import load_diabetes as sk_load

    return regression("diabetes", *sk_load(return_X_y=True))


@DATASETS.decorator("german_credit")
def load_german_credit(*, seed: int) -> Dataset:
    """German credit (Statlog): 1,000 loan applicants, 61 columns (20 attributes, the
    categorical ones one-hot), 2 classes (1 = bad credit risk). Needs the ``credit`` extra;
    the column layout is in :mod:`consortium.ml.german_credit`."""
    from consortium.ml.german_credit import read_german_credit

    x, y, _ = read_german_credit()
    return Dataset(x=x, y=y, task="classification", n_classes=2, name="german_credit")


@DATASETS.decorator("synthetic")
def make_synthetic(
    *,
    seed: int,
    n_samples: int = 1000,
    n_features: int = 20,
    n_informative: int = 10,
    n_redundant: int = 0,
    n_classes: int = 2,
    class_sep: float = 1.0,
) -> Dataset:
    """A classification problem from :func:`sklearn.datasets.make_classification`."""
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=check_positive_int(n_samples, "n_samples", minimum=2),
        n_features=check_positive_int(n_features, "n_features"),
        n_informative=check_positive_int(n_informative, "n_informative"),
        n_redundant=check_positive_int(n_redundant, "n_redundant", minimum=0),
        n_classes=check_positive_int(n_classes, "n_classes", minimum=2),
        class_sep=float(class_sep),
        random_state=sklearn_seed(seed),
    )
    return classification("synthetic", x, y)


@DATASETS.decorator("synthetic_regression")
def make_synthetic_regression(
    *,
    seed: int,
    n_samples: int = 1000,
    n_features: int = 20,
    n_informative: int = 10,
    noise: float = 1.0,
) -> Dataset:
    """A linear regression problem from :func:`sklearn.datasets.make_regression`."""
    from sklearn.datasets import make_regression

    x, y = make_regression(
        n_samples=check_positive_int(n_samples, "n_samples", minimum=2),
        n_features=check_positive_int(n_features, "n_features"),
        n_informative=check_positive_int(n_informative, "n_informative"),
        noise=float(noise),
        random_state=sklearn_seed(seed),
    )
    return regression("synthetic_regression", x, y)
