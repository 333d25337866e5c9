"""Lazy access to gmpy2, so that importing Consortium never needs it.

gmpy2 (LGPL, a wrapper of GMP) does all big-integer arithmetic here. It is an optional
dependency: the ``paillier`` extra. Every function that computes calls :func:`gmpy2` first;
when the package is missing, the error says how to install it.
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
