"""What a party holds locally: its data and how to build its model."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from consortium.registry import Registry

__all__ = ["BINDERS", "DataBinder", "LocalData"]


class DataBinder(Protocol):
    """How a protocol gives each party its local data (``ctx.data``).

    ``job`` is the loaded job (its ``spec``, ``topology``, ``algorithm``, ``source``).
    :meth:`check` runs when the job is loaded and raises ConfigError naming the field;
    :meth:`bind` runs in each process, for the parties that process hosts.
    """

    def check(self, job: Any) -> None: ...

    def bind(self, job: Any, parties: Collection[str] | None) -> Mapping[str, Any]: ...


BINDERS: Registry[DataBinder] = Registry("data binder")
"""Protocol name -> its data binder."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalData:
    """A party's own training and test data (``None`` where the role holds none), a
    factory for a fresh model of the job's architecture, and the card saved with the trained
    model so that it predicts on its own (horizontal: :class:`consortium.ml.ModelCard`)."""

    train: Any = None
    test: Any = None
    model_factory: Callable[[], Any] | None = None
    card: Any = None
