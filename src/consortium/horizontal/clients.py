"""What a trainer does with the model it receives: the client hook.

A *client* is any callable ``client(weights, data, config, rng) -> (weights, metrics)``:
it gets the global model as named arrays, this party's :class:`~consortium.runtime.LocalData`,
a :class:`FitConfig` (the round, the local-training settings, what the strategy asked of
clients, and a dict this party keeps between rounds), and a generator seeded from (job seed,
round, party); it returns the model to send back (named arrays: the same names, shapes and
dtypes, plus any auxiliary tensors named with the :data:`AUX` prefix) and numeric metrics.
Clients register by name in :data:`CLIENTS`; the job file picks one with
``algorithm.client`` (default ``sgd``), and every party imports the module that registers it
(``plugins:``).

The default, :func:`sgd_client`, trains the job's model (``model:``) by minibatch SGD and
applies the client side of the strategy: a strategy that needs one names a *correction* in
its fit instructions (``config["client"]``), with its settings alongside, and the correction
turns into a :class:`~consortium.ml.Correction` of the local gradients and may send
auxiliary tensors back (SCAFFOLD's control-variate delta). State that must survive between
rounds (SCAFFOLD's ``c_i``, FedDyn's ``h_i``) lives in the party's :attr:`FitConfig.memory`.

- ``fedprox``: Li et al., "Federated Optimization in Heterogeneous Networks", MLSys 2020:
  local objective + mu/2 ||w - w_global||^2.
- ``scaffold``: Karimireddy et al., "SCAFFOLD: Stochastic Controlled Averaging for
  Federated Learning", ICML 2020, option II: gradients corrected by c - c_i, then
  c_i+ = c_i - c + (w_global - w_local) / (K * lr).
- ``feddyn``: Acar et al., "Federated Learning Based on Dynamic Regularization", ICLR 2021:
  gradients corrected by alpha (w - w_global) - h_i, then h_i -= alpha (w_local - w_global).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from consortium.ml import Correction, Model
from consortium.registry import Registry
from consortium.runtime import LocalData
from consortium.wire import MetaValue

__all__ = [
    "AUX",
    "CLIENTS",
    "CORRECTIONS",
    "Client",
    "ClientCorrection",
    "FitConfig",
    "sgd_client",
    "split_aux",
]

AUX = "aux/"  # prefix of tensor names that travel next to the model
CONTROL = AUX + "c/"  # SCAFFOLD's server control variate, sent with the model
CONTROL_DELTA = AUX + "dc/"  # a trainer's control-variate change, sent back

Weights = Mapping[str, np.ndarray]


@dataclass(frozen=True, slots=True, kw_only=True)
class FitConfig:
    """What a client is asked to do this round."""

    round: int
    epochs: int
    batch_size: int
    lr: float
    instructions: Mapping[str, MetaValue] = field(default_factory=dict)
    """What the strategy sent with the model (e.g. ``{"client": "fedprox", "mu": 0.01}``)."""
    aux: Weights = field(default_factory=dict)
    """Auxiliary tensors the strategy sent (names start with :data:`AUX`)."""
    args: Mapping[str, Any] = field(default_factory=dict)
    """The client's own settings, from the job's ``algorithm.client.args``."""
    memory: dict[str, Any] = field(default_factory=dict)
    """This party's own memory: the same dict every round, never sent anywhere."""


class Client(Protocol):
    def __call__(
        self, weights: Weights, data: LocalData, config: FitConfig, rng: np.random.Generator
    ) -> tuple[Mapping[str, np.ndarray], Mapping[str, float]]: ...


CLIENTS: Registry[Client] = Registry("client")


def split_aux(tensors: Weights) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``(model weights, auxiliary tensors)`` of a message."""
    model = {k: v for k, v in tensors.items() if not k.startswith(AUX)}
    aux = {k: v for k, v in tensors.items() if k.startswith(AUX)}
    return model, aux


def sgd_client(
    weights: Weights, data: LocalData, config: FitConfig, rng: np.random.Generator
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Train the job's model on this party's training rows by minibatch SGD, with the
    correction the strategy names (if any); the model (and the correction's auxiliary
    tensors) and the model's fit statistics (``loss``, ``steps``) go back."""
    if data.train is None or data.model_factory is None:
        raise ValueError("this party holds no training rows or no model")
    model: Model | None = config.memory.get("model")
    if model is None:
        model = config.memory["model"] = data.model_factory()
    name = config.instructions.get("client")
    correction = None if name is None else CORRECTIONS.get(str(name))
    state: dict[str, Any] = config.memory.setdefault("correction", {})
    model.set_weights(weights)
    fix = None if correction is None else correction.correction(state, weights, config)
    stats = model.fit(
        data.train.x,
        data.train.y,
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        rng=rng,
        **({} if fix is None else {"correction": fix}),
    )
    trained = model.get_weights()
    extra = {} if correction is None else correction.after(state, weights, trained, config, stats)
    return {**trained, **extra}, {k: float(v) for k, v in stats.items()}


