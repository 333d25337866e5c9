"""One OS process per party over gRPC on loopback: same results as in-process, and parties
that die are handled as the job says (real processes, real SIGKILL)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from consortium.jobs import load_job, run

pytestmark = pytest.mark.slow

PLUGIN = Path(__file__).with_name("faulty_plugins.py")


def _job_with_fault(small_job, write_job, fault: str, quorum: float, round_timeout: int = 120):
    job = small_job(
        plugins=["faulty_plugins"],
        model={
            "name": "faulty_logreg",
            "args": {"fault": fault, "at_call": 2, "parties": ["trainer-2"]},
        },
        algorithm__quorum=quorum,
        algorithm__round_timeout=round_timeout,
    )
    path = write_job(job)
    shutil.copy(PLUGIN, path.parent)
    return load_job(path)


def test_flagship_on_processes_gives_the_same_model_as_inproc(tmp_path, flagship):
    """In-process, over mutual TLS (the default) and over plain-text gRPC: one model."""
    quiet = ["tracking.mlflow.enabled=false", "tracking.console=false"]
    job = load_job(flagship, quiet)
    local = run(job, launcher="inproc", out=tmp_path / "inproc", quiet=True)
    remote = run(job, launcher="processes", out=tmp_path / "processes", quiet=True)
    plain_job = load_job(flagship, [*quiet, "runtime.tls.insecure=true"])
    plain = run(plain_job, launcher="processes", out=tmp_path / "plain", quiet=True)
    assert local.ok and remote.ok and plain.ok, remote.error or plain.error
    assert remote.rounds_completed == local.rounds_completed == plain.rounds_completed == 20
    for name, value in local.metrics.items():
        assert remote.metrics[name] == pytest.approx(value, abs=1e-6)
    assert plain.metrics == remote.metrics  # TLS changes how bytes travel, not which
    with (
        np.load(tmp_path / "inproc" / "model.npz") as a,
        np.load(tmp_path / "processes" / "model.npz") as b,
        np.load(tmp_path / "plain" / "model.npz") as c,
    ):
        for name in a.files:
            np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-6)
            np.testing.assert_array_equal(b[name], c[name])
    expected_logs = {"aggregator.log"} | {f"trainer-{i}.log" for i in range(10)}
    assert {p.name for p in (tmp_path / "processes" / "logs").iterdir()} == expected_logs
    for i in range(10):  # plain text is announced by every party, and only then
        assert "WITHOUT TLS" in (tmp_path / "plain" / "logs" / f"trainer-{i}.log").read_text()
        assert (
            "WITHOUT TLS" not in (tmp_path / "processes" / "logs" / f"trainer-{i}.log").read_text()
        )


def test_killed_trainer_is_a_dropout_when_the_quorum_holds(tmp_path, small_job, write_job):
    result = run(
        _job_with_fault(small_job, write_job, "kill", 0.75),
        launcher="processes",
        out=tmp_path / "run",
        quiet=True,
    )
    assert result.ok, result.error
    assert result.rounds_completed == 3
    assert "trainer-2" in result.dropouts
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert "trainer-2" in lines[0]["participants"]
    assert lines[1]["failures"] == {"trainer-2": "disconnected"}
    assert "trainer-2" not in lines[2]["participants"] and len(lines[2]["participants"]) == 3


def test_killed_trainer_without_quorum_fails_and_is_named(tmp_path, small_job, write_job):
    # The round waits until its deadline for the killed trainer to come back; it does not.
    result = run(
        _job_with_fault(small_job, write_job, "kill", 1.0, round_timeout=15),
        launcher="processes",
        out=tmp_path / "run",
        quiet=True,
    )
    assert not result.ok
    assert "trainer-2" in result.error and "quorum" in result.error
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["rounds"] == 1


def test_crashing_trainer_process_fails_the_run_and_is_named(tmp_path, small_job, write_job):
    result = run(
        _job_with_fault(small_job, write_job, "raise", 0.5),
        launcher="processes",
        out=tmp_path / "run",
        quiet=True,
    )
    assert not result.ok
    assert "trainer-2" in result.error
    assert "simulated bug in local training" in result.error
