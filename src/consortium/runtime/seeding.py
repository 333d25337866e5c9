"""Randomness derived from (seed, round, party): the same job and seed give the same draws
on every launcher, whatever order parties run in."""

from __future__ import annotations

import numpy as np

__all__ = ["derive_rng", "derive_seed"]


def derive_seed(seed: int, *keys: int) -> int:
    """A 63-bit integer seed for libraries that take one (torch, scikit-learn)."""
    state = np.random.SeedSequence([seed, *keys]).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & (2**63 - 1)


def derive_rng(seed: int, *keys: int) -> np.random.Generator:
    """A generator for ``(seed, *keys)``, e.g. ``derive_rng(seed, round, party.rank)``."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, *keys])))
