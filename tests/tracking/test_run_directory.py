"""The run directory holds every result of a run, also when the run fails."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml

from consortium.errors import ConfigError, ConsortiumError
from consortium.testing import needs
from consortium.tracking import (
    PLOT_MISSING,
    RoundRecord,
    RunDirectory,
    RunInfo,
    RunSummary,
    Tracker,
)
from consortium.tracking.records import read_metrics

from .conftest import make_record

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_tracker(run_dir: Path) -> Tracker:
    return Tracker(required=[RunDirectory(path=run_dir, wall_clock=lambda: 1000.0)])


@needs("matplotlib")
def test_completed_run_writes_every_file(
    run_dir: Path,
    info: RunInfo,
    record: Callable[[int], RoundRecord],
    summary: RunSummary,
    model: dict[str, np.ndarray],
) -> None:
    records = [record(n) for n in (1, 2, 3)]
    with run_tracker(run_dir) as tracker:
        tracker.start(info)
        for r in records:
            tracker.round(r)
        tracker.event("dropout", party="bank-2", round=2, reason="timeout")
        tracker.finish(summary, model)

    assert yaml.safe_load((run_dir / "job.yaml").read_text()) == info.resolved_job

    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {
            "round": r.round,
            "metrics": dict(r.metrics),
            "party_metrics": {p: dict(m) for p, m in r.party_metrics.items()},
            "participants": list(r.participants),
            "failures": dict(r.failures),
            "duration_s": r.duration_s,
        }
        for r in records
    ]

    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert events == [
        {
            "time": 1000.0,
            "event": "dropout",
            "fields": {"party": "bank-2", "round": 2, "reason": "timeout"},
        }
    ]

    assert json.loads((run_dir / "summary.json").read_text()) == {
        "run_id": info.run_id,
        "job": info.job_name,
        "job_hash": info.job_hash,
        "status": "completed",
        "metrics": {"accuracy": 0.875, "loss": 0.3125},
        "rounds": 3,
        "duration_s": 12.5,
        "dropouts": {"bank-2": "timeout"},
        "error": None,
    }

    with np.load(run_dir / "model.npz", allow_pickle=False) as saved:
        assert sorted(saved.files) == sorted(model)
        for name, array in model.items():
            assert saved[name].dtype == array.dtype
            np.testing.assert_array_equal(saved[name], array)

    assert (run_dir / "curves.png").read_bytes().startswith(PNG_MAGIC)
    assert not list(run_dir.glob(".*.tmp"))


@needs("matplotlib")
def test_failed_run_keeps_finished_rounds(
    run_dir: Path, info: RunInfo, record: Callable[[int], RoundRecord]
) -> None:
    with pytest.raises(RuntimeError, match="party bank-1 crashed"), run_tracker(run_dir) as tracker:
        tracker.start(info)
        tracker.round(record(1))
        tracker.round(record(2))
        raise RuntimeError("party bank-1 crashed")

    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["round"] for line in lines] == [1, 2]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed"
    assert summary["rounds"] == 2
    assert summary["error"] == "RuntimeError: party bank-1 crashed"
    assert summary["metrics"] == dict(record(2).metrics)
    assert summary["dropouts"] == {"bank-2": "timeout"}
    assert not (run_dir / "model.npz").exists()
    assert (run_dir / "curves.png").read_bytes().startswith(PNG_MAGIC)


def test_explicit_failed_summary_is_written(
    run_dir: Path, info: RunInfo, record: Callable[[int], RoundRecord]
) -> None:
    failed = RunSummary(
        status="failed",
        metrics={},
        rounds_completed=1,
        duration_s=3.0,
        dropouts={},
        error="quorum lost: bank-2 missing",
    )
    with run_tracker(run_dir) as tracker:
        tracker.start(info)
        tracker.round(record(1))
        tracker.finish(failed)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["status"], summary["rounds"], summary["error"]) == (
        "failed",
        1,
        "quorum lost: bank-2 missing",
    )


def test_rounds_are_on_disk_before_the_run_ends(
    run_dir: Path, info: RunInfo, record: Callable[[int], RoundRecord]
) -> None:
    tracker = run_tracker(run_dir)
    tracker.start(info)
    tracker.round(record(1))
    # Read while the file is still open for writing: the line was flushed.
    assert json.loads((run_dir / "metrics.jsonl").read_text())["round"] == 1
    tracker.close()


def test_run_directory_failure_propagates(
    tmp_path: Path, info: RunInfo, record: Callable[[int], RoundRecord]
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    tracker = Tracker(required=[RunDirectory(path=blocker / "run")])
    wrong = dataclasses.replace(info, run_dir=blocker / "run")
    with pytest.raises(OSError):
        tracker.start(wrong)


def test_an_existing_run_is_not_overwritten(
    run_dir: Path, info: RunInfo, summary: RunSummary
) -> None:
    with run_tracker(run_dir) as tracker:
        tracker.start(info)
        tracker.finish(summary)
    before = (run_dir / "summary.json").read_bytes()
    with pytest.raises(ConfigError, match="already holds a run"), run_tracker(run_dir) as again:
        again.start(info)
    assert (run_dir / "summary.json").read_bytes() == before


def test_run_dir_must_match_run_info(tmp_path: Path, info: RunInfo) -> None:
    sink = RunDirectory(path=tmp_path / "elsewhere")
    with pytest.raises(ConfigError, match="differs"):
        sink.start(info)


def test_a_model_that_cannot_be_saved_still_leaves_a_summary(
    run_dir: Path, info: RunInfo, summary: RunSummary
) -> None:
    tracker = run_tracker(run_dir)
    tracker.start(info)
    with pytest.raises(ConsortiumError, match="never pickled"):
        tracker.finish(summary, {"w": np.array([object()], dtype=object)})
    tracker.close()
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"
    assert not (run_dir / "model.npz").exists()


# `import matplotlib` fails in this interpreter, as where the plot extra is not installed
WITHOUT_MATPLOTLIB = """
import logging, sys
sys.modules["matplotlib"] = None
logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
from pathlib import Path
from consortium.tracking import RoundRecord, RunDirectory, RunInfo, RunSummary, Tracker
run_dir = Path(sys.argv[1])
info = RunInfo(run_id="r1", job_name="j", job_hash="h", resolved_job={"name": "j"}, params={},
               rounds=2, run_dir=run_dir)
