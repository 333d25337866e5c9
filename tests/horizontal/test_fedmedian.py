"""FedMedian against a plain-loop oracle of the coordinate-wise median (Yin et al., ICML 2018)."""

from __future__ import annotations

import statistics

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import consortium
from consortium.errors import ConfigError, TooFewUpdates
from consortium.horizontal import FedMedian, build_strategy
from consortium.jobs import load_job, parse_job

SHAPES = {"W": (3, 4), "b": (4,), "s": ()}


def oracle(updates):
    out = {}
    for name, shape in SHAPES.items():
        med = np.zeros(shape)
        for idx in np.ndindex(*shape):
            med[idx] = statistics.median(float(u[name][idx]) for u in updates)
        out[name] = med
    return out


def _aggregate(strategy, updates, counts, order, dtype, rnd=1, state=None):
    if state is None:
        state = strategy.init({k: np.zeros(s, dtype) for k, s in SHAPES.items()})
    acc = strategy.begin(rnd, state, expected=len(updates))
    for i in order:
        assert acc.add(f"p{i}", updates[i], {"num_examples": counts[i]}) is None
    return strategy.aggregate(rnd, state, acc, {})


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 12),
    dtype=st.sampled_from([np.float32, np.float64]),
    n_rounds=st.integers(1, 3),
    data=st.data(),
)
def test_median_equals_the_oracle_over_rounds(seed, n, dtype, n_rounds, data):
    rng = np.random.default_rng(seed)
    strategy = FedMedian()
    state = strategy.init({k: np.zeros(s, dtype) for k, s in SHAPES.items()})
    for rnd in range(1, n_rounds + 1):
        updates = [
            {k: (rng.standard_cauchy(size=s)).astype(dtype) for k, s in SHAPES.items()}
            for _ in range(n)
        ]
        counts = data.draw(st.lists(st.integers(1, 10_000), min_size=n, max_size=n))
        order = data.draw(st.permutations(range(n)))
        state, metrics = _aggregate(strategy, updates, counts, order, dtype, rnd, state)
        expected = oracle(updates)
        for name in SHAPES:
            assert state.weights[name].dtype == dtype
            scale = max(float(np.max(np.abs(u[name]))) for u in updates)
            tol = 4e-6 if dtype == np.float32 else 1e-12
            np.testing.assert_allclose(
                state.weights[name], expected[name], rtol=tol, atol=tol * scale
            )
        assert metrics == {"examples": float(sum(counts)), "replies": float(n)}
        assert state.round == rnd


def test_example_counts_do_not_weigh_in():
    a = {k: np.zeros(s) for k, s in SHAPES.items()}
    b = {k: np.ones(s) for k, s in SHAPES.items()}
    c = {k: np.full(s, 5.0) for k, s in SHAPES.items()}
    state, _ = _aggregate(FedMedian(), [a, b, c], [1, 1, 10**9], range(3), np.float64)
    for name in SHAPES:
        np.testing.assert_array_equal(state.weights[name], b[name])


def test_a_minority_of_attackers_cannot_move_it_out_of_the_honest_range():
    rng = np.random.default_rng(0)
    honest = [{k: rng.normal(size=s) for k, s in SHAPES.items()} for _ in range(5)]
    evil = [{k: np.full(s, -1e9) for k, s in SHAPES.items()} for _ in range(4)]
    state, _ = _aggregate(FedMedian(), honest + evil, [1] * 9, range(9), np.float64)
    for name in SHAPES:
        stack = np.stack([u[name] for u in honest])
        assert np.all(state.weights[name] >= stack.min(0))
        assert np.all(state.weights[name] <= stack.max(0))


def test_bad_replies_are_reasons_and_no_valid_update_is_a_typed_error():
    strategy = FedMedian()
    good = {k: np.ones(s, np.float32) for k, s in SHAPES.items()}
    state = strategy.init({k: np.zeros(s, np.float32) for k, s in SHAPES.items()})
    acc = strategy.begin(1, state, expected=2)
    assert "NaN or Inf" in acc.add(
        "a", {**good, "b": np.full(4, np.nan, np.float32)}, {"num_examples": 1}
    )
    assert "shape" in acc.add("b", {**good, "W": np.ones((4, 3), np.float32)}, {"num_examples": 1})
    assert "dtype" in acc.add("c", {**good, "s": np.float16(1).reshape(())}, {"num_examples": 1})
    assert "num_examples" in acc.add("d", good, {"num_examples": None})
    with pytest.raises(TooFewUpdates, match="'fedmedian' needs at least 1 valid updates"):
        strategy.aggregate(1, state, acc, {"a": "NaN"})
    assert acc.add("e", good, {"num_examples": 1}) is None
    assert acc.add("f", good, {"num_examples": 1}) is None
    assert "more replies than the 2 parties" in acc.add("g", good, {"num_examples": 1})


def test_bad_settings_name_the_field(small_job, write_job):
    with pytest.raises(ValidationError, match="beta"):
        FedMedian(beta=0.1)
    with pytest.raises(ConfigError, match=r"algorithm\.strategy\.args\.beta: unknown key"):
        build_strategy("fedmedian", {"beta": 0.1})
    path = write_job(small_job(algorithm__strategy={"name": "fedmedian", "args": {"trim": 1}}))
    with pytest.raises(ConfigError, match=r"algorithm\.strategy\.args\.trim: unknown key"):
        load_job(path)


@pytest.mark.parametrize(
    "strategy", [{"name": "fedmedian"}, {"name": "fedtrimmedavg", "args": {"beta": 0.25}}]
)
def test_coordinate_wise_jobs_run_and_learn(tmp_path, small_job, strategy):
    from consortium.jobs import bind_data

    job = small_job(algorithm__strategy=strategy)
    result = consortium.run(job, out=tmp_path / "run", quiet=True)
    assert result.ok, result.error
    assert result.rounds_completed == 3
    data = bind_data(parse_job(job))["aggregator"]
    untrained = data.model_factory().evaluate(data.test.x, data.test.y)["accuracy"]
    assert result.metrics["accuracy"] > max(0.8, untrained + 0.5)
