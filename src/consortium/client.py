"""Bring your own local training: the client hook.

A client is any callable ``client(weights, data, config, rng) -> (weights, metrics)``:

- ``weights``: the global model as named numpy arrays (read-only);
- ``data``: this party's :class:`LocalData` (``data.train.x``, ``data.train.y``, and
  ``data.model_factory()`` for a fresh model of the job's ``model:``);
- ``config``: a :class:`FitConfig` (round, epochs, batch size, learning rate, what the
  strategy sent, the client's own ``args``, and a ``memory`` dict kept for this party);
- ``rng``: a numpy generator seeded from (job seed, round, party), for reproducible runs.

It returns the model to send back, with the same names, shapes and dtypes, and numeric
metrics (reported per party as ``train_<name>``). Register it with :func:`register_client`
and name it in the job (``algorithm.client: {name: ...}``), or pass it to
``consortium.run(job, client=...)`` in a simulation. The default, :func:`sgd_client`, is
minibatch SGD on the job's model with the strategy's client-side correction (FedProx,
SCAFFOLD, FedDyn). ``examples/custom_torch_client.py`` trains with a user's own torch loop.
"""

from __future__ import annotations

import typing
from collections import abc

from consortium.horizontal import AUX, CLIENTS, Client, FitConfig, sgd_client
from consortium.ml import Correction, Model
from consortium.runtime import LocalData

__all__ = [
    "AUX",
    "CLIENTS",
    "Client",
    "Correction",
    "FitConfig",
    "LocalData",
    "Model",
    "register_client",
    "sgd_client",
]

_C = typing.TypeVar("_C", bound=Client)


def register_client(name: str, *, force: bool = False) -> abc.Callable[[_C], _C]:
    """Decorator: register a client under ``name`` (an error if the name is taken, unless
    ``force``)."""
    return CLIENTS.decorator(name, force=force)  # type: ignore[return-value]
