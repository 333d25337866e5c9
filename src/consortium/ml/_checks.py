"""Validation shared by the ml registries: plugin arguments and seeds.

A job file passes plugin arguments as a free mapping (``model: {name: mlp, args: {...}}``).
They are checked against the plugin's signature before the plugin runs, so that a typo is an
error naming the argument and the plugin instead of a ``TypeError`` from deep inside it.
"""

from __future__ import annotations

import functools
import inspect
import numbers
from collections.abc import Callable, Collection, Mapping
from typing import Any

import numpy as np

from consortium.errors import ConfigError

__all__ = ["check_plugin_args", "check_positive_int", "check_seed", "sklearn_seed"]


def check_plugin_args(
    fn: Callable[..., Any],
    args: Mapping[str, Any],
    *,
    kind: str,
    name: str,
    reserved: Collection[str],
) -> None:
    """Raise ConfigError unless ``fn`` accepts every key of ``args`` as a keyword argument.

    ``reserved`` are the arguments Consortium itself passes (``seed``, ``n_features``, ...);
    they are not offered as choices. A plugin taking ``**kwargs`` accepts any other name.
    """
    params = _parameters(fn)
    if params is None:  # builtins without a signature: let the call decide
        return
    keyword = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    named = [p for p in params.values() if p.kind in keyword and p.name not in reserved]
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    allowed = [p.name for p in named]
    for key in args:
        if key not in allowed and not open_ended:
            choices = ", ".join(sorted(allowed)) or "none"
            raise ConfigError(
                f"{kind} {name!r} has no argument {key!r}; valid arguments: {choices}"
            )
    missing = [
        p.name
        for p in named
        if p.kind is p.KEYWORD_ONLY and p.default is p.empty and p.name not in args
    ]
    if missing:
        raise ConfigError(f"{kind} {name!r} needs argument(s): {', '.join(missing)}")


@functools.lru_cache(maxsize=256)
def _parameters(fn: Callable[..., Any]) -> Mapping[str, inspect.Parameter] | None:
    """``fn``'s parameters, computed once per plugin (a model is built once per party)."""
    try:
        return inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return None


def check_seed(seed: object) -> int:
    """A seed is a non-negative integer (``bool`` is refused)."""
    return check_positive_int(seed, "a seed", minimum=0)


def check_positive_int(value: object, what: str, *, minimum: int = 1) -> int:
    """``value`` as an int, or ConfigError naming ``what`` when it is not an int >= minimum."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < minimum:
        raise ConfigError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def sklearn_seed(seed: int) -> int:
    """Map any non-negative seed (Consortium derives 63-bit ones) into scikit-learn's
    ``random_state`` range, [0, 2**32)."""
    return int(np.random.SeedSequence(check_seed(seed)).generate_state(1, np.uint32)[0])
