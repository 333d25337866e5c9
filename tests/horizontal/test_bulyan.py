"""Bulyan against a plain-loop oracle of El Mhamdi, Guerraoui, Rouault (ICML 2018)."""

from __future__ import annotations

import statistics

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import consortium
from consortium.errors import ConfigError, TooFewUpdates
from consortium.horizontal import Bulyan, build_strategy
from consortium.jobs import load_job, parse_job

SHAPES = {"W": (2, 3), "b": (3,), "s": ()}


def _flat(update):
    return [float(t) for name in SHAPES for t in np.ravel(update[name])]


def _sq(a, b):
    return sum((x - y) ** 2 for x, y in zip(a, b, strict=True))


def oracle(updates, names, f):
    vectors = [_flat(u) for u in updates]
    n = len(vectors)
    theta = n - 2 * f
    remaining = list(range(n))
    chosen = []
    while len(chosen) < theta:  # Krum over what is left, again and again
        k = len(remaining) - f - 2
        best_key, best = None, None
        for i in remaining:
            dists = sorted(_sq(vectors[i], vectors[j]) for j in remaining if j != i)
            key = (sum(dists[:k]) if k > 0 else 0.0, names[i])
            if best_key is None or key < best_key:
                best_key, best = key, i
        chosen.append(best)
        remaining.remove(best)
    beta = theta - 2 * f
    out = []
    for c in range(len(vectors[0])):
        values = [vectors[i][c] for i in chosen]
        med = statistics.median(values)
        closest = sorted(values, key=lambda v: abs(v - med))[:beta]
        out.append(sum(closest) / beta)
    result, i = {}, 0
    for name, shape in SHAPES.items():
        size = int(np.prod(shape))
        result[name] = np.reshape(out[i : i + size], shape)
        i += size
    return result, chosen


def _aggregate(strategy, updates, names, order, dtype=np.float64):
    state = strategy.init({k: np.zeros(s, dtype) for k, s in SHAPES.items()})
    acc = strategy.begin(1, state, expected=len(updates))
    for i in order:
        assert acc.add(names[i], updates[i], {"num_examples": 10 + i}) is None
    return strategy.aggregate(1, state, acc, {})


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    f=st.integers(0, 2),
    extra=st.integers(0, 4),
    data=st.data(),
)
def test_bulyan_equals_the_published_rule(seed, f, extra, data):
    rng = np.random.default_rng(seed)
    n = 4 * f + 3 + extra
    n_bad = data.draw(st.integers(0, f))
    updates = []
    for i in range(n):
        scale, shift = (30.0, 10.0) if i < n_bad else (1.0, 0.0)
        updates.append({k: shift + scale * rng.normal(size=s) for k, s in SHAPES.items()})
    names = [f"t{i:02d}" for i in range(n)]
    order = data.draw(st.permutations(range(n)))
    state, metrics = _aggregate(Bulyan(byzantine=f), updates, names, order)
    expected, _ = oracle(updates, names, f)
    for name in SHAPES:
        np.testing.assert_allclose(state.weights[name], expected[name], rtol=1e-12, atol=1e-12)
    assert metrics["selected"] == n - 2 * f and metrics["kept"] == n - 4 * f
    assert metrics["examples"] == sum(10 + i for i in range(n))


def test_selection_is_recursive_krum():
    rng = np.random.default_rng(4)
    n, f = 11, 2
    updates = [{k: rng.normal(size=s) for k, s in SHAPES.items()} for _ in range(n)]
    names = [f"t{i:02d}" for i in range(n)]
    strategy = Bulyan(byzantine=f)
    state = strategy.init({k: np.zeros(s) for k, s in SHAPES.items()})
    acc = strategy.begin(1, state, expected=n)
    for i in range(n):
        acc.add(names[i], updates[i], {"num_examples": 1})
    _, chosen = oracle(updates, names, f)
    assert strategy.select(acc) == chosen


def test_with_no_byzantine_party_it_is_the_mean():
    rng = np.random.default_rng(5)
    updates = [{k: rng.normal(size=s) for k, s in SHAPES.items()} for _ in range(4)]
    state, _ = _aggregate(Bulyan(byzantine=0), updates, list("abcd"), range(4))
    for name in SHAPES:
        np.testing.assert_allclose(state.weights[name], np.mean([u[name] for u in updates], 0))


