"""Helpers shared by the benchmark scripts (not a benchmark: ``run_all.py`` skips it)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any


def timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[float, Any]:
    """The best wall time of ``repeat`` calls and the last result."""
    best, out = math.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def phe_module() -> Any:
    """python-paillier, the GPL baseline, or None (its rows are then left out)."""
    try:
        import phe
    except ImportError:
        print("phe is not installed: its rows are left out (pip install phe)")
        return None
    return phe
