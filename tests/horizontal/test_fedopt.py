"""FedAdagrad, FedAdam and FedYogi against a plain-loop oracle of Reddi et al. (ICLR 2021),
Algorithm 2, over several consecutive rounds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import consortium
from consortium.errors import ConfigError, TooFewUpdates
from consortium.horizontal import FedAdagrad, FedAdam, FedYogi, build_strategy
from consortium.jobs import parse_job

SHAPES = {"W": (3, 2), "b": (2,), "s": ()}
CLASSES = {"fedadagrad": FedAdagrad, "fedadam": FedAdam, "fedyogi": FedYogi}


def _sign(x: float) -> float:
    return 1.0 if x > 0 else -1.0 if x < 0 else 0.0


def oracle(kind, x0, rounds, lr, beta1, beta2, tau):
    """Algorithm 2 one coordinate at a time, in Python floats; returns x after each round."""
    x = {k: [float(t) for t in np.ravel(a)] for k, a in x0.items()}
    m = {k: [0.0] * len(v) for k, v in x.items()}
    v = {k: [tau * tau] * len(v) for k, v in x.items()}
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
                d = mean - x[name][i]
                m[name][i] = beta1 * m[name][i] + (1 - beta1) * d
                if kind == "fedadagrad":
                    v[name][i] = v[name][i] + d * d
                elif kind == "fedadam":
                    v[name][i] = beta2 * v[name][i] + (1 - beta2) * d * d
                else:
                    v[name][i] = v[name][i] - (1 - beta2) * d * d * _sign(v[name][i] - d * d)
                x[name][i] = x[name][i] + lr * m[name][i] / (math.sqrt(v[name][i]) + tau)
        history.append({k: np.reshape(x[k], SHAPES[k]) for k in x})
    return history


def _run(strategy, x0, rounds):
    state = strategy.init(x0)
    out = []
    for rnd, (updates, counts) in enumerate(rounds, start=1):
        acc = strategy.begin(rnd, state, expected=len(updates))
        for i, (u, n) in enumerate(zip(updates, counts, strict=True)):
            assert acc.add(f"p{i}", u, {"num_examples": n}) is None
        before = {k: {n: a.copy() for n, a in d.items()} for k, d in state.extra.items()}
        new, metrics = strategy.aggregate(rnd, state, acc, {})
        # pure: the previous state is left as it was
        for k, d in before.items():
            for n, a in d.items():
                np.testing.assert_array_equal(state.extra[k][n], a)
        assert new.round == rnd
        assert metrics == {"examples": float(sum(counts)), "replies": float(len(counts))}
        state = new
        out.append(state.weights)
    return out


def _rounds(rng, counts, n_rounds, dtype, scale):
    return [
        (
            [
                {k: (scale * rng.normal(size=s)).astype(dtype) for k, s in SHAPES.items()}
                for _ in counts
            ],
            counts,
        )
        for _ in range(n_rounds)
    ]


@settings(max_examples=40, deadline=None)
@given(
    kind=st.sampled_from(sorted(CLASSES)),
    seed=st.integers(0, 2**32 - 1),
    counts=st.lists(st.integers(1, 5000), min_size=1, max_size=6),
    n_rounds=st.integers(1, 4),
    lr=st.floats(1e-3, 2.0),
    beta1=st.floats(0.0, 0.99),
    beta2=st.floats(0.0, 0.999),
    log_tau=st.floats(-6, 0),
)
def test_equals_algorithm_2_over_rounds(kind, seed, counts, n_rounds, lr, beta1, beta2, log_tau):
    tau = 10.0**log_tau
    rng = np.random.default_rng(seed)
    x0 = {k: rng.normal(size=s) for k, s in SHAPES.items()}
    rounds = _rounds(rng, counts, n_rounds, np.float64, 1.0)
    args = {"server_lr": lr, "beta1": beta1, "tau": tau}
    if kind != "fedadagrad":
        args["beta2"] = beta2
    got = _run(CLASSES[kind](**args), x0, rounds)
    expected = oracle(kind, x0, rounds, lr, beta1, beta2, tau)
    for g, e in zip(got, expected, strict=True):
        for name in SHAPES:
            assert g[name].dtype == np.float64
            np.testing.assert_allclose(g[name], e[name], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kind", sorted(CLASSES))
def test_float32_models_keep_their_dtype_and_track_the_oracle(kind):
    rng = np.random.default_rng(3)
    x0 = {k: rng.normal(size=s).astype(np.float32) for k, s in SHAPES.items()}
    rounds = _rounds(rng, [3, 10, 7], 5, np.float32, 0.5)
    got = _run(CLASSES[kind](), x0, rounds)
    expected = oracle(kind, x0, rounds, 0.1, 0.9, 0.99, 1e-3)
    for g, e in zip(got, expected, strict=True):
        for name in SHAPES:
            assert g[name].dtype == np.float32
            np.testing.assert_allclose(g[name], e[name], rtol=1e-4, atol=1e-5)


def test_defaults_are_the_papers():
    adam = FedAdam()
    assert (adam.server_lr, adam.beta1, adam.beta2, adam.tau) == (0.1, 0.9, 0.99, 1e-3)
    yogi = FedYogi()
    assert (yogi.server_lr, yogi.beta1, yogi.beta2, yogi.tau) == (0.1, 0.9, 0.99, 1e-3)
    adagrad = FedAdagrad()
    assert (adagrad.server_lr, adagrad.beta1, adagrad.tau) == (0.1, 0.9, 1e-3)
    state = FedAdagrad().init({"w": np.zeros(2)})
    np.testing.assert_array_equal(state.extra["v"]["w"], [1e-6, 1e-6])  # v_{-1} = τ²
    np.testing.assert_array_equal(state.extra["m"]["w"], [0.0, 0.0])


@pytest.mark.parametrize("kind", sorted(CLASSES))
def test_zero_dimensional_tensors_come_back_as_arrays(kind):
    strategy = CLASSES[kind]()
    state = strategy.init({"s": np.zeros((), np.float32), "n": np.zeros((), np.int64)})
    acc = strategy.begin(1, state, expected=1)
    reply = {"s": np.ones((), np.float32), "n": np.full((), 4, np.int64)}
    assert acc.add("a", reply, {"num_examples": 1}) is None
    new, _ = strategy.aggregate(1, state, acc, {})
    for name, dtype in (("s", np.float32), ("n", np.int64)):
        assert isinstance(new.weights[name], np.ndarray) and new.weights[name].shape == ()
        assert new.weights[name].dtype == dtype


def test_integer_tensors_take_the_weighted_mean():
    strategy = FedAdam()
    x0 = {"w": np.zeros(2), "steps": np.array([10, 20], np.int64)}
    state = strategy.init(x0)
    assert set(state.extra["m"]) == {"w"}
    acc = strategy.begin(1, state, expected=2)
    assert acc.add("a", {"w": np.ones(2), "steps": np.array([12, 22])}, {"num_examples": 1}) is None
    assert acc.add("b", {"w": np.ones(2), "steps": np.array([14, 26])}, {"num_examples": 3}) is None
    new, _ = strategy.aggregate(1, state, acc, {})
    np.testing.assert_array_equal(new.weights["steps"], [13, 25])
    assert new.weights["steps"].dtype == np.int64


@pytest.mark.parametrize("kind", sorted(CLASSES))
def test_bad_replies_are_reasons_and_leave_the_round_intact(kind):
    strategy = CLASSES[kind]()
    good = {"W": np.ones((3, 2)), "b": np.ones(2), "s": np.float64(1).reshape(())}
    state = strategy.init({k: np.zeros_like(v) for k, v in good.items()})
    acc = strategy.begin(1, state, expected=8)
    assert "NaN or Inf" in acc.add("a", {**good, "b": np.array([1, np.inf])}, {"num_examples": 5})
    assert "shape" in acc.add("b", {**good, "W": np.ones((2, 3))}, {"num_examples": 5})
    assert "dtype" in acc.add("c", {**good, "W": np.ones((3, 2), np.float32)}, {"num_examples": 5})
    assert "missing ['s']" in acc.add("d", {"W": good["W"], "b": good["b"]}, {"num_examples": 5})
    assert "num_examples" in acc.add("e", good, {"num_examples": -1})
    assert "num_examples" in acc.add("f", good, {"num_examples": 2.5})
    assert "num_examples" in acc.add("g", good, {})
    with pytest.raises(TooFewUpdates, match=f"'{kind}' needs at least 1 valid updates"):
        strategy.aggregate(1, state, acc, {"a": "NaN"})
    assert acc.add("h", good, {"num_examples": 2}) is None
    new, metrics = strategy.aggregate(1, state, acc, {})
    assert metrics["replies"] == 1.0
    # one reply of all-ones from zero: Δ = 1 everywhere, so every coordinate moves the same
    w = new.weights["W"]
    assert np.all(w > 0) and np.allclose(w, w.flat[0])


@pytest.mark.parametrize(
    ("name", "args", "field"),
    [
        ("fedadam", {"beta1": 1.0}, "beta1"),
        ("fedadam", {"beta2": -0.1}, "beta2"),
        ("fedyogi", {"tau": 0}, "tau"),
        ("fedyogi", {"server_lr": -1}, "server_lr"),
        ("fedadagrad", {"beta2": 0.9}, "beta2"),  # Adagrad has no β2
        ("fedadam", {"learning_rate": 0.1}, "learning_rate"),
    ],
)
def test_bad_settings_name_the_field(name, args, field):
    with pytest.raises(ValidationError, match=field):
        CLASSES[name](**args)
    with pytest.raises(ConfigError, match=rf"algorithm\.strategy\.args\.{field}: "):
        build_strategy(name, args)


def test_the_job_loader_rejects_a_bad_setting(small_job, write_job):
    from consortium.jobs import load_job

    job = small_job(algorithm__strategy={"name": "fedyogi", "args": {"beta2": 1.5}})
    with pytest.raises(ConfigError, match=r"algorithm\.strategy\.args\.beta2: Input should be"):
        parse_job(job)
    path = write_job(job)
    with pytest.raises(ConfigError, match="algorithm.strategy.args.beta2") as info:
        load_job(path)
    assert str(path) in str(info.value)


def test_fedadam_job_runs_and_learns(tmp_path, small_job):
    from consortium.jobs import bind_data

    job = small_job(algorithm__strategy={"name": "fedadam"}, algorithm__rounds=4)
    loaded = parse_job(job)
    result = consortium.run(job, out=tmp_path / "run", quiet=True)
    assert result.ok, result.error
    assert result.rounds_completed == 4
    data = bind_data(loaded)["aggregator"]
    untrained = data.model_factory().evaluate(data.test.x, data.test.y)["accuracy"]
    assert result.metrics["accuracy"] > max(0.8, untrained + 0.5)
