"""Pieces the built-in strategies share: reply checks, the server's per-tensor state and
step, and the error raised when a round left too few valid updates for a rule to be
applied."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from consortium.errors import TooFewUpdates
from consortium.wire import MetaValue

__all__ = [
    "apply_step",
    "float_state",
    "floating",
    "num_examples",
    "pseudo_gradient",
    "too_few_updates",
]


def num_examples(meta: Mapping[str, MetaValue]) -> int | str:
    """The reply's ``num_examples`` (a positive integer), or why it is unusable."""
    n = meta.get("num_examples")
    if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
        return f"num_examples must be a positive integer, got {n!r}"
    return n


def _optimised(arr: np.ndarray) -> bool:
    """Whether the server optimiser steps this tensor (floating ones; counters and other
    integer tensors simply take the aggregate)."""
    return bool(np.asarray(arr).dtype.kind == "f")


def floating(weights: Mapping[str, np.ndarray]) -> list[str]:
    """The names of the tensors the server steps, in order."""
    return [name for name, x in weights.items() if _optimised(x)]


def float_state(weights: Mapping[str, np.ndarray], fill: float = 0.0) -> dict[str, np.ndarray]:
    """Per-tensor server state (a velocity, a moment, a control variate): a float64 array of
    ``fill`` shaped like each floating tensor of ``weights``; integer tensors have none."""
    return {name: np.full(np.shape(weights[name]), fill, np.float64) for name in floating(weights)}


def pseudo_gradient(
    weights: Mapping[str, np.ndarray], mean: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Δ = mean of the trainers' models - global model, in float64, for floating tensors."""
    return {
        name: np.asarray(mean[name], np.float64) - np.asarray(x, np.float64)
        for name, x in weights.items()
        if _optimised(x)
    }


def apply_step(
    weights: Mapping[str, np.ndarray],
    mean: Mapping[str, np.ndarray],
    step: Mapping[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """x + step for the floating tensors (cast back to their dtype), the plain aggregate for
    the others."""
    out = {}
    for name, x in weights.items():
        if name in step:
            moved = np.asarray(np.asarray(x, np.float64) + step[name])
            out[name] = moved.astype(x.dtype, copy=False)
        else:
            out[name] = mean[name]
        out[name] = np.asarray(out[name])  # 0-d tensors stay arrays, not numpy scalars
    return out


def too_few_updates(
    strategy: str,
    *,
    needed: int,
    received: int,
    why: str,
    failures: Mapping[str, str],
    setting: str | None = None,
) -> TooFewUpdates:
    """The error for a round whose valid updates are fewer than ``strategy`` needs;
    ``setting`` names the strategy argument that sets the need, if any."""
    if failures:
        shown = "; ".join(f"{p}: {r}" for p, r in sorted(failures.items()))
        why = f"{why}; not usable this round: {shown}"
    advice = "add trainers, or raise algorithm.quorum so that a round waits for more of them"
    if setting is not None:
        advice += f", or lower algorithm.strategy.args.{setting}"
    return TooFewUpdates(strategy, needed=needed, received=received, why=why, advice=advice)
