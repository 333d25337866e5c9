"""Krum and Multi-Krum against a plain-loop oracle of Blanchard et al. (NeurIPS 2017)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import consortium
from consortium.errors import ConfigError, TooFewUpdates
from consortium.horizontal import Krum, MultiKrum, build_strategy
from consortium.horizontal.krum import pairwise_sq_distances
from consortium.jobs import load_job, parse_job

SHAPES = {"W": (3, 2), "b": (2,)}


def _flat(update):
    return [float(t) for name in SHAPES for t in np.ravel(update[name])]


def _unflat(values):
    out, i = {}, 0
    for name, shape in SHAPES.items():
        size = int(np.prod(shape))
        out[name] = np.reshape(values[i : i + size], shape)
        i += size
    return out


def oracle_scores(vectors, f):
    n = len(vectors)
    scores = []
    for i in range(n):
        dists = sorted(
            sum((a - b) ** 2 for a, b in zip(vectors[i], vectors[j], strict=True))
            for j in range(n)
            if j != i
        )
        scores.append(sum(dists[: n - f - 2]))
    return scores


def oracle_multikrum(updates, f, m):
    vectors = [_flat(u) for u in updates]
    scores = oracle_scores(vectors, f)
    best = sorted(range(len(vectors)), key=lambda i: scores[i])[:m]
    return _unflat([sum(vectors[i][c] for i in best) / m for c in range(len(vectors[0]))])


def _updates(rng, n, n_bad, dtype):
    """n updates near a common point, the first n_bad of them far off (Byzantine)."""
    centre = {k: rng.normal(size=s) for k, s in SHAPES.items()}
    out = []
    for i in range(n):
        spread = 50.0 if i < n_bad else 1.0
        shift = 20.0 if i < n_bad else 0.0
        out.append(
            {
                k: (c + shift + spread * rng.normal(size=c.shape)).astype(dtype)
                for k, c in centre.items()
            }
        )
    return out


def _aggregate(strategy, updates, counts, order):
    like = {k: np.zeros(s, updates[0][k].dtype) for k, s in SHAPES.items()}
    state = strategy.init(like)
    acc = strategy.begin(1, state, expected=len(updates))
    for i in order:
        assert acc.add(f"p{i:02d}", updates[i], {"num_examples": counts[i]}) is None
    return strategy.aggregate(1, state, acc, {})


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    f=st.integers(0, 3),
    extra=st.integers(0, 5),
    data=st.data(),
)
def test_krum_picks_the_update_the_oracle_picks(seed, f, extra, data):
    rng = np.random.default_rng(seed)
    n = 2 * f + 3 + extra
    n_bad = data.draw(st.integers(0, f))
    updates = _updates(rng, n, n_bad, np.float64)
    counts = data.draw(st.lists(st.integers(1, 1000), min_size=n, max_size=n))
    order = data.draw(st.permutations(range(n)))
    state, metrics = _aggregate(Krum(byzantine=f), updates, counts, order)
    expected = oracle_multikrum(updates, f, 1)
    for name in SHAPES:
        np.testing.assert_array_equal(state.weights[name], expected[name])
    assert metrics["replies"] == n and metrics["examples"] == sum(counts)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    f=st.integers(0, 3),
    extra=st.integers(0, 5),
    data=st.data(),
)
def test_multikrum_averages_the_m_best_plainly(seed, f, extra, data):
    rng = np.random.default_rng(seed)
    n = 2 * f + 3 + extra
    keep = data.draw(st.none() | st.integers(1, n))
    updates = _updates(rng, n, data.draw(st.integers(0, f)), np.float64)
    counts = data.draw(st.lists(st.integers(1, 1000), min_size=n, max_size=n))
    order = data.draw(st.permutations(range(n)))
    args = {"byzantine": f} if keep is None else {"byzantine": f, "keep": keep}
    state, metrics = _aggregate(MultiKrum(**args), updates, counts, order)
    m = n - f if keep is None else keep
    expected = oracle_multikrum(updates, f, m)
    for name in SHAPES:
        np.testing.assert_allclose(state.weights[name], expected[name], rtol=1e-12, atol=1e-12)
    assert metrics["selected"] == m


def test_arrival_order_does_not_change_the_result():
    rng = np.random.default_rng(1)
    updates = _updates(rng, 9, 2, np.float32)
    counts = [5] * 9
    first, _ = _aggregate(MultiKrum(byzantine=2), updates, counts, list(range(9)))
    again, _ = _aggregate(MultiKrum(byzantine=2), updates, counts, list(reversed(range(9))))
    for name in SHAPES:
        assert first.weights[name].dtype == np.float32
        np.testing.assert_array_equal(first.weights[name], again.weights[name])


def test_byzantine_updates_are_never_chosen():
    rng = np.random.default_rng(2)
    n, f = 11, 3
    updates = _updates(rng, n, 0, np.float64)
    for i in range(f):  # three colluding attackers, all sending the same huge vector
        updates[i] = {k: np.full(s, 1e6) for k, s in SHAPES.items()}
    krum, _ = _aggregate(Krum(byzantine=f), updates, [1] * n, range(n))
    honest = [_flat(u) for u in updates[f:]]
    assert _flat(krum.weights) in honest
    multi, _ = _aggregate(MultiKrum(byzantine=f), updates, [1] * n, range(n))
    assert max(abs(v) for v in _flat(multi.weights)) < 10


def test_distances_stay_exact_for_close_updates_far_from_zero():
    rng = np.random.default_rng(0)
    rows = 1e4 + 1e-3 * rng.normal(size=(6, 1000))
    rows[0] += 1e3  # and one far away
    got = pairwise_sq_distances(rows)
    for i in range(6):
        for j in range(6):
            want = sum((a - b) ** 2 for a, b in zip(rows[i], rows[j], strict=True))
            assert got[i, j] == pytest.approx(want, rel=1e-6, abs=1e-12)


@pytest.mark.parametrize(("cls", "name"), [(Krum, "krum"), (MultiKrum, "multikrum")])
def test_too_few_valid_updates_is_a_typed_error(cls, name):
    strategy = cls(byzantine=1)
    ones = {k: np.ones(s) for k, s in SHAPES.items()}
    state = strategy.init({k: np.zeros(s) for k, s in SHAPES.items()})
    acc = strategy.begin(1, state, expected=5)
    for i in range(4):
        assert acc.add(f"p{i}", ones, {"num_examples": 1}) is None
    bad = {**ones, "b": np.array([np.nan, 1.0])}
    reason = acc.add("p4", bad, {"num_examples": 1})
    assert "NaN" in reason
    with pytest.raises(TooFewUpdates, match=f"'{name}' needs at least 5 valid updates") as info:
        strategy.aggregate(1, state, acc, {"p4": reason})
    assert (info.value.needed, info.value.received, info.value.strategy) == (5, 4, name)
    assert "n > 2f + 2 with f = 1" in str(info.value) and "p4: " in str(info.value)
    assert "algorithm.strategy.args.byzantine" in str(info.value)


def test_multikrum_needs_at_least_m_updates():
    strategy = MultiKrum(byzantine=0, keep=4)
    state = strategy.init({k: np.zeros(s) for k, s in SHAPES.items()})
    acc = strategy.begin(1, state, expected=3)
    for i in range(3):
        assert (
            acc.add(f"p{i}", {k: np.ones(s) for k, s in SHAPES.items()}, {"num_examples": 1})
            is None
        )
    with pytest.raises(TooFewUpdates, match="needs at least 4 valid updates"):
        strategy.aggregate(1, state, acc, {})


def test_bad_replies_are_reasons_and_the_round_is_bounded():
    strategy = Krum(byzantine=0)
    good = {k: np.ones(s, np.float32) for k, s in SHAPES.items()}
    state = strategy.init({k: np.zeros(s, np.float32) for k, s in SHAPES.items()})
    acc = strategy.begin(1, state, expected=3)
    assert "dtype" in acc.add("a", {**good, "b": np.ones(2)}, {"num_examples": 1})
    assert "shape" in acc.add("b", {**good, "b": np.ones(3, np.float32)}, {"num_examples": 1})
    assert "NaN or Inf" in acc.add(
        "c", {**good, "b": np.array([np.inf, 0], np.float32)}, {"num_examples": 1}
    )
    assert "num_examples" in acc.add("d", good, {"num_examples": 0})
    for p in "efg":
        assert acc.add(p, good, {"num_examples": 1}) is None
    assert "more replies than the 3 parties" in acc.add("h", good, {"num_examples": 1})
    with pytest.raises(ValueError, match="expected="):
        strategy.begin(1, state)


@pytest.mark.parametrize(
    ("name", "args", "field", "message"),
    [
        ("krum", {}, "byzantine", "Field required"),
        ("krum", {"byzantine": -1}, "byzantine", "greater than or equal to 0"),
        ("krum", {"byzantine": 1, "keep": 2}, "keep", "unknown key"),
        ("multikrum", {"byzantine": 1, "keep": 0}, "keep", "greater than 0"),
        ("multikrum", {"byzantine": "one"}, "byzantine", "valid integer"),
    ],
)
def test_bad_settings_name_the_field(name, args, field, message):
    cls = {"krum": Krum, "multikrum": MultiKrum}[name]
    with pytest.raises(ValidationError, match=field):
        cls(**args)
    with pytest.raises(ConfigError, match=rf"algorithm\.strategy\.args\.{field}: .*{message}"):
        build_strategy(name, args)


def test_the_job_loader_rejects_a_bad_setting(small_job, write_job):
    path = write_job(small_job(algorithm__strategy={"name": "krum"}))
    with pytest.raises(ConfigError, match=r"algorithm\.strategy\.args\.byzantine: Field required"):
        load_job(path)
    assert parse_job(
        small_job(
            topology__roles__trainer__count=5,
            algorithm__quorum=1.0,
            algorithm__strategy={"name": "krum", "args": {"byzantine": 1}},
        )
    )


@pytest.mark.parametrize("name", ["krum", "multikrum"])
def test_krum_job_runs_and_learns(tmp_path, small_job, name):
    from consortium.jobs import bind_data

    job = small_job(
        algorithm__strategy={"name": name, "args": {"byzantine": 1}},
        algorithm__quorum=1.0,
        topology__roles__trainer__count=5,
    )
    result = consortium.run(job, out=tmp_path / "run", quiet=True)
    assert result.ok, result.error
    assert result.rounds_completed == 3
    data = bind_data(parse_job(job))["aggregator"]
    untrained = data.model_factory().evaluate(data.test.x, data.test.y)["accuracy"]
    assert result.metrics["accuracy"] > max(0.8, untrained + 0.5)
