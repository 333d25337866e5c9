"""Client-side parts of federated algorithms: what a trainer does differently while it
trains, and what it keeps between rounds.

A strategy that needs one names it in its fit instructions (``config["client"]``), with its
settings alongside; the trainer looks the name up here (a registry of code it already has,
never code from the wire). Each client update turns into a
:class:`~consortium.ml.Correction` of the local gradients, and may send auxiliary tensors
back next to the model (names prefixed with :data:`AUX`, e.g. SCAFFOLD's control-variate
delta). State that must survive between rounds (SCAFFOLD's ``c_i``, FedDyn's ``h_i``) lives
in the trainer, per party.

- ``fedprox``: Li et al., "Federated Optimization in Heterogeneous Networks", MLSys 2020:
  local objective + mu/2 ||w - w_global||^2.
- ``scaffold``: Karimireddy et al., "SCAFFOLD: Stochastic Controlled Averaging for
  Federated Learning", ICML 2020, option II: gradients corrected by c - c_i, then
  c_i+ = c_i - c + (w_global - w_local) / (K * lr).
- ``feddyn``: Acar et al., "Federated Learning Based on Dynamic Regularization", ICLR 2021:
  gradients corrected by alpha (w - w_global) - h_i, then h_i -= alpha (w_local - w_global).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from consortium.ml import Correction
from consortium.registry import Registry
from consortium.wire import MetaValue

__all__ = ["AUX", "CLIENTS", "CONTROL", "ClientUpdate", "split_aux"]

AUX = "aux/"  # prefix of tensor names that travel next to the model
CONTROL = AUX + "c/"  # SCAFFOLD's server control variate, sent with the model
CONTROL_DELTA = AUX + "dc/"  # a trainer's control-variate change, sent back

Weights = Mapping[str, np.ndarray]


def split_aux(tensors: Weights) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``(model weights, auxiliary tensors)`` of a message."""
    model = {k: v for k, v in tensors.items() if not k.startswith(AUX)}
    aux = {k: v for k, v in tensors.items() if k.startswith(AUX)}
    return model, aux


def _float_names(weights: Weights) -> list[str]:
    return [k for k, v in weights.items() if np.asarray(v).dtype.kind == "f"]


class ClientUpdate(Protocol):
    def correction(
        self, state: dict[str, Any], model: Weights, aux: Weights, config: Mapping[str, MetaValue]
    ) -> Correction | None:
        """The gradient correction for this round's local training."""
        ...

    def after(
        self,
        state: dict[str, Any],
        model: Weights,
        trained: Weights,
        config: Mapping[str, MetaValue],
        stats: Mapping[str, float],
    ) -> dict[str, np.ndarray]:
        """Update the trainer's state after training; auxiliary tensors to send back."""
        ...


CLIENTS: Registry[ClientUpdate] = Registry("client update")


def _number(config: Mapping[str, MetaValue], key: str) -> float:
    value = config.get(key)
    if not isinstance(value, int | float) or isinstance(value, bool) or not np.isfinite(value):
        raise ValueError(f"fit instructions lack a number {key!r}")
    return float(value)


class FedProxClient:
    def correction(
        self, state: dict[str, Any], model: Weights, aux: Weights, config: Mapping[str, MetaValue]
    ) -> Correction | None:
        anchor = {k: model[k] for k in _float_names(model)}
        return Correction(mu=_number(config, "mu"), anchor=anchor)

    def after(
        self,
        state: dict[str, Any],
        model: Weights,
        trained: Weights,
        config: Mapping[str, MetaValue],
        stats: Mapping[str, float],
    ) -> dict[str, np.ndarray]:
        return {}


class ScaffoldClient:
    def correction(
        self, state: dict[str, Any], model: Weights, aux: Weights, config: Mapping[str, MetaValue]
    ) -> Correction | None:
        names = _float_names(model)
        missing = [k for k in names if CONTROL + k not in aux]
        if missing:
            raise ValueError(f"SCAFFOLD fit instructions lack the control variate for {missing}")
        c = {k: np.asarray(aux[CONTROL + k], np.float64) for k in names}
        ci = state.setdefault("c_i", {k: np.zeros(model[k].shape, np.float64) for k in names})
        state["c"] = c
        return Correction(shift={k: c[k] - ci[k] for k in names})

    def after(
        self,
        state: dict[str, Any],
        model: Weights,
        trained: Weights,
        config: Mapping[str, MetaValue],
        stats: Mapping[str, float],
    ) -> dict[str, np.ndarray]:
        steps, lr = stats.get("steps", 0.0), _number(config, "lr")
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


class FedDynClient:
    def correction(
        self, state: dict[str, Any], model: Weights, aux: Weights, config: Mapping[str, MetaValue]
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
        config: Mapping[str, MetaValue],
        stats: Mapping[str, float],
    ) -> dict[str, np.ndarray]:
        alpha = _number(config, "alpha")
        for k, h in state["h"].items():
            h -= alpha * (np.asarray(trained[k], np.float64) - np.asarray(model[k], np.float64))
        return {}


CLIENTS.register("fedprox", FedProxClient())
CLIENTS.register("scaffold", ScaffoldClient())
CLIENTS.register("feddyn", FedDynClient())
