"""Named plugin registries: strategies, models, datasets, transports, launchers, programs.

A job file names plugins; code looks them up here, never through if/elif chains. Each
registry is a module-level object owned by the layer that defines the plugin kind.
Registering a name twice is an error unless ``force=True`` (to replace on purpose).
"""

from __future__ import annotations

import importlib
import traceback
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from consortium.errors import PluginError

__all__ = ["Registry", "all_registries", "import_plugins"]

T = TypeVar("T")

_REGISTRIES: dict[str, Registry[object]] = {}


class Registry(Generic[T]):
    """A mapping from plugin names to objects of one kind."""

    def __init__(self, kind: str) -> None:
        if kind in _REGISTRIES:
            raise PluginError(f"a registry of {kind!r} already exists")
        self.kind = kind
        self._items: dict[str, T] = {}
        _REGISTRIES[kind] = self  # type: ignore[assignment]

    def register(self, name: str, obj: T, *, force: bool = False) -> T:
        if not name or not isinstance(name, str):
            raise PluginError(f"{self.kind} names must be non-empty strings, got {name!r}")
        if name in self._items and not force:
            raise PluginError(
                f"{self.kind} {name!r} is already registered; pass force=True to replace it"
            )
        self._items[name] = obj
        return obj

    def decorator(self, name: str, *, force: bool = False) -> Callable[[T], T]:
        """``@REGISTRY.decorator("name")`` registers the decorated object."""

        def wrap(obj: T) -> T:
            return self.register(name, obj, force=force)

        return wrap

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            choices = ", ".join(sorted(self._items)) or "none registered"
            raise PluginError(f"unknown {self.kind} {name!r}; choose one of: {choices}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def names(self) -> list[str]:
        return sorted(self._items)


def all_registries() -> dict[str, Registry[object]]:
    """Every registry created so far, by kind (for ``consortium list``)."""
    return dict(sorted(_REGISTRIES.items()))


def import_plugins(modules: list[str]) -> None:
    """Import user modules that register their own plugins (named in the job file).

    The modules are imported locally by each party; nothing is shipped over the wire.
    """
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise PluginError(f"cannot import plugin module {name!r}: {exc}") from exc
        except Exception as exc:  # the module's own code failed: name it, and where
            where = traceback.extract_tb(exc.__traceback__)[-1]
            raise PluginError(
                f"plugin module {name!r} failed on import: {type(exc).__name__}: {exc} "
                f"({where.filename}:{where.lineno})"
            ) from exc
