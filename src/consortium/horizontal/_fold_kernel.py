"""The numba code behind :mod:`~consortium.horizontal.compiled` (imported only when numba is).

Kept apart so that numba is imported at module level here and nowhere else, and so that the
kernel and the prefetch it uses are plain module-level functions, which numba's disk cache
stores and loads as they are (the compiled kernel loads in a new process without
compiling again).
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

__all__ = ["weighted_fold"]

# Elements per step of the inner loop; each step asks for the rows' cache lines _AHEAD
# elements further on. On 100 x 10M float32 replies, one thread, all in one call, the fold
# took 1.14x the time of OpenBLAS's sgemv over the same bytes without the prefetch and
# 1.00-1.02x with it (the hardware's own prefetcher stops at each 4 KiB page).
_STEP = 64
_AHEAD = 256
_LINE = 64  # bytes in a cache line


@intrinsic
def _prefetch_intrinsic(typingctx: Any, array: Any, index: Any) -> Any:
    """Ask the core to load the cache line that holds ``array[index]``, for reading, into
    every cache level. A hint: it never faults, whatever the address."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        array_type = signature.args[0]
        view = context.make_array(array_type)(context, builder, args[0])
        pointer = cgutils.get_item_pointer(
            context, builder, array_type, view, [args[1]], wraparound=False
        )
        byte_pointer = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        function = cgutils.get_or_insert_function(
            builder.module,
            ir.FunctionType(ir.VoidType(), [byte_pointer, i32, i32, i32]),
            "llvm.prefetch.p0i8",
        )
        # read (0), keep in all levels (3), data cache (1)
        builder.call(function, [builder.bitcast(pointer, byte_pointer), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.void(array, index), codegen


# what compiled code calls, as _prefetch(array, index); typed loosely for the checker,
# which sees the intrinsic's Python signature (typing context first)
_prefetch: Any = _prefetch_intrinsic


@numba.njit(inline="always", boundscheck=False, nogil=True)
def _add8(part, x0, x1, x2, x3, x4, x5, x6, x7, w0, w1, w2, w3, w4, w5, w6, w7):  # type: ignore[no-untyped-def]
    """part += w0 * x0 + ... + w7 * x7, reading the rows' next lines ahead of the loop."""
    n = part.shape[0]
    per_line = _LINE // x0.itemsize
    c = 0
    while c + _STEP <= n:
        if c + _AHEAD + _STEP <= n:
            for line in range(c + _AHEAD, c + _AHEAD + _STEP, per_line):
                _prefetch(x0, line)
                _prefetch(x1, line)
                _prefetch(x2, line)
                _prefetch(x3, line)
                _prefetch(x4, line)
                _prefetch(x5, line)
                _prefetch(x6, line)
                _prefetch(x7, line)
        for j in range(c, c + _STEP):
            part[j] += ((w0 * x0[j] + w1 * x1[j]) + (w2 * x2[j] + w3 * x3[j])) + (
                (w4 * x4[j] + w5 * x5[j]) + (w6 * x6[j] + w7 * x7[j])
            )
        c += _STEP
    for j in range(c, n):
        part[j] += ((w0 * x0[j] + w1 * x1[j]) + (w2 * x2[j] + w3 * x3[j])) + (
            (w4 * x4[j] + w5 * x5[j]) + (w6 * x6[j] + w7 * x7[j])
        )


@numba.njit(inline="always", boundscheck=False, nogil=True)
def _add4(part, x0, x1, x2, x3, w0, w1, w2, w3):  # type: ignore[no-untyped-def]
    """part += w0 * x0 + ... + w3 * x3, as :func:`_add8`."""
    n = part.shape[0]
    per_line = _LINE // x0.itemsize
    c = 0
    while c + _STEP <= n:
        if c + _AHEAD + _STEP <= n:
            for line in range(c + _AHEAD, c + _AHEAD + _STEP, per_line):
                _prefetch(x0, line)
                _prefetch(x1, line)
                _prefetch(x2, line)
                _prefetch(x3, line)
        for j in range(c, c + _STEP):
            part[j] += (w0 * x0[j] + w1 * x1[j]) + (w2 * x2[j] + w3 * x3[j])
        c += _STEP
    for j in range(c, n):
        part[j] += (w0 * x0[j] + w1 * x1[j]) + (w2 * x2[j] + w3 * x3[j])


def weighted_fold(acc, rows, weights, block, fresh, out, total, finish):  # type: ignore[no-untyped-def]
    """See :func:`consortium.horizontal.compiled.fold`: blocks of ``block`` columns shared
    out over numba's threads; in each, the rows are read eight at a time (then four, then
    one) into the block's float64 partial sums, which stay in cache, and the block of
    ``acc`` is written once."""
    size, count = acc.shape[0], len(rows)
    for b in numba.prange((size + block - 1) // block):
        s = b * block
        e = min(s + block, size)
        part = np.zeros(e - s) if fresh else acc[s:e].copy()
        r, w = rows, weights
        k = 0
        while k + 8 <= count:
            _add8(
                part,
                r[k][s:e], r[k + 1][s:e], r[k + 2][s:e], r[k + 3][s:e],
                r[k + 4][s:e], r[k + 5][s:e], r[k + 6][s:e], r[k + 7][s:e],
                w[k], w[k + 1], w[k + 2], w[k + 3], w[k + 4], w[k + 5], w[k + 6], w[k + 7],
            )  # fmt: skip
            k += 8
        if k + 4 <= count:
            _add4(part, r[k][s:e], r[k + 1][s:e], r[k + 2][s:e], r[k + 3][s:e], w[k], w[k + 1], w[k + 2], w[k + 3])  # fmt: skip
            k += 4
        while k < count:
            x0, w0 = rows[k][s:e], weights[k]
            for j in range(e - s):
                part[j] += w0 * x0[j]
            k += 1
        acc[s:e] = part
        if finish:
            for j in range(e - s):
                out[s + j] = part[j] / total