def test_attackers_cannot_drag_a_coordinate_out_of_the_honest_range():
    rng = np.random.default_rng(6)
    n, f = 11, 2
    updates = [
        {k: rng.normal(size=s).astype(np.float32) for k, s in SHAPES.items()} for _ in range(n)
    ]
    for i in range(f):
        updates[i] = {k: np.full(s, 1e5, np.float32) for k, s in SHAPES.items()}
    state, _ = _aggregate(
        Bulyan(byzantine=f), updates, [f"t{i:02d}" for i in range(n)], range(n), np.float32
    )
    for name in SHAPES:
        honest = np.stack([u[name] for u in updates[f:]])
        assert state.weights[name].dtype == np.float32
        assert np.all(state.weights[name] <= honest.max(0)) and np.all(
            state.weights[name] >= honest.min(0)
        )


def test_too_few_valid_updates_is_a_typed_error():
    strategy = Bulyan(byzantine=1)
    good = {k: np.ones(s) for k, s in SHAPES.items()}
    state = strategy.init({k: np.zeros(s) for k, s in SHAPES.items()})
    acc = strategy.begin(1, state, expected=7)
    for i in range(6):
        assert acc.add(f"t{i}", good, {"num_examples": 3}) is None
    assert "num_examples" in acc.add("t6", good, {"num_examples": "many"})
    with pytest.raises(TooFewUpdates, match="'bulyan' needs at least 7 valid updates") as info:
        strategy.aggregate(1, state, acc, {"t6": "num_examples must be a positive integer"})
    assert (info.value.needed, info.value.received) == (7, 6)
    assert "n ≥ 4f + 3 with f = 1" in str(info.value)


def test_bad_replies_are_reasons():
    strategy = Bulyan(byzantine=0)
    good = {k: np.ones(s) for k, s in SHAPES.items()}
    state = strategy.init({k: np.zeros(s) for k, s in SHAPES.items()})
    acc = strategy.begin(1, state, expected=5)
    assert "NaN or Inf" in acc.add("a", {**good, "s": np.array(np.nan)}, {"num_examples": 1})
    assert "shape" in acc.add("b", {**good, "s": np.ones(1)}, {"num_examples": 1})
    assert "dtype" in acc.add("c", {**good, "b": np.ones(3, np.int64)}, {"num_examples": 1})
    assert "unexpected ['x']" in acc.add("d", {**good, "x": np.ones(1)}, {"num_examples": 1})
    assert acc.count == 0


@pytest.mark.parametrize(
    ("args", "field"),
    [({}, "byzantine"), ({"byzantine": -2}, "byzantine"), ({"byzantine": 1, "f": 1}, "f")],
)
def test_bad_settings_name_the_field(args, field):
    with pytest.raises(ValidationError, match=field):
        Bulyan(**args)
    with pytest.raises(ConfigError, match=rf"algorithm\.strategy\.args\.{field}: "):
        build_strategy("bulyan", args)


def test_the_job_loader_rejects_a_bad_setting(small_job, write_job):
    path = write_job(small_job(algorithm__strategy={"name": "bulyan", "args": {"byzantine": 0.5}}))
    with pytest.raises(ConfigError, match=r"algorithm\.strategy\.args\.byzantine: "):
        load_job(path)


def test_bulyan_job_runs_and_learns(tmp_path, small_job):
    from consortium.jobs import bind_data

    job = small_job(
        algorithm__strategy={"name": "bulyan", "args": {"byzantine": 1}},
        topology__roles__trainer__count=7,
        algorithm__quorum=1.0,
    )
    result = consortium.run(job, out=tmp_path / "run", quiet=True)
    assert result.ok, result.error
    assert result.rounds_completed == 3
    data = bind_data(parse_job(job))["aggregator"]
    untrained = data.model_factory().evaluate(data.test.x, data.test.y)["accuracy"]
    assert result.metrics["accuracy"] > max(0.8, untrained + 0.5)
