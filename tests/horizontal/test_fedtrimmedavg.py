"""FedTrimmedAvg against a plain-loop oracle of the coordinate-wise β-trimmed mean (Yin et al.,
ICML 2018)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from consortium.errors import ConfigError, TooFewUpdates
from consortium.horizontal import FedTrimmedAvg, build_strategy
from consortium.jobs import parse_job

SHAPES = {"W": (2, 5), "b": (5,)}


def oracle(updates, beta):
    n = len(updates)
    trim = math.floor(beta * n)
    out = {}
    for name, shape in SHAPES.items():
        res = np.zeros(shape)
        for idx in np.ndindex(*shape):
            values = sorted(float(u[name][idx]) for u in updates)
            kept = values[trim : n - trim]
            res[idx] = sum(kept) / len(kept)
        out[name] = res
    return out


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 12),
    beta=st.floats(0.0, 0.4999),
    dtype=st.sampled_from([np.float32, np.float64]),
    n_rounds=st.integers(1, 3),
    data=st.data(),
)
def test_trimmed_mean_equals_the_oracle_over_rounds(seed, n, beta, dtype, n_rounds, data):
    rng = np.random.default_rng(seed)
    strategy = FedTrimmedAvg(beta=beta)
    state = strategy.init({k: np.zeros(s, dtype) for k, s in SHAPES.items()})
    for rnd in range(1, n_rounds + 1):
        updates = [
            {k: rng.standard_cauchy(size=s).astype(dtype) for k, s in SHAPES.items()}
            for _ in range(n)
        ]
        counts = data.draw(st.lists(st.integers(1, 10_000), min_size=n, max_size=n))
        acc = strategy.begin(rnd, state, expected=n)
        for i in data.draw(st.permutations(range(n))):
            assert acc.add(f"p{i}", updates[i], {"num_examples": counts[i]}) is None
        state, metrics = strategy.aggregate(rnd, state, acc, {})
        expected = oracle(updates, beta)
        for name in SHAPES:
            assert state.weights[name].dtype == dtype
            scale = max(float(np.max(np.abs(u[name]))) for u in updates)
            tol = 4e-6 if dtype == np.float32 else 1e-12
            np.testing.assert_allclose(
                state.weights[name], expected[name], rtol=tol, atol=tol * scale
            )
        assert metrics["replies"] == n and metrics["examples"] == sum(counts)
        assert metrics["trimmed"] == math.floor(beta * n)


def test_zero_beta_is_the_plain_mean_and_counts_do_not_weigh_in():
    rng = np.random.default_rng(1)
    updates = [{k: rng.normal(size=s) for k, s in SHAPES.items()} for _ in range(5)]
    strategy = FedTrimmedAvg(beta=0.0)
    state = strategy.init({k: np.zeros(s) for k, s in SHAPES.items()})
    acc = strategy.begin(1, state, expected=5)
    for i, u in enumerate(updates):
        acc.add(f"p{i}", u, {"num_examples": 10**i})
    state, _ = strategy.aggregate(1, state, acc, {})
    for name in SHAPES:
        np.testing.assert_allclose(state.weights[name], np.mean([u[name] for u in updates], 0))


def test_trimming_removes_the_attackers():
    honest = [{k: np.full(s, float(v)) for k, s in SHAPES.items()} for v in (1, 2, 3, 4, 5, 6)]
    evil = [{k: np.full(s, 1e9) for k, s in SHAPES.items()} for _ in range(2)]
    strategy = FedTrimmedAvg(beta=0.25)  # 8 updates: 2 dropped from each end
    state = strategy.init({k: np.zeros(s) for k, s in SHAPES.items()})
    acc = strategy.begin(1, state, expected=8)
    for i, u in enumerate(honest + evil):
        acc.add(f"p{i}", u, {"num_examples": 1})
    state, _ = strategy.aggregate(1, state, acc, {})
    np.testing.assert_allclose(state.weights["b"], np.full(5, 4.5))  # mean of 3, 4, 5, 6


def test_bad_replies_are_reasons_and_no_valid_update_is_a_typed_error():
    strategy = FedTrimmedAvg()
    good = {k: np.ones(s) for k, s in SHAPES.items()}
    state = strategy.init({k: np.zeros(s) for k, s in SHAPES.items()})
    acc = strategy.begin(1, state, expected=3)
    assert "NaN or Inf" in acc.add("a", {**good, "b": np.full(5, -np.inf)}, {"num_examples": 1})
    assert "shape" in acc.add("b", {**good, "b": np.ones(6)}, {"num_examples": 1})
    assert "dtype" in acc.add("c", {**good, "b": np.ones(5, np.float32)}, {"num_examples": 1})
    assert "num_examples" in acc.add("d", good, {"num_examples": 0})
    with pytest.raises(TooFewUpdates, match="'fedtrimmedavg' needs at least 1 valid updates"):
        strategy.aggregate(1, state, acc, {})


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"beta": 0.5}, "less than 0.5"),
        ({"beta": -0.1}, "greater than or equal to 0"),
        ({"beta": "a lot"}, "valid number"),
        ({"trim": 2}, "unknown key"),
    ],
)
def test_bad_settings_name_the_field(args, message):
    field = next(iter(args))
    with pytest.raises(ValidationError, match=field):
        FedTrimmedAvg(**args)
    with pytest.raises(ConfigError, match=rf"algorithm\.strategy\.args\.{field}: .*{message}"):
        build_strategy("fedtrimmedavg", args)


def test_the_job_loader_rejects_a_bad_setting(small_job):
    job = small_job(algorithm__strategy={"name": "fedtrimmedavg", "args": {"beta": 0.6}})
    with pytest.raises(ConfigError, match=r"algorithm\.strategy\.args\.beta: Input should be less"):
        parse_job(job)
