"""Bring your own data: datasets and partitioners by name.

A dataset loader is a function ``loader(*, seed, **args) -> Dataset`` registered with
:func:`register_dataset`; a job names it (``data.dataset: {name: ..., args: {...}}``) and
every party calls it locally, so the loader decides where the rows come from (a file, a
database, a generator). Build the :class:`Dataset` with :func:`classification` or
:func:`regression` from arrays. A partitioner ``partitioner(labels, *, n_parties, seed,
**args) -> list[row indices]`` decides which rows each trainer of a simulation holds.
``examples/custom_dataset.py`` is a whole one.
"""

from __future__ import annotations

import typing
from collections import abc

from consortium.ml import (
    DATASETS,
    PARTITIONERS,
    Dataset,
    DatasetLoader,
    Partitioner,
    classification,
    load_dataset,
    regression,
)
from consortium.runtime import LocalData

__all__ = [
    "DATASETS",
    "PARTITIONERS",
    "Dataset",
    "DatasetLoader",
    "LocalData",
    "Partitioner",
    "classification",
    "load_dataset",
    "register_dataset",
    "register_partitioner",
    "regression",
]

_L = typing.TypeVar("_L", bound=DatasetLoader)
_P = typing.TypeVar("_P", bound=Partitioner)


def register_dataset(name: str, *, force: bool = False) -> abc.Callable[[_L], _L]:
    """Decorator: register a dataset loader under ``name``."""
    return DATASETS.decorator(name, force=force)  # type: ignore[return-value]


def register_partitioner(name: str, *, force: bool = False) -> abc.Callable[[_P], _P]:
    """Decorator: register a partitioner under ``name``."""
    return PARTITIONERS.decorator(name, force=force)  # type: ignore[return-value]
