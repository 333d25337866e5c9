"""The public client hook: what a client receives, what it keeps, what goes back."""

from __future__ import annotations

import json

import numpy as np
import pytest

import consortium
from consortium.client import CLIENTS, FitConfig, LocalData, register_client, sgd_client
from consortium.errors import ConfigError
from consortium.jobs import bind_data, parse_job
from consortium.jobs.predict import load_model


def _records(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _model(run_dir) -> dict[str, np.ndarray]:
    return load_model(run_dir)[1]


def test_a_client_that_sends_the_model_back_unchanged_leaves_it_unchanged(tmp_path, small_job):
    seen: list[FitConfig] = []

    def idle(weights, data: LocalData, config: FitConfig, rng):
        seen.append(config)
        return dict(weights), {}

    job = small_job()
    result = consortium.run(job, out=tmp_path / "r", quiet=True, client=idle)
    assert result.ok, result.error
    initial = bind_data(parse_job(job))["aggregator"].model_factory().get_weights()
    final = _model(tmp_path / "r")
    assert final.keys() == initial.keys()
    for name, arr in initial.items():
        np.testing.assert_array_equal(final[name], arr)
    local = job["algorithm"]["local"]
    assert len(seen) == 4 * 3
    assert {(c.round, c.epochs, c.batch_size, c.lr) for c in seen} == {
        (r, local["epochs"], local["batch_size"], local["lr"]) for r in (1, 2, 3)
    }


def test_memory_is_each_partys_own_and_kept_between_rounds(tmp_path, small_job):
    def counting(weights, data, config, rng):
        config.memory["calls"] = config.memory.get("calls", 0) + 1
        return sgd_client(weights, data, config, rng)[0], {"calls": config.memory["calls"]}

    result = consortium.run(small_job(), out=tmp_path / "r", quiet=True, client=counting)
    assert result.ok, result.error
    for record in _records(tmp_path / "r"):
        calls = {p: m["train_calls"] for p, m in record["party_metrics"].items()}
        assert set(calls.values()) == {record["round"]}, calls


def test_the_strategys_instructions_and_the_clients_args_reach_the_client(tmp_path, small_job):
    got: list[FitConfig] = []

    @register_client("test_recording", force=True)
    def recording(weights, data, config, rng):
        got.append(config)
        return sgd_client(weights, data, config, rng)

    job = small_job(
        algorithm__strategy={"name": "fedprox", "args": {"mu": 0.25}},
        algorithm__client={"name": "test_recording", "args": {"momentum": 0.9}},
    )
    assert consortium.run(job, out=tmp_path / "r", quiet=True).ok
    assert {c.instructions["client"] for c in got} == {"fedprox"}
    assert {c.instructions["mu"] for c in got} == {0.25}
    assert all(c.args == {"momentum": 0.9} for c in got)
    assert "epochs" not in got[0].instructions


def test_auxiliary_tensors_reach_the_client_and_return(tmp_path, small_job):
    got: list[FitConfig] = []

    def scaffold_recording(weights, data, config, rng):
        got.append(config)
        return sgd_client(weights, data, config, rng)

    job = small_job(algorithm__strategy={"name": "scaffold"})
    result = consortium.run(job, out=tmp_path / "r", quiet=True, client=scaffold_recording)
    assert result.ok, result.error
    assert got and all(name.startswith("aux/c/") for name in got[0].aux)
    assert got[0].aux.keys() == {f"aux/c/{k}" for k in _model(tmp_path / "r")}


@pytest.mark.parametrize(
    "reply, message",
    [
        (lambda w: ({k: np.array(["x"] * 2) for k in w}, {}), "not a numeric array"),
        (lambda w: (dict(w), {"loss": "low"}), "must be a number"),
    ],
)
def test_a_bad_client_reply_fails_the_run_naming_the_party(tmp_path, small_job, reply, message):
    def bad(weights, data, config, rng):
        return reply(weights)

    result = consortium.run(small_job(), out=tmp_path / "r", quiet=True, client=bad)
    assert not result.ok
    assert "trainer-" in (result.error or "") and message in (result.error or "")


def test_an_unknown_client_is_a_config_error_listing_the_choices(small_job):
    with pytest.raises(ConfigError, match=r"algorithm\.client.*sgd"):
        parse_job(small_job(algorithm__client={"name": "nope"}))
    assert "sgd" in CLIENTS
