"""A run cut off after some rounds goes on from its checkpoint to the model an uninterrupted
run makes, bit for bit; a checkpoint is used only by the job that wrote it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from consortium.errors import ConfigError
from consortium.jobs import load_job, run

PLUGIN = Path(__file__).with_name("faulty_plugins.py")
CRASH = "CONSORTIUM_TEST_CRASH"  # the faulty model raises while this is set


@pytest.fixture
def job_path(small_job, write_job):
    job = small_job(
        plugins=["faulty_plugins"],
        model={
            "name": "faulty_logreg",
            "args": {"fault": "raise", "at_call": 4, "only_if_env": CRASH},
        },
        algorithm__rounds=6,
        algorithm__strategy={"name": "fedadam", "args": {"server_lr": 0.05}},  # server state
    )
    path = write_job(job)
    shutil.copy(PLUGIN, path.parent)
    return path


def _model(run_dir: Path) -> dict[str, np.ndarray]:
    with np.load(run_dir / "model.npz", allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def test_a_failed_run_resumes_to_the_uninterrupted_model(tmp_path, job_path, monkeypatch):
    whole = run(load_job(job_path), out=tmp_path / "whole", quiet=True)
    assert whole.ok, whole.error

    monkeypatch.setenv(CRASH, "1")
    cut = run(load_job(job_path), out=tmp_path / "cut", quiet=True)
    assert not cut.ok and "simulated bug" in cut.error
    assert cut.rounds_completed == 3
    monkeypatch.delenv(CRASH)

    resumed = run(load_job(job_path), out=tmp_path / "cut", quiet=True, resume=True)
    assert resumed.ok, resumed.error
    assert resumed.rounds_completed == 6
    assert resumed.metrics == whole.metrics
    expected, got = _model(tmp_path / "whole"), _model(tmp_path / "cut")
    assert list(got) == list(expected)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name])
    rounds = [json.loads(x)["round"] for x in (tmp_path / "cut" / "metrics.jsonl").open()]
    assert rounds == [1, 2, 3, 4, 5, 6]
    events = [json.loads(x) for x in (tmp_path / "cut" / "events.jsonl").open()]
    assert any(e["event"] == "resumed" and e["fields"] == {"after_round": 3} for e in events)
    summary = json.loads((tmp_path / "cut" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["rounds"] == 6


def test_resuming_a_finished_run_runs_no_round_and_keeps_its_model(tmp_path, job_path):
    first = run(load_job(job_path), out=tmp_path / "run", quiet=True)
    before = _model(tmp_path / "run")
    again = run(load_job(job_path), out=tmp_path / "run", quiet=True, resume=True)
    assert again.ok and again.metrics == first.metrics
    for name, array in _model(tmp_path / "run").items():
        np.testing.assert_array_equal(array, before[name])


def test_a_checkpoint_serves_only_the_job_that_wrote_it(tmp_path, job_path):
    assert run(load_job(job_path), out=tmp_path / "run", quiet=True).ok
    other = load_job(job_path, ["algorithm.local.lr=0.01"])
    with pytest.raises(ConfigError, match="checkpoint.npz: the checkpoint is of another job"):
        run(other, out=tmp_path / "run", quiet=True, resume=True)


def test_resuming_needs_a_checkpoint(tmp_path, job_path):
    with pytest.raises(ConfigError, match="checkpoint.npz: no checkpoint to resume from"):
        run(load_job(job_path), out=tmp_path / "empty", quiet=True, resume=True)
    with pytest.raises(ConfigError, match="give its run directory"):
        run(load_job(job_path), quiet=True, resume=True)
