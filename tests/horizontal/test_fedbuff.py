"""FedBuff: the server step against a plain-loop oracle, and asynchronous runs end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from consortium.errors import ConfigError
from consortium.horizontal import FedBuff, ServerState, build_strategy
from consortium.horizontal.fedbuff import STALENESS
from consortium.jobs import load_job, run

SLOW_PLUGIN = Path(__file__).with_name("slow_plugins.py")


def _oracle(x, deltas, staleness, server_lr, rule, exponent, bound):
    kept = [(d, s) for d, s in zip(deltas, staleness, strict=True) if s <= bound]
    if not kept:
        return list(x), 0
    total = [0.0] * len(x)
    for d, s in kept:
        w = 1.0 if rule == "constant" else (1.0 + s) ** -exponent
        for i, v in enumerate(d):
            total[i] += w * float(v)
    return [xi + server_lr * t / len(kept) for xi, t in zip(x, total, strict=True)], len(kept)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 6),
    size=st.integers(1, 5),
    server_lr=st.floats(0.1, 2.0),
    rule=st.sampled_from(["polynomial", "constant"]),
    exponent=st.floats(0.0, 2.0),
    bound=st.integers(0, 4),
    seed=st.integers(0, 2**31),
)
def test_server_step_matches_the_paper(n, size, server_lr, rule, exponent, bound, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=size)
    deltas = [rng.normal(size=size) for _ in range(n)]
    staleness = [int(s) for s in rng.integers(0, 6, size=n)]
    strategy = FedBuff(
        buffer_size=n, server_lr=server_lr, staleness=rule, exponent=exponent, max_staleness=bound
    )
    state = ServerState(round=3, weights={"w": x})
    acc = strategy.begin(4, state)
    refused = {}
    for i, (d, s) in enumerate(zip(deltas, staleness, strict=True)):
        reason = acc.add(f"p{i}", {"w": d}, {STALENESS: s, "num_examples": 1})
        if reason is not None:
            refused[f"p{i}"] = reason
    expected, kept = _oracle(x, deltas, staleness, server_lr, rule, exponent, bound)
    assert len(refused) == n - kept
    assert all("stale update" in r for r in refused.values())
    assert strategy.ready(acc) == (kept == n)
    new, metrics = strategy.aggregate(4, state, acc, refused)
    if kept == 0:
        np.testing.assert_array_equal(new.weights["w"], x)
    else:
        np.testing.assert_allclose(new.weights["w"], expected, rtol=1e-9, atol=1e-12)
        assert metrics["updates"] == kept
    assert new.round == 4


def test_bad_replies_are_refused_not_raised():
    strategy = FedBuff(buffer_size=2)
    state = ServerState(round=0, weights={"w": np.zeros(3, np.float32)})
    acc = strategy.begin(1, state)
    assert "shape" in acc.add("a", {"w": np.zeros(4, np.float32)}, {STALENESS: 0})
    assert "NaN" in acc.add("b", {"w": np.full(3, np.nan, np.float32)}, {STALENESS: 0})
    assert "staleness" in acc.add("c", {"w": np.zeros(3, np.float32)}, {})
    assert acc.count == 0 and not strategy.ready(acc)


def test_it_declares_the_async_schedule_and_its_concurrency():
    assert FedBuff.schedule == "async"
    assert FedBuff().concurrency() is None  # every trainer
    assert FedBuff(concurrency=3).concurrency() == 3
    assert FedBuff().minimum_updates() == 1


@pytest.mark.parametrize(
    ("args", "field", "message"),
    [
        ({"buffer_size": 0}, "buffer_size", "greater than 0"),
        ({"max_staleness": -1}, "max_staleness", "greater than or equal to 0"),
        ({"concurrency": 0}, "concurrency", "greater than 0"),
        ({"staleness": "linear"}, "staleness", "'polynomial' or 'constant'"),
        ({"exponent": -0.5}, "exponent", "greater than or equal to 0"),
        ({"bufer": 3}, "bufer", "unknown key"),
    ],
)
def test_bad_settings_name_the_field(small_job, write_job, args, field, message):
    with pytest.raises(ValidationError, match=field):
        FedBuff(**args)
    with pytest.raises(ConfigError, match=rf"algorithm\.strategy\.args\.{field}: .*{message}"):
        build_strategy("fedbuff", args)
    job = small_job(algorithm__strategy={"name": "fedbuff", "args": args})
    with pytest.raises(ConfigError, match=rf"algorithm\.strategy\.args\.{field}: "):
        load_job(write_job(job))


def _async_job(small_job: Any, workers: int = 1, **args: Any) -> dict[str, Any]:
    return small_job(
        runtime__workers=workers,
        topology__roles__trainer__count=6,
        algorithm__rounds=6,
        algorithm__strategy={
            "name": "fedbuff",
            "args": {"buffer_size": 3, "max_staleness": 3, **args},
        },
    )


# One worker: the trainers still training when the last step is taken run only after the
# hub has left, and must stop quietly rather than crash answering it.
@pytest.mark.parametrize("workers", [1, 2])
def test_async_run_in_process_records_staleness_and_learns(tmp_path, small_job, workers):
    result = run(_async_job(small_job, workers), out=tmp_path / "run", quiet=True)
    assert result.ok, result.error
    assert result.rounds_completed == 6
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [line["round"] for line in lines] == [1, 2, 3, 4, 5, 6]
    assert all(len(line["participants"]) == 3 for line in lines)
    # Six trainers at once, three updates per step: half of each step's updates were
    # trained on the model before the last step.
    assert max(line["metrics"]["staleness_max"] for line in lines) >= 1
    staleness = [m[STALENESS] for line in lines for m in line["party_metrics"].values()]
    assert set(staleness) <= {0.0, 1.0, 2.0, 3.0}
    assert result.metrics["accuracy"] > 0.8


@pytest.mark.slow
def test_async_run_on_processes_with_a_slow_trainer(tmp_path, small_job, write_job):
    job = _async_job(small_job, max_staleness=20)
    job["plugins"] = ["slow_plugins"]
    job["model"] = {"name": "slow_logreg", "args": {"factor": 30, "parties": ["trainer-0"]}}
    path = write_job(job)
    shutil.copy(SLOW_PLUGIN, path.parent)
    result = run(load_job(path), launcher="processes", out=tmp_path / "run", quiet=True)
    assert result.ok, result.error
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 6
    counts = {}
    for line in lines:
        for party in line["participants"]:
            counts[party] = counts.get(party, 0) + 1
    # The slow trainer contributes less often than the fast ones, and staler.
    fast = [counts.get(f"trainer-{i}", 0) for i in range(1, 6)]
    assert counts.get("trainer-0", 0) < max(fast)
    assert result.metrics["accuracy"] > 0.8
