"""Accumulators of finished weighted sums, kept for the next sum of the same size (see
:class:`~consortium.horizontal.aggregate.WeightedSum`)."""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

__all__ = ["SPARES", "SPARE_BYTES", "SpareBuffers"]


class SpareBuffers:
    """float64 accumulators of weighted sums that are gone, kept for the next sum of the same
    size: a round's sum then reuses the last round's memory instead of mapping fresh pages
    (for a 10M-parameter model, 80 MB of page faults: ~10% of the sum's time at
    ``bench/aggregate.py``'s shape). At most two per size and ``SPARE_BYTES`` in all,
    the oldest dropped first. Their contents are stale: the first fold overwrites them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._free: OrderedDict[int, list[np.ndarray]] = OrderedDict()
        self._bytes = 0

    def take(self, size: int) -> np.ndarray:
        with self._lock:
            stack = self._free.get(size)
            if stack:
                buf = stack.pop()
                self._bytes -= buf.nbytes
                if not stack:
                    del self._free[size]
                return buf
        return np.empty(size, np.float64)

    def clear(self) -> None:
        """Drop every spare (their memory goes back to the system)."""
        with self._lock:
            self._free.clear()
            self._bytes = 0

    def give(self, buf: np.ndarray) -> None:
        if buf.nbytes > SPARE_BYTES:
            return
        with self._lock:
            stack = self._free.setdefault(buf.size, [])
            self._free.move_to_end(buf.size)
            if len(stack) >= 2:
                return
            stack.append(buf)
            self._bytes += buf.nbytes
            while self._bytes > SPARE_BYTES:
                _, oldest = next(iter(self._free.items()))
                self._bytes -= oldest.pop(0).nbytes
                if not oldest:
                    self._free.popitem(last=False)


# Bytes of spare accumulators kept for the next weighted sums.
SPARE_BYTES = 1 << 30
SPARES = SpareBuffers()
