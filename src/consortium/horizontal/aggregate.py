"""The arithmetic of aggregation: reply checks, the running weighted sum, the update stack.

:class:`WeightedSum` serves the averaging rules (FedAvg, McMahan et al., AISTATS 2017, and
the rules built on it): replies are folded in as they arrive, memory O(model) however many
parties reply. :class:`UpdateStack` serves the robust rules that need every update at once
(the coordinate-wise median and trimmed mean of Yin et al., ICML 2018; Krum; Bulyan): one
preallocated (capacity, P) array. Both flatten a model's named tensors into one vector of P
elements and work on that, in blocks of columns sized for the cache.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping

import numpy as np

__all__ = ["UpdateStack", "WeightedSum", "check_update"]


def check_update(
    update: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray]
) -> str | None:
    """Why ``update`` cannot be combined with ``reference`` (names, shapes, dtypes, finiteness),
    or None when it can."""
    if update.keys() != reference.keys():
        missing = sorted(set(reference) - set(update))
        extra = sorted(set(update) - set(reference))
        return f"tensor names differ (missing {missing}, unexpected {extra})"
    for name, ref in reference.items():
        arr = update[name]
        if arr.shape != ref.shape:
            return f"tensor {name!r} has shape {arr.shape}, expected {ref.shape}"
        if arr.dtype != ref.dtype:
            return f"tensor {name!r} has dtype {arr.dtype}, expected {ref.dtype}"
        if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
            return f"tensor {name!r} contains NaN or Inf"
    return None


class _Layout:
    """Where each named tensor lives in one flat vector of all the model's elements."""

    def __init__(self, like: Mapping[str, np.ndarray]) -> None:
        self.names: list[str] = []
        self.shapes: list[tuple[int, ...]] = []
        self.dtypes: list[np.dtype] = []
        self.bounds: list[tuple[int, int]] = []
        size = 0
        for name, arr in like.items():
            arr = np.asarray(arr)
            self.names.append(name)
            self.shapes.append(arr.shape)
            self.dtypes.append(arr.dtype)
            self.bounds.append((size, size + arr.size))
            size += arr.size
        self.size = size

    def flat(self, update: Mapping[str, np.ndarray], i: int) -> np.ndarray:
        """Tensor ``i`` of ``update`` as a 1-d array (a view when it is contiguous)."""
        arr = np.asarray(update[self.names[i]])
        if arr.shape != self.shapes[i]:
            raise ValueError(
                f"tensor {self.names[i]!r} has shape {arr.shape}, expected {self.shapes[i]}"
            )
        return arr.reshape(-1)

    def unflatten(self, flat: np.ndarray, *, copy: bool = True) -> dict[str, np.ndarray]:
        """Named arrays in each tensor's dtype (integers rounded): fresh ones, or views of
        ``flat`` where the dtype already matches when ``copy`` is false."""
        if flat.shape != (self.size,):
            raise ValueError(f"expected a flat vector of {self.size} elements, got {flat.shape}")
        out = {}
        for name, shape, dtype, (start, stop) in zip(
            self.names, self.shapes, self.dtypes, self.bounds, strict=True
        ):
            part = flat[start:stop]
            if dtype.kind in "iub" and part.dtype.kind in "fc":
                part = np.rint(part)
            out[name] = np.array(part, dtype=dtype, copy=copy or None).reshape(shape)
        return out


def _stack_dtype(dtypes: list[np.dtype]) -> np.dtype:
    floats = [d for d in dtypes if d.kind == "f"]
    return np.result_type(*floats) if floats else np.dtype(np.float64)


# Columns per block in UpdateStack's column-wise reductions. A block of every row is first
# copied as it lies (contiguous runs, fast), then transposed inside the cache so that each
# coordinate's values are contiguous for np.partition / np.sort. Transposing straight from
# the stack reads one element per row of the stack, a different page each time: ~20x
# slower. The staging rows are padded so that their stride is not a power of two (a
# 4 KiB stride maps every row to the same cache sets).
_COLUMNS = 1024
_PAD = 16


