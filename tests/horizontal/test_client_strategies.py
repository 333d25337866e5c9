"""FedProx, SCAFFOLD and FedDyn: server rules and client rules against plain-loop oracles
over several rounds, and end-to-end runs that learn on non-IID data."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from consortium.errors import ConfigError
from consortium.horizontal import FedDyn, FedProx, Scaffold, build_strategy
from consortium.horizontal.clients import CONTROL, CONTROL_DELTA, CORRECTIONS, FitConfig
from consortium.jobs import load_job, run
from consortium.testing import needs

ROUNDS = 3


def _random(rng, n, size):
    return [rng.normal(size=size) for _ in range(n)]


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    n=st.integers(1, 5),
    eta=st.floats(0.1, 2.0),
    total=st.integers(5, 9),
)
def test_scaffold_server_matches_the_paper(seed, n, eta, total):
    rng = np.random.default_rng(seed)
    size = 3
    strategy = Scaffold(server_lr=eta, num_clients=total)
    state = strategy.init({"w": np.zeros(size), "count": np.zeros((), np.int64)})
    x, c = np.zeros(size), np.zeros(size)
    for rnd in range(1, ROUNDS + 1):
        instructions = strategy.configure(rnd, state)
        np.testing.assert_allclose(instructions.aux[CONTROL + "w"], c)
        assert instructions.config["client"] == "scaffold"
        ys, dcs = _random(rng, n, size), _random(rng, n, size)
        acc = strategy.begin(rnd, state, expected=n)
        for i in range(n):
            reply = {"w": ys[i], "count": np.array(i, np.int64), CONTROL_DELTA + "w": dcs[i]}
            assert acc.add(f"p{i}", reply, {"num_examples": 1}) is None
        state, _ = strategy.aggregate(rnd, state, acc, {})
        # oracle: plain loops
        step = [0.0] * size
        for y in ys:
            for j in range(size):
                step[j] += (y[j] - x[j]) / n
        x = np.array([x[j] + eta * step[j] for j in range(size)])
        c = np.array([c[j] + sum(d[j] for d in dcs) / total for j in range(size)])
        np.testing.assert_allclose(state.weights["w"], x, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(state.extra["c"]["w"], c, rtol=1e-9, atol=1e-12)


def test_scaffold_refuses_a_reply_without_its_control_delta():
    strategy = Scaffold()
    state = strategy.init({"w": np.zeros(2, np.float32)})
    acc = strategy.begin(1, state, expected=1)
    assert "tensor names differ" in acc.add("p", {"w": np.zeros(2, np.float32)}, {})


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    n=st.integers(1, 5),
    alpha=st.floats(0.01, 1.0),
    extra=st.integers(0, 3),
)
def test_feddyn_server_matches_the_paper(seed, n, alpha, extra):
    rng = np.random.default_rng(seed)
    size, m = 4, n + extra
    strategy = FedDyn(alpha=alpha, num_clients=m)
    state = strategy.init({"w": np.zeros(size)})
    theta, h = np.zeros(size), np.zeros(size)
    for rnd in range(1, ROUNDS + 1):
        assert strategy.configure(rnd, state).config == {"client": "feddyn", "alpha": alpha}
        models = _random(rng, n, size)
        acc = strategy.begin(rnd, state, expected=n)
        for i, w in enumerate(models):
            assert acc.add(f"p{i}", {"w": w}, {"num_examples": 3}) is None
        state, _ = strategy.aggregate(rnd, state, acc, {})
        h = h - alpha * sum(w - theta for w in models) / m
        theta = sum(models) / n - h / alpha
        np.testing.assert_allclose(state.weights["w"], theta, rtol=1e-9, atol=1e-9)


def test_fedprox_averages_like_fedavg_and_asks_for_the_proximal_term():
    strategy = FedProx(mu=0.5)
    state = strategy.init({"w": np.zeros(2)})
    assert strategy.configure(1, state).config == {"client": "fedprox", "mu": 0.5}
    acc = strategy.begin(1, state, expected=2)
    acc.add("a", {"w": np.array([1.0, 0.0])}, {"num_examples": 1})
    acc.add("b", {"w": np.array([4.0, 3.0])}, {"num_examples": 2})
    new, _ = strategy.aggregate(1, state, acc, {})
    np.testing.assert_allclose(new.weights["w"], [3.0, 2.0])


@pytest.mark.parametrize(
    ("name", "args", "field", "message"),
    [
        ("feddyn", {"alpha": 0}, "alpha", "greater than 0"),
        ("feddyn", {"num_clients": 0}, "num_clients", "greater than 0"),
        ("feddyn", {"mu": 0.1}, "mu", "unknown key"),
        ("scaffold", {"server_lr": -1.0}, "server_lr", "greater than 0"),
        ("scaffold", {"num_clients": "all"}, "num_clients", "valid integer"),
        ("scaffold", {"eta": 1.0}, "eta", "unknown key"),
        ("fedprox", {"mu": -0.5}, "mu", "greater than or equal to 0"),
    ],
)
def test_bad_settings_name_the_field(name, args, field, message):
    cls = {"feddyn": FedDyn, "scaffold": Scaffold, "fedprox": FedProx}[name]
    with pytest.raises(ValidationError, match=field):
        cls(**args)
    with pytest.raises(ConfigError, match=rf"algorithm\.strategy\.args\.{field}: .*{message}"):
        build_strategy(name, args)


@pytest.mark.parametrize(
    ("name", "args", "field"),
    [("feddyn", {"alpha": -1}, "alpha"), ("scaffold", {"num_clients": -3}, "num_clients")],
)
def test_the_job_loader_rejects_a_bad_setting(small_job, write_job, name, args, field):
    path = write_job(small_job(algorithm__strategy={"name": name, "args": args}))
    with pytest.raises(ConfigError, match=rf"algorithm\.strategy\.args\.{field}: ") as info:
        load_job(path)
    assert str(path) in str(info.value)


def test_settings_are_kept_as_given():
    dyn = FedDyn(alpha=0.5, num_clients=7)
    assert (dyn.alpha, dyn.num_clients) == (0.5, 7)
    assert (FedDyn().alpha, FedDyn().num_clients) == (0.01, None)
    scaffold = Scaffold(server_lr=0.5, num_clients=4)
    assert (scaffold.server_lr, scaffold.num_clients) == (0.5, 4)
    assert (Scaffold().server_lr, Scaffold().num_clients) == (1.0, None)


def _config(*, lr: float = 0.1, aux=None, **instructions) -> FitConfig:
    return FitConfig(
        round=1, epochs=1, batch_size=8, lr=lr, instructions=instructions, aux=aux or {}
    )


def test_scaffold_client_control_update():
    client = CORRECTIONS.get("scaffold")
    rng = np.random.default_rng(0)
    x, y, c = rng.normal(size=3), rng.normal(size=3), rng.normal(size=3)
    state: dict = {}
    config = _config(lr=0.1, aux={CONTROL + "w": c})
    correction = client.correction(state, {"w": x}, config)
    np.testing.assert_allclose(correction.shift["w"], c)  # c - c_i with c_i = 0
    out = client.after(state, {"w": x}, {"w": y}, config, {"steps": 4.0})
    expected = 0.0 - c + (x - y) / (4 * 0.1)
    np.testing.assert_allclose(out[CONTROL_DELTA + "w"], expected)
    np.testing.assert_allclose(state["c_i"]["w"], expected)
    again = client.correction(state, {"w": x}, config)
    np.testing.assert_allclose(again.shift["w"], c - expected)


def test_feddyn_client_linear_term():
    client = CORRECTIONS.get("feddyn")
    state: dict = {}
    x, y = np.array([1.0, 2.0]), np.array([3.0, 1.0])
    config = _config(alpha=0.5)
    corr = client.correction(state, {"w": x}, config)
    assert corr.mu == 0.5
    np.testing.assert_allclose(corr.shift["w"], [0.0, 0.0])
    client.after(state, {"w": x}, {"w": y}, config, {"steps": 1.0})
    np.testing.assert_allclose(state["h"]["w"], -0.5 * (y - x))
    np.testing.assert_allclose(client.correction(state, {"w": x}, config).shift["w"], 0.5 * (y - x))


@pytest.mark.parametrize(
    "strategy",
    [
        {"name": "fedprox", "args": {"mu": 0.1}},
        {"name": "scaffold", "args": {}},
        {"name": "feddyn", "args": {"alpha": 0.01}},
    ],
    ids=["fedprox", "scaffold", "feddyn"],
)
@pytest.mark.parametrize("model", ["logreg", pytest.param("mlp", marks=needs("torch"))])
def test_client_strategies_learn_on_non_iid_data(tmp_path, small_job, strategy, model):
    job = small_job(
        model={"name": model},
        algorithm__strategy=strategy,
        algorithm__rounds=5,
        data__roles__trainer={
            "split": "train",
            "partitioner": {"name": "dirichlet", "args": {"alpha": 0.5}},
        },
    )
    result = run(job, out=tmp_path / "run", quiet=True)
    assert result.ok, result.error
    assert result.metrics["accuracy"] > 0.75
