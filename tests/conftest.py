"""Shared fixtures: BLAS pinning, and quick jobs derived from the flagship example."""

from __future__ import annotations

import copy
import io
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console

# Worker processes and threads must not oversubscribe the cores with BLAS threads.
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")


HERE = Path(__file__).parent
FLAGSHIP = HERE.parent / "examples" / "hfl_digits.yaml"


def _small_job(**changes: Any) -> dict[str, Any]:
    """The flagship job made quick: 4 trainers, 3 rounds, no MLflow unless asked."""
    job = yaml.safe_load(FLAGSHIP.read_text())
    job["topology"]["roles"]["trainer"]["count"] = 4
    job["algorithm"]["rounds"] = 3
    job["tracking"] = {"console": False, "mlflow": {"enabled": False}}
    for path, value in changes.items():
        node = job
        keys = path.split("__")
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = copy.deepcopy(value)
    return job


def _write_job(directory: Path, job: dict[str, Any], name: str = "job.yaml") -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    return path


@pytest.fixture
def flagship() -> Path:
    return FLAGSHIP


@pytest.fixture
def small_job() -> Any:
    return _small_job


@pytest.fixture
def write_job(tmp_path: Path) -> Any:
    return lambda job, name="job.yaml": _write_job(tmp_path, job, name)


@pytest.fixture
def console() -> Console:
    return Console(file=io.StringIO(), width=120)
