"""Analytics jobs over the example tables (three workers), run in-process."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from consortium.jobs import run

DATA = Path(__file__).parents[2] / "examples" / "data"

PATIENTS: dict[str, Any] = {
    "files": str(DATA / "diabetes_{index}.csv"),
    "columns": {
        "age": {"type": "float", "bounds": [18, 80]},
        "sex": {"type": "category", "categories": ["1", "2"]},
        "age_band": {"type": "category", "categories": ["under_40", "40_to_59", "60_plus"]},
        "bmi": {"type": "float", "bounds": [15, 45], "nullable": True},
        "bp": {"type": "float", "bounds": [60, 140], "nullable": True},
        "s1": {"type": "float"},
        "s5": {"type": "float"},
        "progression": {"type": "float", "bounds": [0, 350]},
    },
    "privacy": {"epsilon": 10.0, "delta": 1e-4, "min_group_size": 1},
}


WINE_COLUMNS = [
    "alcohol", "malic_acid", "ash", "alcalinity_of_ash", "magnesium", "total_phenols",
    "flavanoids", "nonflavanoid_phenols", "proanthocyanins", "color_intensity", "hue",
    "od280_od315_of_diluted_wines", "proline",
]  # fmt: skip
WINE: dict[str, Any] = {
    "files": str(DATA / "wine_{index}.csv"),
    "columns": {
        **{c: {"type": "float", "nullable": c == "magnesium"} for c in WINE_COLUMNS},
        "ash_level": {"type": "category", "categories": ["low", "medium", "high"]},
        "cultivar": {"type": "category", "categories": ["class_0", "class_1", "class_2"]},
    },
}


def analytics_job(steps: list[dict[str, Any]], *, workers: int = 3, **algorithm: Any) -> dict:
    """A job dict: the patients and wine tables over ``workers`` workers and ``steps``."""
    settings: dict[str, Any] = {
        "protocol": "analytics",
        "tables": {"patients": copy.deepcopy(PATIENTS), "wine": copy.deepcopy(WINE)},
        "workflow": {"steps": steps},
        "noise": {"randomness": "seeded"},
    }
    settings.update(algorithm)
    return {
        "name": "analytics-test",
        "seed": 3,
        "topology": {
            "template": "analytics",
            "roles": {"coordinator": {"count": 1}, "worker": {"count": workers}},
        },
        "algorithm": settings,
        "tracking": {"console": False, "mlflow": {"enabled": False}},
        "runtime": {"workers": 1},
    }


def parallel(step_id: str, name: str, **args: Any) -> dict[str, Any]:
    return {"id": step_id, "step": "parallel", "operation": {"name": name, "args": args}}


def run_job(job: dict[str, Any], out: Path) -> tuple[Any, dict[str, Any]]:
    """Run ``job``; returns the run result and results.json's ``jobs`` (empty if absent)."""
    result = run(job, out=out, quiet=True)
    path = out / "results.json"
    jobs = json.loads(path.read_text())["jobs"] if path.is_file() else {}
    return result, jobs


@pytest.fixture(scope="session")
def job_dict() -> Any:
    return analytics_job


@pytest.fixture(scope="session")
def step() -> Any:
    return parallel


@pytest.fixture(scope="session")
def run_analytics() -> Any:
    return run_job


@pytest.fixture(scope="session")
def patients_schema() -> dict[str, Any]:
    return PATIENTS


@pytest.fixture(scope="session")
def wine_columns() -> list[str]:
    return WINE_COLUMNS


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA
