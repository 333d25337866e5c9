"""The package's public surface, its light import, and the run-id helpers."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

import consortium.tracking as tracking
from consortium.errors import ConfigError
from consortium.tracking import (
    SINKS,
    ConsoleSink,
    MlflowSink,
    RunDirectory,
    RunInfo,
    RunSummary,
    build_tracker,
    default_run_dir,
    flatten_params,
    hash_job,
    new_run_id,
)


def test_all_lists_the_public_names() -> None:
    public = {name for name in vars(tracking) if not name.startswith("_")}
    modules = {
        "build",
        "console",
        "curves",
        "mlflow_sink",
        "panels",
        "records",
        "rundir",
        "tracker",
    }
    assert set(tracking.__all__) == public - modules
    assert len(tracking.__all__) == len(set(tracking.__all__))


def test_importing_tracking_stays_light() -> None:
    code = (
        "import json, sys; import consortium.tracking; "
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    loaded = set(json.loads(result.stdout))
    assert not loaded & {"mlflow", "matplotlib", "torch"}


def test_sinks_registry_and_builder(run_dir: Path) -> None:
    assert SINKS.names() == ["console", "mlflow", "run_dir"]
    assert SINKS.get("run_dir") is RunDirectory
    tracker = build_tracker(run_dir=run_dir, console=True, mlflow=None)
    assert [type(s) for s in tracker.sinks] == [RunDirectory, ConsoleSink]
    assert SINKS.get("mlflow") is MlflowSink
    tracker.close()


def test_run_ids_sort_by_time_and_are_unique() -> None:
    early = new_run_id(now=datetime(2025, 1, 31, 9, 5, 2, tzinfo=UTC))
    late = new_run_id(now=datetime(2025, 11, 2, 23, 0, 0, tzinfo=UTC))
    assert re.fullmatch(r"20250131-090502-[0-9a-f]{8}", early)
    assert early < late
    assert len({new_run_id() for _ in range(100)}) == 100


def test_default_run_dir(tmp_path: Path) -> None:
    assert default_run_dir(tmp_path, "mnist fedavg/v2", "r1") == tmp_path / "mnist-fedavg-v2" / "r1"
    assert default_run_dir(tmp_path, "..", "r1") == tmp_path / "job" / "r1"
    for bad in ("", "..", "a/b"):
        with pytest.raises(ConfigError):
            default_run_dir(tmp_path, "job", bad)


def test_job_hash_ignores_key_order() -> None:
    a = {"name": "j", "algorithm": {"rounds": 3, "lr": 0.1}}
    b = {"algorithm": {"lr": 0.1, "rounds": 3}, "name": "j"}
    assert hash_job(a) == hash_job(b)
    assert hash_job(a) != hash_job({**a, "name": "k"})
    assert re.fullmatch(r"[0-9a-f]{64}", hash_job(a))


def test_flatten_params() -> None:
    job = {"algorithm": {"rounds": 3, "opt": {"lr": 0.1}}, "parties": ["a", "b"], "seed": None}
    assert flatten_params(job) == {
        "algorithm.rounds": 3,
        "algorithm.opt.lr": 0.1,
        "parties": '["a", "b"]',
        "seed": "null",
    }


def test_records_validate(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        RunInfo(
            run_id="",
            job_name="j",
            job_hash="h",
            resolved_job={},
            params={},
            rounds=1,
            run_dir=tmp_path,
        )
    with pytest.raises(ConfigError):
        RunSummary(
            status="done",  # type: ignore[arg-type]
            metrics={},
            rounds_completed=0,
            duration_s=0.0,
            dropouts={},
        )
