"""Lazy access to gmpy2 (LGPL, a wrapper of GMP), which does all big-integer arithmetic
here: an optional dependency (the ``paillier`` extra), so importing Consortium never needs
it, and its absence is reported, with how to install it, on first use.
"""

from __future__ import annotations

import functools
import importlib
from types import ModuleType

__all__ = ["gmpy2"]


@functools.cache
def gmpy2() -> ModuleType:
    """The gmpy2 module, imported on first use; ImportError with an install hint if missing."""
    try:
        return importlib.import_module("gmpy2")
    except ImportError as exc:
        raise ImportError(
            "Paillier encryption needs gmpy2: install it with pip install 'consortium[paillier]'"
        ) from exc
