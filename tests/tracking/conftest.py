"""Shared builders for the tracking tests, as fixtures: a small job, its RunInfo, round
records, a summary and a model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from consortium.tracking import (
    RoundRecord,
    RunInfo,
    RunSummary,
    flatten_params,
    hash_job,
)

JOB = {
    "name": "mnist-fedavg",
    "algorithm": {"protocol": "horizontal", "strategy": "fedavg", "rounds": 3, "lr": 0.05},
    "parties": ["bank-1", "bank-2"],
}


def make_info(run_dir: Path, *, rounds: int = 3) -> RunInfo:
    return RunInfo(
        run_id="20250101-000000-abcdef01",
        job_name=str(JOB["name"]),
        job_hash=hash_job(JOB),
        resolved_job=JOB,
        params=flatten_params(JOB),
        rounds=rounds,
        run_dir=run_dir,
    )


def make_record(n: int) -> RoundRecord:
    return RoundRecord(
        round=n,
        metrics={"accuracy": 0.5 + n / 10, "loss": 1.0 / n},
        party_metrics={
            "bank-1": {"train_loss": 1.0 / n, "examples": 100.0},
            "bank-2": {"train_loss": 2.0 / n, "examples": 50.0},
        },
        participants=("bank-1", "bank-2") if n != 2 else ("bank-1",),
        failures={"bank-2": "timeout"} if n == 2 else {},
        duration_s=0.25 * n,
    )


def completed(rounds: int = 3) -> RunSummary:
    return RunSummary(
        status="completed",
        metrics={"accuracy": 0.875, "loss": 0.3125},
        rounds_completed=rounds,
        duration_s=12.5,
        dropouts={"bank-2": "timeout"},
    )


MODEL: dict[str, np.ndarray] = {
    "dense/kernel": np.arange(12, dtype=np.float32).reshape(3, 4),
    "dense/bias": np.array([0.5, -1.5, 2.0], dtype=np.float64),
    "file": np.array([1, 2, 3], dtype=np.int64),  # a name np.savez(**kwargs) cannot take
}


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return tmp_path / "runs" / "mnist-fedavg" / "20250101-000000-abcdef01"


@pytest.fixture
def info(run_dir: Path) -> RunInfo:
    return make_info(run_dir)


@pytest.fixture
def record() -> Callable[[int], RoundRecord]:
    return make_record


@pytest.fixture
def summary() -> RunSummary:
    return completed()


@pytest.fixture
def model() -> dict[str, np.ndarray]:
    return dict(MODEL)