with Tracker(required=[RunDirectory(path=run_dir)]) as tracker:
    tracker.start(info)
    for n in (1, 2):
        tracker.round(RoundRecord(round=n, metrics={"loss": 1.0 / n}, party_metrics={},
                                  participants=(), failures={}, duration_s=0.1))
    tracker.finish(RunSummary(status="completed", metrics={"loss": 0.5}, rounds_completed=2,
                              duration_s=0.2, dropouts={}))
"""


def test_without_matplotlib_a_run_completes_with_one_warning_and_no_plot(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_MATPLOTLIB, str(run_dir)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "events.jsonl",
        "job.yaml",
        "metrics.jsonl",
        "summary.json",
    ]
    warnings = [line for line in done.stderr.splitlines() if line.startswith("WARNING")]
    assert warnings == [f"WARNING curves.png was not drawn: {PLOT_MISSING}"]
    assert "Traceback" not in done.stderr


@needs("matplotlib")
def test_metrics_jsonl_reads_back_as_the_rounds_written(
    run_dir: Path, info: RunInfo, summary: RunSummary
) -> None:
    diverged = dataclasses.replace(
        make_record(3), metrics={"loss": float("inf"), "accuracy": float("nan")}
    )
    written = [make_record(1), make_record(2), diverged]
    with run_tracker(run_dir) as tracker:
        tracker.start(info)
        for record in written:
            tracker.round(record)
        tracker.finish(summary)
    back = read_metrics(run_dir / "metrics.jsonl")
    assert back[:2] == written[:2]
    assert back[2].metrics["loss"] == float("inf") and np.isnan(back[2].metrics["accuracy"])
    assert (run_dir / "curves.png").read_bytes().startswith(PNG_MAGIC)  # drawn from the file
