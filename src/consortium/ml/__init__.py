"""Machine learning for the federated programs: datasets, splits, partitioners and models.

Everything here works on numpy arrays. scikit-learn (dataset loaders, the ``sk_*`` models) and
PyTorch (the ``TorchModel`` adapter, the ``mlp`` and ``cnn`` models) are imported only when
used, so importing this package stays light; ``MLP`` and ``CNN`` are loaded on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from consortium.ml._affine import LinearRegression, SoftmaxRegression
from consortium.ml.card import ModelCard, read_card
from consortium.ml.datasets import (
    DATASETS,
    Dataset,
    DatasetLoader,
    Task,
    apply_standardizer,
    classification,
    fit_standardizer,
    load_dataset,
    regression,
    standardize,
    train_test_split,
)
from consortium.ml.model import (
    MODELS,
    Correction,
    Model,
    ModelFactory,
    accuracy,
    build_model,
    check_fit_args,
    check_weights,
    model_factory,
    r2_score,
)
from consortium.ml.partition import PARTITIONERS, Partitioner, dirichlet, iid, partition, shards
from consortium.ml.sklearn_models import (
    LogisticRegressionModel,
    SGDClassifierModel,
    SGDRegressorModel,
)
from consortium.ml.torch_adapter import TorchModel, torch_seeded

if TYPE_CHECKING:
    from consortium.ml.torch_models import CNN, MLP

__all__ = [
    "CNN",
    "DATASETS",
    "MLP",
    "MODELS",
    "PARTITIONERS",
    "Correction",
    "Dataset",
    "DatasetLoader",
    "LinearRegression",
    "LogisticRegressionModel",
    "Model",
    "ModelCard",
    "ModelFactory",
    "Partitioner",
    "SGDClassifierModel",
    "SGDRegressorModel",
    "SoftmaxRegression",
    "Task",
    "TorchModel",
    "accuracy",
    "apply_standardizer",
    "build_model",
    "check_fit_args",
    "check_weights",
    "classification",
    "dirichlet",
    "fit_standardizer",
    "iid",
    "load_dataset",
    "model_factory",
    "partition",
    "r2_score",
    "read_card",
    "regression",
    "shards",
    "standardize",
    "torch_seeded",
    "train_test_split",
]


def __getattr__(name: str) -> Any:
    if name in ("CNN", "MLP"):  # imports torch, so only on first use
        from consortium.ml import torch_models

        return getattr(torch_models, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
