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
import weakref
from collections.abc import Iterator, Mapping

import numpy as np

from consortium.horizontal import compiled
from consortium.horizontal._spares import SPARES

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

    Speed: the cost is reading each reply once. Replies are not folded one at a time
    (that would read and write the whole accumulator per reply); :meth:`add` keeps a
    reference to up to ``_HOLD`` replies (fewer for a large model: at most ``_HOLD_BYTES``
    of them; no copy, the arrays already exist) and folds them together, so the
    accumulator is read and written once per fold. Tensors of ``_COMPILED_MIN`` elements or
    more (float32 or float64) fold through the compiled kernel of
    :mod:`~consortium.horizontal.compiled` when numba is installed, reading the held
    replies side by side in cache-sized blocks; the others, and every tensor without numba,
    fold one block of columns at a time: the block of every held reply is gathered into a
    small stack that stays in cache and reduced with one matrix-vector product. Peak extra
    memory is the accumulator (8 bytes per element), a 2 MiB stack and the held references;
    the accumulator of a finished sum is kept for the next one of the same size (the next
    round's), so a round does not pay for mapping fresh memory (``_spares``).
    ``bench/aggregate.py`` measures the whole path against one matrix-vector product over
    the same bytes in one (N, P) array.

    Because replies are held, the arrays given to :meth:`add` must not be changed
    until :meth:`mean` (a model's ``get_weights`` and the wire decoder both return arrays
    that nothing changes later).

    Precision: every tensor accumulates in float64, whatever its dtype (float32 partial
    sums would make the result depend on the reply order at float32 resolution). For N
    replies the float64 sum is within about N * 2**-53 * sum_k |w_k x_k| of the exact one,
    so the order replies arrive in changes a float32 mean by at most one unit in the last
    place (almost always not at all) and a float64 mean by about N * 2**-53 relative to
    sum_k |w_k x_k| / sum_k w_k. :meth:`mean` casts integer tensors back, which truncates
    toward zero.
    """

    def __init__(self, *, like: Mapping[str, np.ndarray]) -> None:
        self._layout = _Layout(like)
        # a finished sum's accumulator when one of this size is spare (its pages already
        # mapped), else a new one; either way the first fold writes it, never reads it
        self._acc = SPARES.take(self._layout.size)
        weakref.finalize(self, SPARES.give, self._acc).atexit = False
        # per-tensor views of the accumulator (stale until the first fold writes it)
        self._sum = {
            name: self._acc[start:stop].reshape(shape)
            for name, shape, (start, stop) in zip(
                self._layout.names, self._layout.shapes, self._layout.bounds, strict=True
            )
        }
        self._held: list[list[np.ndarray]] = []
        self._held_weights: list[float] = []
        self._fresh = True  # nothing folded yet: what the accumulator holds is stale
        sizes = [stop - start for start, stop in self._layout.bounds]
        nbytes = sum(n * d.itemsize for n, d in zip(sizes, self._layout.dtypes, strict=True))
        hold = max(1, min(_HOLD, _HOLD_BYTES // max(1, nbytes)))
        # a multiple of four: the kernel reads replies eight or four at a time, and one
        # at a time for what is left (~5% slower a fold with 53 held against 52)
        self._hold = hold - hold % 4 if hold >= 4 else hold
        big = [
            i
            for i, (n, d) in enumerate(zip(sizes, self._layout.dtypes, strict=True))
            if n >= _COMPILED_MIN and d in (np.float32, np.float64)
        ]
        self._compiled = big if big and compiled.available() else []
        skip = set(self._compiled)
        self._spans = [
            (i, lo, hi)
            for i, (lo, hi) in enumerate(self._layout.bounds)
            if hi > lo and i not in skip
        ]
        self._failed = False  # a fold raised part-way: the sum is no longer right
        self._plan: list[tuple[int, list[_Segment], list[_Run]]] | None = None
        self._stack: np.ndarray | None = None
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
        """The weighted mean as fresh arrays, each in its tensor's dtype and shape."""
        if self.total_weight <= 0:
            raise ValueError("no weight was accumulated")
        # compiled tensors: the last fold and the division in one pass over the columns
        means = {
            i: np.empty(
                self._layout.bounds[i][1] - self._layout.bounds[i][0], self._layout.dtypes[i]
            )
            for i in self._compiled
        }
        self._fold(means=means)
        out = {}
        for i, (name, shape, dtype, (start, stop)) in enumerate(
            zip(
                self._layout.names,
                self._layout.shapes,
                self._layout.dtypes,
                self._layout.bounds,
                strict=True,
            )
        ):
            if i in means:
                out[name] = means[i].reshape(shape)
                continue
            part = self._acc[start:stop]
            if dtype.kind == "f":
                arr = np.empty(stop - start, dtype)
                np.divide(part, self.total_weight, out=arr, casting="same_kind")
            else:  # truncated toward zero, as a cast does (FedOpt's tests rely on it)
                arr = (part / self.total_weight).astype(dtype)
            out[name] = arr.reshape(shape)
        return out

    def _check_intact(self) -> None:
        if self._failed:
            raise RuntimeError("an earlier fold of this weighted sum failed; it has no mean")

    def _fold(self, *, means: dict[int, np.ndarray] | None = None) -> None:
        """acc += sum_j w_j x_j over the held replies; then drop them. ``means``: arrays
        for the compiled tensors, which also receive acc / total_weight. A fold that raises
        part-way (e.g. out of memory) leaves some tensors with the held replies and some
        without: every later call then raises rather than give a wrong mean."""
        self._check_intact()
        try:
            self._fold_held(means)
        except BaseException:
            self._failed = True
            raise

    def _fold_held(self, means: dict[int, np.ndarray] | None) -> None:
        held, weights = self._held, np.array(self._held_weights, np.float64)
        self._held, self._held_weights = [], []
        fresh, self._fresh = self._fresh, self._fresh and not held  # fresh: write, not add
        if held or means:
            for i in self._compiled:
                start, stop = self._layout.bounds[i]
                compiled.fold(
                    self._acc[start:stop],
                    [flats[i] for flats in held],
                    weights,
                    fresh=fresh,
                    mean=None if means is None else means[i],
                    total=self.total_weight,
                )
        if not held or self._layout.size == 0:
            return
        if self._plan is None:
            self._plan = _blocks(self._spans, _COLUMNS_PER_FOLD)
            width = max((columns for columns, _, _ in self._plan), default=0)
            self._stack = np.empty((self._hold, width))
        assert self._stack is not None
        k = len(held)
        column = np.empty(self._stack.shape[1])
        for columns, segments, runs in self._plan:
            stack = self._stack[:k, :columns]
            for row, flats in zip(stack, held, strict=True):
                for i, src, src_stop, dst, dst_stop in segments:
                    row[dst:dst_stop] = flats[i][src:src_stop]
            partial = column[:columns]
            np.matmul(weights, stack, out=partial)
            for start, stop, dst in runs:
                acc = self._acc[start:stop]
                if fresh:
                    acc[...] = partial[dst : dst + stop - start]
                else:
                    acc += partial[dst : dst + stop - start]


# Replies held by WeightedSum before they are folded: the accumulator is read and written
# once per _HOLD replies, so its traffic is 2 x 8 / (_HOLD x 4) = 6.25% of the float32
# replies' at 64, against 400% when replies are folded one by one. At most _HOLD_BYTES of
# replies (one at least) wait: holding keeps them alive, a bound that trades memory for
# speed (BENCHMARKS.md, "Aggregation": 1 GiB, four folds of 100 x 10M, against 2 GiB, two).
_HOLD = 64
_HOLD_BYTES = 2 << 30
# Columns per fold block: the (_HOLD, columns) float64 stack is 2 MiB, within the last-level
# cache (measured with 16 rows at N=100, P=10M: 1 MiB and 4 MiB stacks were 15-35% slower).
_COLUMNS_PER_FOLD = (2 << 20) // (8 * _HOLD)
# Tensors of at least this many float32 or float64 elements fold through the compiled
# kernel when numba is installed (``compiled``); building its list of rows costs ~8 us a
# reply, against ~100 us to read a reply's 1 MiB of such a tensor.
_COMPILED_MIN = 1 << 18


_Segment = tuple[int, int, int, int, int]  # tensor, start and stop in it, in the block
_Run = tuple[int, int, int]  # start and stop in the accumulator, start in the block


def _blocks(
    spans: list[tuple[int, int, int]], width: int
) -> list[tuple[int, list[_Segment], list[_Run]]]:
    """Cut the tensors ``spans`` names (tensor, start, stop in the accumulator), laid end to
    end, into blocks of ``width`` columns: (columns, segments, runs); the runs are the
    segments merged where they sit side by side in the accumulator too."""
    plan: list[tuple[int, list[_Segment], list[_Run]]] = []
    segments: list[_Segment] = []
    runs: list[_Run] = []
    used = 0  # columns of the current block taken
    for i, lo, hi in spans:
        src = 0
        while src < hi - lo:
            take = min(hi - lo - src, width - used)
            segments.append((i, src, src + take, used, used + take))
            if runs and runs[-1][1] == lo + src:
                runs[-1] = (runs[-1][0], lo + src + take, runs[-1][2])
            else:
                runs.append((lo + src, lo + src + take, used))
            src += take
            used += take
            if used == width:
                plan.append((used, segments, runs))
                segments, runs, used = [], [], 0
    if segments:
        plan.append((used, segments, runs))
    return plan
