"""FedAvg against a plain-loop oracle of its published rule: sum_k n_k w_k / sum_k n_k."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consortium.errors import TooFewUpdates
from consortium.horizontal import FedAvg, check_update

SHAPES = {"W": (3, 4), "b": (4,), "s": ()}


def oracle(updates: list[dict[str, np.ndarray]], counts: list[int]) -> dict[str, np.ndarray]:
    out = {}
    for name in SHAPES:
        total = 0.0
        acc = np.zeros(SHAPES[name])
        for update, n in zip(updates, counts, strict=True):
            for idx in np.ndindex(*SHAPES[name]):
                acc[idx] += float(update[name][idx]) * n
            total += n
        out[name] = acc / total
    return out


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    counts=st.lists(st.integers(1, 10_000), min_size=1, max_size=12),
    rounds=st.integers(1, 3),
)
def test_fedavg_equals_weighted_mean_over_rounds(seed, counts, rounds):
    rng = np.random.default_rng(seed)
    strategy = FedAvg()
    state = strategy.init({k: np.zeros(v, np.float32) for k, v in SHAPES.items()})
    for rnd in range(1, rounds + 1):
        updates = [
            {k: rng.normal(size=v).astype(np.float32) for k, v in SHAPES.items()} for _ in counts
        ]
        acc = strategy.begin(rnd, state)
        for i, (update, n) in enumerate(zip(updates, counts, strict=True)):
            assert acc.add(f"p{i}", update, {"num_examples": n}) is None
        state, metrics = strategy.aggregate(rnd, state, acc, {})
        expected = oracle(updates, counts)
        for name in SHAPES:
            assert state.weights[name].dtype == np.float32
            np.testing.assert_allclose(state.weights[name], expected[name], rtol=1e-5, atol=1e-6)
        assert metrics == {"examples": float(sum(counts)), "replies": float(len(counts))}
        assert state.round == rnd


def test_bad_replies_are_reasons_not_crashes():
    strategy = FedAvg()
    good = {
        "W": np.ones((3, 4), np.float32),
        "b": np.ones(4, np.float32),
        "s": np.float32(1).reshape(()),
    }
    state = strategy.init(good)
    acc = strategy.begin(1, state)
    bad_nan = {**good, "b": np.array([1, np.nan, 1, 1], np.float32)}
    assert "NaN or Inf" in acc.add("a", bad_nan, {"num_examples": 5})
    assert "shape" in acc.add("b", {**good, "W": np.ones((4, 3), np.float32)}, {"num_examples": 5})
    assert "dtype" in acc.add("c", {**good, "W": np.ones((3, 4), np.float64)}, {"num_examples": 5})
    assert "missing ['s']" in acc.add("d", {"W": good["W"], "b": good["b"]}, {"num_examples": 5})
    assert "num_examples" in acc.add("e", good, {"num_examples": 0})
    assert "num_examples" in acc.add("f", good, {"num_examples": True})
    assert "num_examples" in acc.add("g", good, {})
    with pytest.raises(TooFewUpdates, match="'fedavg' needs at least 1 valid updates") as info:
        strategy.aggregate(1, state, acc, {"a": "NaN"})
    assert "a: NaN" in str(info.value)
    # none of those touched the running sum
    assert acc.add("h", good, {"num_examples": 2}) is None
    state, metrics = strategy.aggregate(1, state, acc, {})
    np.testing.assert_array_equal(state.weights["W"], good["W"])
    assert metrics == {"examples": 2.0, "replies": 1.0}


def test_check_update_accepts_integer_tensors_without_finiteness_check():
    ref = {"count": np.zeros(3, np.int64)}
    assert check_update({"count": np.array([1, 2, 3])}, ref) is None
