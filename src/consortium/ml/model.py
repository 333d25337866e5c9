"""The model contract every federated program trains through, and the model registry.

A model exposes its state as named numpy arrays, so that aggregation, encryption and the
wire never see a framework type. ``fit`` is minibatch SGD whose batch order comes from the
caller's generator: the same generator state and weights give the same result.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from consortium.errors import ConfigError
from consortium.ml._checks import check_plugin_args, check_seed
from consortium.registry import Registry

__all__ = [
    "MODELS",
    "Correction",
    "Model",
    "ModelFactory",
    "accuracy",
    "build_model",
    "check_fit_args",
    "check_weights",
    "model_factory",
    "r2_score",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Correction:
    """A term added to every local gradient: ``mu * (w - anchor) + shift``, per named array.

    Client-side federated algorithms are this one hook: FedProx sets ``mu`` and anchors at
    the global model; SCAFFOLD shifts by ``c - c_i`` (server minus client control
    variate); FedDyn anchors at the global model with ``mu = alpha`` and shifts by minus its
    running gradient sum. Arrays missing from ``anchor`` or ``shift`` get no term.
    """

    mu: float = 0.0
    anchor: Mapping[str, np.ndarray] | None = None
    shift: Mapping[str, np.ndarray] | None = None

    def __post_init__(self) -> None:
        if not np.isfinite(self.mu) or self.mu < 0:
            raise ValueError(f"mu must be a non-negative number, got {self.mu!r}")
        if self.mu > 0 and self.anchor is None:
            raise ValueError("a proximal term (mu > 0) needs an anchor")


@runtime_checkable
class Model(Protocol):
    """A trainable model whose state is a set of named arrays."""

    def get_weights(self) -> dict[str, np.ndarray]:
        """The full state (parameters and buffers), in a stable order, as arrays the caller
        may keep: later training never changes them."""

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        """Replace the state. Raises ValueError naming the array when a name is missing or
        unexpected, or a shape or dtype differs from :meth:`get_weights`."""

    def fit(
        self,
        x: np.ndarray,
        y: np.ndarray,
        *,
        epochs: int,
        batch_size: int,
        lr: float,
        rng: np.random.Generator,
        correction: Correction | None = None,
    ) -> dict[str, float]:
        """Minibatch SGD, one permutation of the rows drawn from ``rng`` per epoch, with
        ``correction`` added to every gradient. Returns at least ``{"loss": mean training
        loss over the last epoch, "steps": number of SGD steps taken}``. A model that cannot
        apply a correction raises ConfigError when given one."""

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        """``loss`` and ``accuracy`` for classification; ``loss`` (MSE) and ``r2`` for
        regression."""

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The predicted class of each row (classification) or its predicted target."""

    def num_parameters(self) -> int:
        """The number of trainable scalars."""


#: ``factory(*, n_features=..., n_classes=..., seed=..., **args) -> Model``
ModelFactory = Callable[..., Model]

MODELS: Registry[ModelFactory] = Registry("model")

_RESERVED = ("n_features", "n_classes", "seed")


def build_model(
    name: str, *, n_features: int, n_classes: int | None, seed: int, **args: Any
) -> Model:
    """Build the model registered as ``name`` for data with ``n_features`` columns and
    ``n_classes`` classes (None for regression), initialised from ``seed``.

    Raises PluginError (a ConfigError) listing the choices for an unknown name, and
    ConfigError naming the argument for an argument the factory does not take.
    """
    return model_factory(name, n_features=n_features, n_classes=n_classes, seed=seed, **args)()


def model_factory(
    name: str, *, n_features: int, n_classes: int | None, seed: int, **args: Any
) -> Callable[[], Model]:
    """A function building one such model per call (see :func:`build_model`), with the
    name, the arguments and the seed checked once, here: a simulation with a thousand
    parties builds a thousand models."""
    factory = MODELS.get(name)
    check_plugin_args(factory, args, kind="model", name=name, reserved=_RESERVED)
    seed = check_seed(seed)

    def build() -> Model:
        try:
            return factory(n_features=n_features, n_classes=n_classes, seed=seed, **args)
        except (ConfigError, TypeError, ValueError) as exc:
            raise ConfigError(f"model {name!r}: {exc}") from exc

    return build


def check_weights(
    expected: Mapping[str, tuple[tuple[int, ...], np.dtype[Any]]],
    weights: Mapping[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """Check ``weights`` against ``{name: (shape, dtype)}``; return them as native-byte-order
    numpy arrays. Raises ValueError naming the first array that does not fit."""
    missing = [name for name in expected if name not in weights]
    unexpected = [name for name in weights if name not in expected]
    if missing or unexpected:
        raise ValueError(
            f"weights do not match the model: missing {missing or 'none'}, "
            f"unexpected {unexpected or 'none'}"
        )
    out: dict[str, np.ndarray] = {}
    for name, (shape, dtype) in expected.items():
        arr = np.asarray(weights[name])
        if arr.shape != tuple(shape):
            raise ValueError(
                f"weight {name!r} has shape {arr.shape}, the model needs {tuple(shape)}"
            )
        if arr.dtype.newbyteorder("=") != np.dtype(dtype).newbyteorder("="):
            raise ValueError(
                f"weight {name!r} has dtype {arr.dtype}, the model needs {np.dtype(dtype)}"
            )
        out[name] = arr.astype(dtype, copy=False) if arr.dtype != dtype else arr
    return out


def check_fit_args(
    x: np.ndarray, y: np.ndarray, *, epochs: int, batch_size: int, lr: float
) -> None:
    """ValueError for arguments no ``fit`` can use."""
    if x.ndim != 2:
        raise ValueError(f"x must be 2-D (rows, features), got shape {x.shape}")
    if y.ndim != 1 or len(y) != len(x):
        raise ValueError(
            f"y must be 1-D with one value per row, got shape {y.shape} for {len(x)} rows"
        )
    if len(x) == 0:
        raise ValueError("cannot fit on zero rows")
    for what, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise ValueError(f"{what} must be a positive integer, got {value!r}")
    if not np.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr must be a positive number, got {lr!r}")


def accuracy(predicted: np.ndarray, y: np.ndarray) -> float:
    """The fraction of rows whose predicted label equals the true one."""
    return float(np.mean(predicted == y)) if len(y) else float("nan")


def r2_score(predicted: np.ndarray, y: np.ndarray) -> float:
    """Coefficient of determination, 1 - SS_res / SS_tot (1.0 for a perfect fit of a
    constant target, 0.0 for an imperfect one, as scikit-learn does)."""
    target = np.asarray(y, dtype=np.float64)
    residual = float(np.sum((target - predicted) ** 2))
    total = float(np.sum((target - target.mean()) ** 2))
    if total == 0.0:
        return 1.0 if residual == 0.0 else 0.0
    return 1.0 - residual / total
