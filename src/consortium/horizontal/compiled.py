"""The weighted fold of large tensors, compiled with numba (the ``fast`` extra).

``acc += sum_k w_k x_k`` over replies that are separate arrays is bounded by reading them.
numpy reads them at a fraction of that rate: it cannot fold several arrays in one pass
without copying them into a common buffer first. This loop reads each reply once, block of
columns by block of columns, into float64 partial sums that stay in the core's cache, and
writes each block of ``acc`` once per call, or for a mean, the block divided by the total
weight to the mean's array instead; the blocks are shared out over numba's threads.

Importing this module imports numba (an ImportError without it);
:class:`~consortium.horizontal.aggregate.WeightedSum` imports it only when it has a tensor
large enough for the compiled fold to pay, and folds with numpy when numba is absent. The
first call compiles the loop (a few seconds), cached on disk after that.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import numba
import numpy as np
from numba.typed import List

__all__ = ["fold"]

# Columns per block: a block's float64 partial sums (128 KiB) stay in the core's L2 cache.
_BLOCK = 16384

# The loop runs on numba's threads; its ``workqueue`` threading layer (the fallback when
# neither OpenMP nor TBB is found) must not be entered from two threads at once.
_lock = threading.Lock()
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _jit(fn: Callable[..., None]) -> Any:
    """``fn`` compiled, cached on disk next to this file or in the user's cache; without
    a cache where neither can be written (a read-only install and home)."""
    options: dict[str, Any] = {"parallel": True, "nogil": True, "boundscheck": False}
    try:
        return numba.njit(cache=True, **options)(fn)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return numba.njit(**options)(fn)


@_jit
def _fold(acc, rows, weights, block, out, total):  # type: ignore[no-untyped-def]
    """acc += sum_k weights[k] * rows[k]; with ``out`` not empty, out = that sum / total
    instead and acc unchanged. A block of columns at a time, rows four at a time."""
    size, count = acc.shape[0], len(rows)
    for b in numba.prange((size + block - 1) // block):
        s = b * block
        e = min(s + block, size)
        part = acc[s:e].copy()
        k = 0
        # four replies read side by side: four streams of reads in flight, where one alone
        # waits on memory at the start of each 4 KiB page (the hardware's read-ahead
        # starts again there)
        while k + 4 <= count:
            x0, x1, x2, x3 = rows[k][s:e], rows[k + 1][s:e], rows[k + 2][s:e], rows[k + 3][s:e]
            w0, w1, w2, w3 = weights[k], weights[k + 1], weights[k + 2], weights[k + 3]
            for j in range(e - s):
                part[j] += (w0 * x0[j] + w1 * x1[j]) + (w2 * x2[j] + w3 * x3[j])
            k += 4
        while k < count:
            x, w = rows[k][s:e], weights[k]
            for j in range(e - s):
                part[j] += w * x[j]
            k += 1
        if out.size:
            for j in range(e - s):
                out[s + j] = part[j] / total
        else:
            acc[s:e] = part


def fold(
    acc: np.ndarray,
    rows: Sequence[np.ndarray],
    weights: np.ndarray,
    *,
    out: np.ndarray | None = None,
    total: float = 1.0,
) -> None:
    """``acc += sum_k weights[k] * rows[k]`` in float64, each element's terms added in the
    order of ``rows``. With ``out``, ``out = (acc + sum_k weights[k] * rows[k]) / total``
    instead, rounded once to ``out``'s dtype (as :func:`numpy.divide` rounds), and ``acc``
    is left as it was.

    ``acc`` is a contiguous 1-d float64 array; ``rows`` are contiguous 1-d arrays of its
    length, all float32 or all float64, read and never written; ``out`` is a contiguous
    float32 or float64 array of its length.
    """
    if len(rows) != len(weights):
        raise ValueError(f"{len(rows)} rows but {len(weights)} weights")
    if acc.dtype != np.float64 or acc.ndim != 1 or not acc.flags.c_contiguous:
        raise ValueError("acc must be a contiguous 1-d float64 array")
    if out is not None and (
        out.shape != acc.shape or out.dtype not in _FLOATS or not out.flags.c_contiguous
    ):
        raise ValueError(f"out must be a contiguous float32 or float64 array of {acc.shape}")
    if not rows:
        if out is not None:
            np.divide(acc, total, out=out)
        return
    dtype = rows[0].dtype
    typed = List()
    for row in rows:
        if row.shape != acc.shape or row.dtype != dtype or dtype not in _FLOATS:
            raise ValueError(
                f"rows must be float32 or float64 of one dtype and shape {acc.shape}, "
                f"got {row.dtype} {row.shape}"
            )
        view = np.ascontiguousarray(row).view()
        view.flags.writeable = False  # one compiled variant for read-only and writable rows
        typed.append(view)
    # without out, an empty one of the rows' dtype: the type a mean's out usually has too,
    # so that one compiled variant serves a float32 model's folds and its mean
    result = out if out is not None else np.empty(0, dtype)
    with _lock:
        _fold(acc, typed, np.ascontiguousarray(weights, np.float64), _BLOCK, result, total)
