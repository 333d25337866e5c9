from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consortium.errors import ConfigError, PluginError
from consortium.ml import PARTITIONERS, load_dataset, partition

CASES = [("iid", {}), ("dirichlet", {"alpha": 0.5}), ("shards", {"shards_per_party": 2})]


def _labels() -> np.ndarray:
    return load_dataset("digits", seed=0).y


def _check_partition(parts: list[np.ndarray], n: int, n_parties: int) -> None:
    assert len(parts) == n_parties
    for rows in parts:
        assert rows.dtype == np.int64
        assert len(rows) > 0
        assert np.all(np.diff(rows) > 0)  # sorted, no repeats
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(n))


def _label_distance(y: np.ndarray, parts: list[np.ndarray]) -> float:
    """Mean total-variation distance between each party's label mix and the global one."""
    k = int(y.max()) + 1
    overall = np.bincount(y, minlength=k) / len(y)
    mixes = [np.bincount(y[rows], minlength=k) / len(rows) for rows in parts]
    return float(np.mean([0.5 * np.abs(mix - overall).sum() for mix in mixes]))


def test_builtins_are_registered() -> None:
    assert {"iid", "dirichlet", "shards"} <= set(PARTITIONERS.names())


@pytest.mark.parametrize(("name", "args"), CASES)
def test_partition_is_disjoint_covering_and_deterministic(name: str, args: dict[str, Any]) -> None:
    y = _labels()
    parts = partition(name, y, n_parties=7, seed=11, **args)
    _check_partition(parts, len(y), 7)
    again = partition(name, y, n_parties=7, seed=11, **args)
    other = partition(name, y, n_parties=7, seed=12, **args)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(parts, other, strict=True))


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=200),
    n_parties=st.integers(min_value=1, max_value=12),
    k=st.integers(min_value=1, max_value=5),
    seed=st.integers(min_value=0, max_value=2**63 - 1),
    case=st.sampled_from(CASES),
)
def test_partition_invariants_hold_or_config_error(
    n: int, n_parties: int, k: int, seed: int, case: tuple[str, dict[str, Any]]
) -> None:
    name, args = case
    y = np.random.default_rng(seed % 1000).integers(0, k, n)
    try:
        parts = partition(name, y, n_parties=n_parties, seed=seed, **args)
    except ConfigError:
        assert n_parties > n or name != "iid"  # iid only fails with fewer rows than parties
        return
    _check_partition(parts, n, n_parties)


def test_iid_sizes_differ_by_at_most_one() -> None:
    parts = partition("iid", np.zeros(103, dtype=np.int64), n_parties=10, seed=0)
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1


def test_small_alpha_dirichlet_is_more_skewed_than_iid() -> None:
    y = _labels()
    iid = _label_distance(y, partition("iid", y, n_parties=10, seed=0))
    skewed = _label_distance(y, partition("dirichlet", y, n_parties=10, seed=0, alpha=0.1))
    mild = _label_distance(y, partition("dirichlet", y, n_parties=10, seed=0, alpha=100.0))
    assert iid < 0.1
    assert skewed > 0.5
    assert mild < 0.15  # large alpha approaches iid


def test_dirichlet_guarantees_min_size() -> None:
    y = _labels()
    parts = partition("dirichlet", y, n_parties=20, seed=3, alpha=0.2, min_size=30)
    _check_partition(parts, len(y), 20)
    assert min(len(p) for p in parts) >= 30


def test_dirichlet_gives_up_with_a_clear_error() -> None:
    y = _labels()
    with pytest.raises(ConfigError, match="raise alpha"):
        partition("dirichlet", y, n_parties=50, seed=0, alpha=0.01, min_size=30, max_tries=3)
    with pytest.raises(ConfigError, match="needs 2000 rows"):
        partition("dirichlet", y, n_parties=20, seed=0, min_size=100)
    with pytest.raises(ConfigError, match="alpha"):
        partition("dirichlet", y, n_parties=2, seed=0, alpha=0.0)
    with pytest.raises(ConfigError, match="class labels"):
        partition("dirichlet", np.linspace(0, 1, 50), n_parties=2, seed=0)


def test_shards_give_each_party_about_shards_per_party_labels() -> None:
    y = _labels()
    for per_party in (1, 2, 3):
        parts = partition("shards", y, n_parties=10, seed=0, shards_per_party=per_party)
        distinct = [len(np.unique(y[rows])) for rows in parts]
        # a shard may straddle the boundary between two labels
        assert max(distinct) <= 2 * per_party + 1
        assert np.mean(distinct) <= per_party + 1
    iid_distinct = [len(np.unique(y[rows])) for rows in partition("iid", y, n_parties=10, seed=0)]
    assert min(iid_distinct) == 10


def test_impossible_requests_are_config_errors() -> None:
    y = np.arange(5) % 2
    with pytest.raises(ConfigError, match="6 parties"):
        partition("iid", y, n_parties=6, seed=0)
    with pytest.raises(ConfigError, match="n_parties"):
        partition("iid", y, n_parties=0, seed=0)
    with pytest.raises(ConfigError, match="shards_per_party"):
        partition("shards", y, n_parties=3, seed=0, shards_per_party=2)


def test_unknown_partitioner_and_argument() -> None:
    with pytest.raises(PluginError, match="dirichlet, iid, shards"):
        partition("label_skew", _labels(), n_parties=2, seed=0)
    with pytest.raises(ConfigError, match="'dirichlet' has no argument 'beta'"):
        partition("dirichlet", _labels(), n_parties=2, seed=0, beta=0.5)
