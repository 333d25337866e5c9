"""Partitioners: which rows of a table each simulated party holds.

A partitioner is called as ``partitioner(y, *, n_parties=..., seed=..., **args)`` with the
targets of the table and returns one index array per party: int64, sorted, disjoint, together
covering every row exactly once, none empty. The same seed gives the same partition.

Built-ins:

- ``iid``: a random permutation cut into parts whose sizes differ by at most 1.
- ``dirichlet``: label skew. The rows of each class are spread over the parties in
  proportions drawn from a symmetric Dirichlet(``alpha``); small ``alpha`` gives each party
  few classes, large ``alpha`` approaches iid. Hsu, Qi and Brown (2019), "Measuring the
  Effects of Non-Identical Data Distribution for Federated Visual Classification",
  arXiv:1909.06335. Drawing per class and redrawing (from the same seeded stream) until every
  party holds ``min_size`` rows follows Yurochkin et al. (2019), "Bayesian Nonparametric
  Federated Learning of Neural Networks", ICML, as used in Li et al. (2022), "Federated
  Learning on Non-IID Data Silos: An Experimental Study", ICDE.
- ``shards``: sort the rows by label (in random order within a label), cut them into
  ``shards_per_party * n_parties`` shards and deal each party ``shards_per_party`` of them at
  random, so that each party sees about that many labels. McMahan et al. (2017),
  "Communication-Efficient Learning of Deep Networks from Decentralized Data", AISTATS (their
  pathological non-IID MNIST split).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from consortium.errors import ConfigError
from consortium.ml._checks import check_plugin_args, check_positive_int, check_seed
from consortium.registry import Registry

__all__ = ["PARTITIONERS", "Partitioner", "dirichlet", "iid", "partition", "shards"]

#: ``partitioner(y, *, n_parties=..., seed=..., **args) -> list[np.ndarray]``
Partitioner = Callable[..., list[np.ndarray]]

PARTITIONERS: Registry[Partitioner] = Registry("partitioner")


def partition(
    name: str, y: np.ndarray, *, n_parties: int, seed: int, **args: Any
) -> list[np.ndarray]:
    """Run the partitioner registered as ``name``, checking its ``args`` first (an unknown
    argument is a ConfigError naming it; an unknown name lists the choices)."""
    fn = PARTITIONERS.get(name)
    check_plugin_args(fn, args, kind="partitioner", name=name, reserved=("y", "n_parties", "seed"))
    return fn(y, n_parties=n_parties, seed=seed, **args)


def _inputs(
    y: np.ndarray, n_parties: int, seed: int
) -> tuple[np.ndarray, int, np.random.Generator]:
    y = np.asarray(y)
    if y.ndim != 1:
        raise ConfigError(f"partitioners take a 1-D array of targets, got shape {y.shape}")
    parties = check_positive_int(n_parties, "n_parties")
    if parties > len(y):
        raise ConfigError(
            f"cannot give {parties} parties at least one row each from {len(y)} rows; "
            "use fewer parties or more data"
        )
    return y, parties, np.random.default_rng(check_seed(seed))


@PARTITIONERS.decorator("iid")
def iid(y: np.ndarray, *, n_parties: int, seed: int) -> list[np.ndarray]:
    y, parties, rng = _inputs(y, n_parties, seed)
    parts = np.array_split(rng.permutation(len(y)), parties)
    return [np.sort(part).astype(np.int64) for part in parts]


@PARTITIONERS.decorator("dirichlet")
def dirichlet(
    y: np.ndarray,
    *,
    n_parties: int,
    seed: int,
    alpha: float = 0.5,
    min_size: int = 1,
    max_tries: int = 1000,
) -> list[np.ndarray]:
    y, parties, rng = _inputs(y, n_parties, seed)
    if not (np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_):
        raise ConfigError(
            f"the dirichlet partitioner needs class labels, got {y.dtype} targets; "
            "use iid or shards for regression"
        )
    concentration = float(alpha)
    if not concentration > 0.0 or not np.isfinite(concentration):
        raise ConfigError(f"dirichlet alpha must be a positive number, got {alpha!r}")
    least = check_positive_int(min_size, "dirichlet min_size")
    tries = check_positive_int(max_tries, "dirichlet max_tries")
    if least * parties > len(y):
        raise ConfigError(
            f"dirichlet min_size={least} for {parties} parties needs {least * parties} rows, "
            f"but there are only {len(y)}"
        )
    by_class = [np.flatnonzero(y == label) for label in np.unique(y)]
    party_ids = np.arange(parties)
    owner = np.empty(len(y), dtype=np.int64)
    for _ in range(tries):
        for rows in by_class:
            shares = rng.dirichlet(np.full(parties, concentration))
            bounds = np.round(np.cumsum(shares) * len(rows)).astype(np.int64)
            bounds[-1] = len(rows)  # the cumulative sum may end a hair below 1
            sizes = np.diff(bounds, prepend=0)
            owner[rng.permutation(rows)] = np.repeat(party_ids, sizes)
        counts = np.bincount(owner, minlength=parties)
        if counts.min() >= least:
            rows = np.argsort(owner, kind="stable").astype(np.int64)  # ascending within a party
            return np.split(rows, np.cumsum(counts)[:-1])
    raise ConfigError(
        f"dirichlet(alpha={concentration}) gave some party fewer than {least} rows in "
        f"{tries} draws; raise alpha, lower min_size or n_parties, or raise max_tries"
    )


@PARTITIONERS.decorator("shards")
def shards(
    y: np.ndarray, *, n_parties: int, seed: int, shards_per_party: int = 2
) -> list[np.ndarray]:
    y, parties, rng = _inputs(y, n_parties, seed)
    per_party = check_positive_int(shards_per_party, "shards_per_party")
    n_shards = per_party * parties
    if n_shards > len(y):
        raise ConfigError(
            f"{parties} parties x {per_party} shards_per_party = {n_shards} shards, "
            f"more than the {len(y)} rows; lower shards_per_party or n_parties"
        )
    order = rng.permutation(len(y))
    order = order[np.argsort(y[order], kind="stable")]
    pieces = np.array_split(order, n_shards)
    deal = rng.permutation(n_shards).reshape(parties, per_party)
    return [np.sort(np.concatenate([pieces[j] for j in hand])).astype(np.int64) for hand in deal]