CLIENTS.register("sgd", sgd_client)


class ClientCorrection(ABC):
    """The client side of a strategy, applied by :func:`sgd_client`."""

    @abstractmethod
    def correction(
        self, state: dict[str, Any], model: Weights, config: FitConfig
    ) -> Correction | None:
        """The gradient correction for this round's local training."""

    def after(
        self,
        state: dict[str, Any],
        model: Weights,
        trained: Weights,
        config: FitConfig,
        stats: Mapping[str, float],
    ) -> dict[str, np.ndarray]:
        """Update this party's state after training; auxiliary tensors to send back."""
        return {}


CORRECTIONS: Registry[ClientCorrection] = Registry("client correction")


def _float_names(weights: Weights) -> list[str]:
    return [k for k, v in weights.items() if np.asarray(v).dtype.kind == "f"]


def _number(config: FitConfig, key: str) -> float:
    value = config.instructions.get(key)
    if not isinstance(value, int | float) or isinstance(value, bool) or not np.isfinite(value):
        raise ValueError(f"fit instructions lack a number {key!r}")
    return float(value)


class FedProxClient(ClientCorrection):
    def correction(
        self, state: dict[str, Any], model: Weights, config: FitConfig
    ) -> Correction | None:
        anchor = {k: model[k] for k in _float_names(model)}
        return Correction(mu=_number(config, "mu"), anchor=anchor)


class ScaffoldClient(ClientCorrection):
    def correction(
        self, state: dict[str, Any], model: Weights, config: FitConfig
    ) -> Correction | None:
        names = _float_names(model)
        missing = [k for k in names if CONTROL + k not in config.aux]
        if missing:
            raise ValueError(f"SCAFFOLD fit instructions lack the control variate for {missing}")
        c = {k: np.asarray(config.aux[CONTROL + k], np.float64) for k in names}
        ci = state.setdefault("c_i", {k: np.zeros(model[k].shape, np.float64) for k in names})
        state["c"] = c
        return Correction(shift={k: c[k] - ci[k] for k in names})

    def after(
        self,
        state: dict[str, Any],
        model: Weights,
        trained: Weights,
        config: FitConfig,
        stats: Mapping[str, float],
    ) -> dict[str, np.ndarray]:
        steps, lr = stats.get("steps", 0.0), config.lr
        if steps <= 0:
            raise ValueError("SCAFFOLD needs the number of local steps from the model's fit")
        c, ci = state["c"], state["c_i"]
        out: dict[str, np.ndarray] = {}
        for k, old in ci.items():
            drift = (np.asarray(model[k], np.float64) - np.asarray(trained[k], np.float64)) / (
                steps * lr
            )
            new = old - c[k] + drift
            out[CONTROL_DELTA + k] = (new - old).astype(model[k].dtype)
            ci[k] = new
        return out


class FedDynClient(ClientCorrection):
    def correction(
        self, state: dict[str, Any], model: Weights, config: FitConfig
    ) -> Correction | None:
        alpha = _number(config, "alpha")
        names = _float_names(model)
        h = state.setdefault("h", {k: np.zeros(model[k].shape, np.float64) for k in names})
        return Correction(
            mu=alpha, anchor={k: model[k] for k in names}, shift={k: -h[k] for k in names}
        )

    def after(
        self,
        state: dict[str, Any],
        model: Weights,
        trained: Weights,
        config: FitConfig,
        stats: Mapping[str, float],
    ) -> dict[str, np.ndarray]:
        alpha = _number(config, "alpha")
        for k, h in state["h"].items():
            h -= alpha * (np.asarray(trained[k], np.float64) - np.asarray(model[k], np.float64))
        return {}


CORRECTIONS.register("fedprox", FedProxClient())
CORRECTIONS.register("scaffold", ScaffoldClient())
CORRECTIONS.register("feddyn", FedDynClient())
