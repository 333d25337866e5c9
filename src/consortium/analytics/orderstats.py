"""Exact order statistics (minimum, maximum, quantiles, median) from secure sums of counts.

A sum cannot give a maximum; counts can. Floats are mapped to 64-bit keys whose unsigned
order is the numeric order (the sign bit flipped for positives, every bit for negatives),
and the key space is searched by *zooming*: each stage, every worker counts its values in
256 equal bins of the current interval of each target, the coordinator adds the counts
securely, finds the bin holding the target rank, and makes it the next interval. After 8
stages an interval is one key wide: the order statistic itself, exactly, whatever its scale.
What the coordinator learns beyond the result: the pooled counts of 8 histograms around it.

The search over a bit-ordered key space is the "radix" selection of distributed
order-statistic protocols (Aggarwal, Mishra and Pinkas (2004), "Secure Computation of the
k-th Ranked Element", EUROCRYPT, binary search over the value domain); here 8 bits a stage.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from typing import Any

import numpy as np

__all__ = [
    "BINS",
    "STAGES",
    "float_keys",
    "key_float",
    "local_counts",
    "numpy_quantile",
    "quantile_ranks",
    "zoom",
]

_BITS = 8
BINS = 1 << _BITS
STAGES = 64 // _BITS
_SIGN = np.uint64(1 << 63)


def float_keys(values: np.ndarray) -> np.ndarray:
    """uint64 keys in the numeric order of the (finite) float64 ``values``."""
    bits = np.ascontiguousarray(values, dtype=np.float64).view(np.uint64)
    negative = (bits & _SIGN) != 0
    return np.where(negative, ~bits, bits | _SIGN)


def key_float(key: int) -> float:
    """The float64 whose key is ``key``."""
    k = np.uint64(key)
    bits = k & ~_SIGN if (k & _SIGN) else ~k
    return float(np.array([bits], dtype=np.uint64).view(np.float64)[0])


def zoom(
    ranks: tuple[int, ...], request: Mapping[str, np.ndarray]
) -> Generator[Mapping[str, np.ndarray], Any, list[float]]:
    """The order statistics of ``ranks`` (0-based), exactly: yields each stage's request
    (``request`` with the stage and each target's interval start, ``lows``), is sent the
    answers, whose total ``counts`` (targets x BINS, maybe noisy) narrow each interval."""
    lows = [0] * len(ranks)
    belows = [0.0] * len(ranks)  # how many values lie below each interval
    for stage in range(STAGES):
        stage_lows = np.array(lows, dtype=np.uint64)
        total, _ = yield {**request, "stage": np.array([stage], dtype=np.int64), "lows": stage_lows}
        counts = np.asarray(total["counts"], dtype=np.float64).reshape(len(ranks), BINS)
        shift = 64 - _BITS * (stage + 1)
        for t, (rank, row) in enumerate(zip(ranks, counts, strict=True)):
            cum = belows[t] + np.cumsum(row)
            hit = np.flatnonzero(cum > rank + 0.5)  # ranks are 0-based: cum >= rank + 1
            b = int(hit[0]) if hit.size else BINS - 1
            lows[t] += b << shift
            belows[t] = float(cum[b - 1]) if b > 0 else belows[t]
    return [key_float(low) for low in lows]


def local_counts(keys: np.ndarray, lows: np.ndarray, stage: int) -> np.ndarray:
    """This party's counts of its ``keys`` in the 256 bins of each target's interval."""
    shift = np.uint64(64 - _BITS * (stage + 1))
    out = np.zeros((len(lows), BINS), dtype=np.float64)
    for t, low in enumerate(np.asarray(lows, dtype=np.uint64)):
        offset = keys - low  # wraps for keys below low: filtered next
        inside = keys >= low
        if stage > 0:
            inside &= offset < (np.uint64(1) << np.uint64(64 - _BITS * stage))
        bins = (offset[inside] >> shift).astype(np.int64)
        out[t] = np.bincount(bins, minlength=BINS)[:BINS]
    return out.ravel()


def quantile_ranks(n: int, qs: list[float]) -> tuple[int, ...]:
    """The order statistics numpy's linear quantiles interpolate between, for ``n`` values:
    ``floor(h)`` and ``ceil(h)`` with ``h = (n - 1) q``, for each q."""
    ranks: list[int] = []
    for q in qs:
        h = (n - 1) * q
        low = int(np.floor(h))
        ranks += [low, min(low + 1, n - 1)]
    return tuple(ranks)


def numpy_quantile(n: int, qs: list[float], order_stats: list[float]) -> list[float]:
    """numpy's default (linear) quantiles from the order statistics of :func:`quantile_ranks`."""
    out = []
    for i, q in enumerate(qs):
        a, b = order_stats[2 * i], order_stats[2 * i + 1]
        h = (n - 1) * q
        t = h - np.floor(h)
        # numpy's _lerp: the form that is exact at t = 1 for t >= 0.5
        out.append(float(b - (b - a) * (1 - t)) if t >= 0.5 else float(a + (b - a) * t))
    return out
