"""FedAvgM against a plain-loop oracle of server momentum (Hsu, Qi, Brown 2019) over rounds."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import consortium
from consortium.errors import ConfigError, TooFewUpdates
from consortium.horizontal import FedAvg, FedAvgM, build_strategy
from consortium.jobs import parse_job

SHAPES = {"W": (2, 3), "b": (3,)}


def oracle(x0, rounds, lr, beta):
    """v ← βv + Δ, x ← x + ηv, one coordinate at a time; x after each round."""
    x = {k: [float(t) for t in np.ravel(a)] for k, a in x0.items()}
    v = {k: [0.0] * len(c) for k, c in x.items()}
    history = []
    for updates, counts in rounds:
        total = float(sum(counts))
        for name in x:
            for i in range(len(x[name])):
                mean = (
                    sum(
                        n * float(np.ravel(u[name])[i])
                        for u, n in zip(updates, counts, strict=True)
                    )
                    / total
                )
                v[name][i] = beta * v[name][i] + (mean - x[name][i])
                x[name][i] += lr * v[name][i]
        history.append({k: np.reshape(x[k], SHAPES[k]) for k in x})
    return history


def _run(strategy, x0, rounds):
    state = strategy.init(x0)
    out = []
    for rnd, (updates, counts) in enumerate(rounds, start=1):
        acc = strategy.begin(rnd, state, expected=len(updates))
        for i, (u, n) in enumerate(zip(updates, counts, strict=True)):
            assert acc.add(f"p{i}", u, {"num_examples": n}) is None
        state, metrics = strategy.aggregate(rnd, state, acc, {})
        assert metrics == {"examples": float(sum(counts)), "replies": float(len(counts))}
        out.append(state.weights)
    return out


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    counts=st.lists(st.integers(1, 5000), min_size=1, max_size=6),
    n_rounds=st.integers(1, 5),
    lr=st.floats(1e-3, 3.0),
    beta=st.floats(0.0, 0.999),
)
def test_equals_server_momentum_over_rounds(seed, counts, n_rounds, lr, beta):
    rng = np.random.default_rng(seed)
    x0 = {k: rng.normal(size=s) for k, s in SHAPES.items()}
    rounds = [
        ([{k: rng.normal(size=s) for k, s in SHAPES.items()} for _ in counts], counts)
        for _ in range(n_rounds)
    ]
    got = _run(FedAvgM(server_lr=lr, momentum=beta), x0, rounds)
    for g, e in zip(got, oracle(x0, rounds, lr, beta), strict=True):
        for name in SHAPES:
            np.testing.assert_allclose(g[name], e[name], rtol=1e-9, atol=1e-9)


def test_no_momentum_and_unit_rate_is_fedavg():
    rng = np.random.default_rng(0)
    x0 = {k: rng.normal(size=s).astype(np.float32) for k, s in SHAPES.items()}
    rounds = [
        (
            [{k: rng.normal(size=s).astype(np.float32) for k, s in SHAPES.items()} for _ in "abc"],
            [5, 1, 9],
        )
        for _ in range(3)
    ]
    for g, e in zip(
        _run(FedAvgM(server_lr=1.0, momentum=0.0), x0, rounds),
        _run(FedAvg(), x0, rounds),
        strict=True,
    ):
        for name in SHAPES:
            assert g[name].dtype == np.float32
            np.testing.assert_allclose(g[name], e[name], rtol=1e-6, atol=1e-6)


def test_zero_dimensional_tensors_come_back_as_arrays():
    strategy = FedAvgM()
    state = strategy.init({"s": np.zeros((), np.float32)})
    acc = strategy.begin(1, state, expected=1)
    assert acc.add("a", {"s": np.ones((), np.float32)}, {"num_examples": 1}) is None
    new, _ = strategy.aggregate(1, state, acc, {})
    assert isinstance(new.weights["s"], np.ndarray) and new.weights["s"].dtype == np.float32


def test_velocity_is_carried_in_the_state():
    strategy = FedAvgM(server_lr=0.5, momentum=0.5)
    state = strategy.init({"w": np.zeros(1)})
    for rnd in (1, 2):
        acc = strategy.begin(rnd, state, expected=1)
        assert acc.add("a", {"w": state.weights["w"] + 1.0}, {"num_examples": 1}) is None
        state, _ = strategy.aggregate(rnd, state, acc, {})
    # Δ = 1 each round: v1 = 1, x1 = 0.5; v2 = 0.5 + 1 = 1.5, x2 = 0.5 + 0.75
    np.testing.assert_allclose(state.extra["velocity"]["w"], [1.5])
    np.testing.assert_allclose(state.weights["w"], [1.25])


def test_bad_replies_are_reasons_not_crashes():
    strategy = FedAvgM()
    good = {"w": np.ones(3, np.float32)}
    state = strategy.init({"w": np.zeros(3, np.float32)})
    acc = strategy.begin(1, state, expected=4)
    assert "NaN or Inf" in acc.add(
        "a", {"w": np.array([1, np.nan, 1], np.float32)}, {"num_examples": 1}
    )
    assert "shape" in acc.add("b", {"w": np.ones(4, np.float32)}, {"num_examples": 1})
    assert "dtype" in acc.add("c", {"w": np.ones(3)}, {"num_examples": 1})
    assert "num_examples" in acc.add("d", good, {"num_examples": False})
    with pytest.raises(TooFewUpdates, match="'fedavgm' needs at least 1 valid updates"):
        strategy.aggregate(1, state, acc, {"a": "NaN"})


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"momentum": 1.0}, "momentum"),
        ({"server_lr": 0}, "server_lr"),
        ({"nesterov": True}, "nesterov"),
    ],
)
def test_bad_settings_name_the_field(args, field):
    with pytest.raises(ValidationError, match=field):
        FedAvgM(**args)
    with pytest.raises(ConfigError, match=rf"algorithm\.strategy\.args\.{field}: "):
        build_strategy("fedavgm", args)


def test_the_job_loader_rejects_a_bad_setting(small_job, write_job):
    from consortium.jobs import load_job

    path = write_job(small_job(algorithm__strategy={"name": "fedavgm", "args": {"momentum": -1}}))
    with pytest.raises(ConfigError, match=r"algorithm\.strategy\.args\.momentum: ") as info:
        load_job(path)
    assert str(path) in str(info.value)


def test_fedavgm_job_runs_and_learns(tmp_path, small_job):
    from consortium.jobs import bind_data

    job = small_job(algorithm__strategy={"name": "fedavgm", "args": {"momentum": 0.5}})
    result = consortium.run(job, out=tmp_path / "run", quiet=True)
    assert result.ok, result.error
    assert result.rounds_completed == 3
    data = bind_data(parse_job(job))["aggregator"]
    untrained = data.model_factory().evaluate(data.test.x, data.test.y)["accuracy"]
    assert result.metrics["accuracy"] > max(0.8, untrained + 0.5)