class UpdateStack:
    """Every update of a round as one row of a preallocated (capacity, P) array.

    P is the number of elements over all tensors. The stack's dtype is the widest floating
    dtype among the tensors (float32 for a float32 model, float64 as soon as one tensor is
    float64; float64 when there is no floating tensor); other tensors are stored as that
    type, so an integer beyond the float's exact range (2**24 in float32) is rounded.
    Memory: capacity x P elements, allocated once.

    :meth:`median` and :meth:`trimmed_mean` look at each coordinate's values in sorted
    order, so their results do not depend on the order of the rows at all. They work on
    blocks of 1024 columns transposed in cache; the median selects with one
    ``np.partition`` per block (``np.median`` asks for two kth values, ~4x slower).
    """

    def __init__(self, *, like: Mapping[str, np.ndarray], capacity: int) -> None:
        if capacity < 0:
            raise ValueError(f"capacity must be >= 0, got {capacity}")
        self._layout = _Layout(like)
        self.dtype = _stack_dtype(self._layout.dtypes)
        self.capacity = capacity
        self._buf = np.empty((capacity, self._layout.size), self.dtype)
        self._weights = np.zeros(capacity, np.float64)
        self.count = 0

    @property
    def size(self) -> int:
        """P, the number of elements in one row."""
        return self._layout.size

    def add(self, update: Mapping[str, np.ndarray], weight: float = 1.0) -> None:
        """Copy ``update`` into the next row. ValueError when the stack is full or a tensor's
        shape differs; KeyError when a tensor is missing."""
        if self.count >= self.capacity:
            raise ValueError(f"the stack is full: it holds {self.capacity} updates")
        row = self._buf[self.count]
        for i, (start, stop) in enumerate(self._layout.bounds):
            np.copyto(row[start:stop], self._layout.flat(update, i), casting="same_kind")
        self._weights[self.count] = weight
        self.count += 1

    @property
    def rows(self) -> np.ndarray:
        """The filled rows, (count, P), as a read-only view."""
        view = self._buf[: self.count]
        view.flags.writeable = False
        return view

    @property
    def weights(self) -> np.ndarray:
        """The weight given with each row, (count,) float64, read-only."""
        view = self._weights[: self.count]
        view.flags.writeable = False
        return view

    def unflatten(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        """A (P,) vector as named arrays, each in its tensor's shape and dtype (integer
        tensors rounded to the nearest integer). The arrays are fresh copies."""
        return self._layout.unflatten(np.asarray(flat))

    def median(self) -> dict[str, np.ndarray]:
        """The coordinate-wise median of the rows (the mean of the two middle values when
        count is even)."""
        if self.count == 0:
            raise ValueError("the median of no updates is undefined")
        return self._layout.unflatten(_median(self._buf[: self.count]), copy=False)

    def trimmed_mean(self, trim: int) -> dict[str, np.ndarray]:
        """Per coordinate, drop the ``trim`` largest and ``trim`` smallest values and take
        the mean of the rest (summed in float64)."""
        n = self.count
        if trim < 0 or 2 * trim >= n:
            raise ValueError(
                f"cannot trim {trim} from each end of {n} updates: need 0 <= 2 * trim < {n}"
            )
        return self._layout.unflatten(_trimmed_mean(self._buf[:n], trim), copy=False)


def _by_column(rows: np.ndarray) -> Iterator[tuple[int, int, np.ndarray]]:
    """(start, stop, block) for blocks of columns of ``rows`` (n, P); ``block`` is a
    (stop - start, n) scratch holding the columns as rows, reused by the next block."""
    n, p = rows.shape
    width = min(_COLUMNS, p)
    staging = np.empty((n, width + _PAD), rows.dtype)
    scratch = np.empty((width, n), rows.dtype)
    for start in range(0, p, width):
        stop = min(start + width, p)
        stage = staging[:, : stop - start]
        np.copyto(stage, rows[:, start:stop])
        block = scratch[: stop - start]
        np.copyto(block, stage.T)
        yield start, stop, block


def _median(rows: np.ndarray) -> np.ndarray:
    """Column-wise median of ``rows`` (n, P), n >= 1."""
    n, p = rows.shape
    out = np.empty(p, rows.dtype)
    if p == 0:
        return out
    mid = n // 2
    for start, stop, block in _by_column(rows):
        # one selection (two kth values cost ~4x one); the lower middle of an even count
        # is then the largest value left of the upper one
        block.partition(mid, axis=1)
        upper = block[:, mid]
        if n % 2:
            out[start:stop] = upper
        else:
            lower = block[:, :mid].max(axis=1)
            out[start:stop] = lower.astype(np.float64) * 0.5 + upper * 0.5
    return out


def _trimmed_mean(rows: np.ndarray, trim: int) -> np.ndarray:
    """Column-wise mean of ``rows`` (n, P) without each column's ``trim`` smallest and
    ``trim`` largest values, summed in float64."""
    n, p = rows.shape
    keep = n - 2 * trim
    out = np.empty(p, rows.dtype)
    if p == 0:
        return out
    ones = np.ones(keep)
    wide = np.empty((min(_COLUMNS, p), keep), np.float64)
    for start, stop, block in _by_column(rows):
        if trim:
            block.sort(axis=1)  # vectorised sorting networks: faster than two selections
        middle = wide[: stop - start]
        np.copyto(middle, block[:, trim : n - trim])
        out[start:stop] = (middle @ ones) / keep
    return out


class WeightedSum:
    """sum_k w_k * x_k over named arrays, and the weighted mean, in O(model) memory.

    Speed: the cost is reading each reply once. Folding replies in one at a time would
    also read and write the float64 accumulator (twice a float32 reply's bytes) per reply,
    so :meth:`add` keeps a reference to each reply (no copy) and folds the held replies
    together once 64 of them, or 2 GiB of them, are held: the accumulator is read and
    written once per fold. :meth:`mean` reads the accumulator and the replies still held
    in one pass and writes only the mean. With ``compiled`` true (the default) and numba
    installed (the ``fast`` extra), float32 and float64 tensors of 2**18 elements or more
    fold through the compiled loop of :mod:`~consortium.horizontal.compiled`; the other
    tensors, and all of them with ``compiled=False`` or without numba, fold with numpy, a
    block of columns at a time. ``bench/aggregate.py`` measures both against one
    matrix-vector product over the same bytes.

    Because replies are held, the arrays given to :meth:`add` must not be changed until
    the sum is dropped (a model's ``get_weights`` and the wire decoder both return arrays
    that nothing changes later). Memory: the accumulator (8 bytes per element) and up to
    2 GiB of held replies, kept alive until they are folded.

    Precision: every tensor accumulates in float64, whatever its dtype (float32 partial
    sums would make the result depend on the reply order at float32 resolution). For N
    replies the float64 sum is within about N * 2**-53 * sum_k |w_k x_k| of the exact one,
    so the order replies arrive in changes a float32 mean by at most one unit in the last
    place (almost always not at all) and a float64 mean by about N * 2**-53 relative to
    sum_k |w_k x_k| / sum_k w_k. :meth:`mean` casts integer tensors back, which truncates
    toward zero.
    """

    def __init__(self, *, like: Mapping[str, np.ndarray], compiled: bool = True) -> None:
        self._layout = _Layout(like)
        acc = np.zeros(self._layout.size)
        # each tensor's float64 sum: a 1-d view of the one accumulator
        self._sum = {
            name: acc[start:stop]
            for name, (start, stop) in zip(self._layout.names, self._layout.bounds, strict=True)
        }
        sizes = [stop - start for start, stop in self._layout.bounds]
        big = {
            i
            for i, (n, dtype) in enumerate(zip(sizes, self._layout.dtypes, strict=True))
            if n >= _COMPILED_MIN and dtype in (np.float32, np.float64)
        }
        # numba is imported only for a model with tensors large enough to use it
        self._compiled_fold = _compiled_fold() if compiled and big else None
        self._big = big if self._compiled_fold is not None else set()
        nbytes = sum(n * d.itemsize for n, d in zip(sizes, self._layout.dtypes, strict=True))
        self._hold = max(1, min(_HOLD, _HOLD_BYTES // max(1, nbytes)))
        self._held: list[list[np.ndarray]] = []
        self._held_weights: list[float] = []
        self._broken = False  # a fold raised part-way: some tensors lack the replies it held
        self.total_weight = 0.0
        self.count = 0

    def add(self, update: Mapping[str, np.ndarray], weight: float) -> None:
        """Fold ``update`` in with ``weight`` (finite). Raises before changing anything when
        a tensor is missing, has another shape, or has a dtype that is not real."""
        self._check_intact()
        w = float(weight)
        if not math.isfinite(w):
            raise ValueError(f"weight must be finite, got {weight!r}")
        flats = []
        for i, name in enumerate(self._layout.names):
            flat = self._layout.flat(update, i)
            if flat.dtype.kind not in "biuf":  # what casts to float64 as the same kind
                raise ValueError(f"tensor {name!r} has dtype {flat.dtype}, which is not real")
            flats.append(flat)
        self._held.append(flats)
        self._held_weights.append(w)
        self.total_weight += w
        self.count += 1
        if len(self._held) >= self._hold:
            self._fold()

    def mean(self) -> dict[str, np.ndarray]:
        """The weighted mean as fresh arrays, each in its tensor's dtype and shape.

        Neither the accumulator nor the replies held change: more can be added after."""
        if self.total_weight <= 0:
            raise ValueError("no weight was accumulated")
        self._check_intact()
        weights = np.array(self._held_weights)
        out = {}
        for i, (name, shape, dtype) in enumerate(
            zip(self._layout.names, self._layout.shapes, self._layout.dtypes, strict=True)
        ):
            arr = np.empty(shape, dtype)
            self._fold_tensor(i, weights, out=arr.reshape(-1))
            out[name] = arr
        return out

    def _check_intact(self) -> None:
        if self._broken:
            raise RuntimeError("an earlier fold of this weighted sum failed; it has no mean")

    def _fold(self) -> None:
        """acc += sum_j w_j x_j over the held replies, tensor by tensor; then drop them."""
        self._check_intact()
        weights = np.array(self._held_weights)
        self._broken = True  # until every tensor has the held replies
        for i in range(len(self._layout.names)):
            self._fold_tensor(i, weights)
        self._held, self._held_weights = [], []
        self._broken = False

    def _fold_tensor(self, i: int, weights: np.ndarray, out: np.ndarray | None = None) -> None:
        """Tensor ``i`` of the held replies into its sum, or with ``out``, its sum with
        them divided by the total weight into ``out`` (the sum unchanged)."""
        rows = [flats[i] for flats in self._held]
        acc, dtype = self._sum[self._layout.names[i]], self._layout.dtypes[i]
        if self._compiled_fold and i in self._big and all(r.dtype == dtype for r in rows):
            self._compiled_fold(acc, rows, weights, out=out, total=self.total_weight)
        else:
            _numpy_fold(acc, rows, weights, out=out, total=self.total_weight)


def _numpy_fold(
    acc: np.ndarray,
    rows: list[np.ndarray],
    weights: np.ndarray,
    *,
    out: np.ndarray | None = None,
    total: float = 1.0,
) -> None:
    """acc += sum_k weights[k] * rows[k] in float64, or with ``out``, out = that sum / total
    cast to out's dtype (integers truncated toward zero) and acc unchanged. A block of
    columns at a time: every row's part of the block is copied into a float64 stack that
    stays in cache and reduced with one matrix-vector product."""
    width = max(1, _STACK_BYTES // (8 * max(1, len(rows))))
    stack = np.empty((len(rows), min(width, acc.size)))
    for start in range(0, acc.size, width):
        stop = min(start + width, acc.size)
        block = stack[:, : stop - start]
        for dst, row in zip(block, rows, strict=True):
            dst[...] = row[start:stop]
        sums = acc[start:stop] + weights @ block
        if out is None:
            acc[start:stop] = sums
        else:
            np.divide(sums, total, out=out[start:stop], casting="unsafe")


def _compiled_fold() -> Callable[..., None] | None:
    """:func:`consortium.horizontal.compiled.fold`, or None without numba."""
    try:
        from consortium.horizontal import compiled
    except ImportError:  # numba is not installed (the fast extra)
        return None
    return compiled.fold


# Replies held by WeightedSum before they are folded: the accumulator (8 bytes an element)
# is read and written once per fold, against 4 bytes an element read per float32 reply. At
# most _HOLD_BYTES of replies (one at least) wait, since holding keeps them alive.
_HOLD = 64
_HOLD_BYTES = 2 << 30
# Tensors of at least this many float32 or float64 elements fold with the compiled loop when
# numba is installed: it costs a few microseconds a reply to hand it the rows, against ~100
# microseconds to read a reply's 1 MiB of such a tensor.
_COMPILED_MIN = 1 << 18
# Bytes of the float64 stack of _numpy_fold, sized to stay in the core's cache.
_STACK_BYTES = 2 << 20
