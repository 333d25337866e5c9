"""The weighted fold of large updates, compiled with numba (the ``fast`` extra).

``acc += sum_k w_k x_k`` over replies that are separate arrays is bounded by reading
them. numpy cannot fold several separate arrays in one pass without first copying them
into a common buffer (see ``WeightedSum``), which halves the rate or worse. The kernel
(:mod:`~consortium.horizontal._fold_kernel`) walks the columns in blocks whose float64
partial sums stay in the core's cache, reads eight replies side by side into them,
prefetching each reply's next lines ahead of the loop, and writes each block of the
accumulator back once per call; column blocks are shared out over numba's threads.
``bench/aggregate.py`` measures it against one BLAS matrix-vector product over the same
bytes in one (N, P) array (BENCHMARKS.md, "Aggregation": 0.98-1.11x of its time).

Optional: :func:`available` says whether numba can be imported; without it
``WeightedSum`` folds with numpy. ``WeightedSum`` uses it only for tensors large enough
that numba's import and the first call's compilation (a few seconds, cached on disk after
that) are small beside the work; smaller tensors fold with numpy whatever is installed.
Calls are serialised by a lock: the ``workqueue`` threading layer, numba's fallback when
no OpenMP or TBB runtime is found, must not be entered from two threads at once, and two
folds sharing the cores gain nothing over one using them all.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["available", "fold"]

# Columns per block: the block's float64 partial sums (256 KiB) stay in the core's L2 cache,
# and each reply's part of a block is one long stream to read (8K columns were ~5% slower).
_BLOCK = 32768

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_lock = threading.Lock()


@functools.cache
def available() -> bool:
    """Whether numba can be imported (the ``fast`` extra)."""
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def fold(
    acc: np.ndarray,
    rows: Sequence[np.ndarray],
    weights: np.ndarray,
    *,
    fresh: bool = False,
    mean: np.ndarray | None = None,
    total: float = 1.0,
) -> None:
    """``acc += sum_k weights[k] * rows[k]``, in float64, rows in the order given; with
    ``fresh``, ``acc = ...`` (what ``acc`` held is neither read nor kept). With ``mean``
    (a float32 or float64 array of ``acc``'s length), also ``mean[:] = acc / total`` in the
    same pass, rounded once to ``mean``'s dtype as ``numpy.divide`` would.

    ``acc`` is a contiguous 1-d float64 array; ``rows`` are 1-d real arrays of ``acc``'s
    length (each is read, never written; rows that are not all float32 or all float64 are
    converted to float64 first). Needs :func:`available`.
    """
    if len(rows) != len(weights):
        raise ValueError(f"{len(rows)} rows but {len(weights)} weights")
    if mean is not None and (mean.shape != acc.shape or mean.dtype not in _FLOATS):
        raise ValueError(f"mean must be float32 or float64 of shape {acc.shape}")
    if not rows:
        if fresh:
            acc[:] = 0.0
        if mean is not None:
            np.divide(acc, total, out=mean, casting="same_kind")
        return
    from numba.typed import List

    dtype = rows[0].dtype
    if dtype not in _FLOATS or any(row.dtype != dtype for row in rows):
        dtype = np.dtype(np.float64)
    typed = List()
    for row in rows:
        if row.shape != acc.shape:
            raise ValueError(f"a row has shape {row.shape}, expected {acc.shape}")
        view = np.ascontiguousarray(row, dtype).view()
        view.flags.writeable = False  # one numba type for arrays read-only or not
        typed.append(view)
    w = np.ascontiguousarray(weights, np.float64)
    finish = mean is not None
    # without a mean, an empty one of the rows' dtype: the type the final fold usually
    # has too, so one compiled variant serves every fold of a float32 model
    out = mean if mean is not None else np.empty(0, dtype)
    with _lock:
        _kernel()(acc, typed, w, _BLOCK, fresh, out, float(total), finish)


@functools.cache
def _kernel() -> Any:
    import numba

    from consortium.horizontal._fold_kernel import weighted_fold

    def build(cache: bool) -> Any:
        return numba.njit(weighted_fold, parallel=True, boundscheck=False, nogil=True, cache=cache)

    try:  # compiled once, then loaded from numba's cache next to this file or the user's
        return build(cache=True)
    except RuntimeError:  # no writable cache location: compile once per process instead
        return build(cache=False)
