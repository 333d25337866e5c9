"""The two analytics examples run end to end, in-process and (slow) one process per party,
and their results land in the run directory."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from consortium.jobs import load_job, run

EXAMPLES = Path(__file__).parents[2] / "examples"
QUIET = ["tracking.console=false", "tracking.mlflow.enabled=false"]


def _results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def test_stats_example_runs(tmp_path):
    result = run(
        load_job(EXAMPLES / "analytics_stats.yaml", QUIET), out=tmp_path / "run", quiet=True
    )
    assert result.ok, result.error
    assert result.rounds_completed == 6
    document = _results(tmp_path / "run")
    assert document["jobs"]["patients"]["result"]["count"] == 442
    spent = document["privacy"]["patients"]["spent"]
    assert spent[0] == pytest.approx(1.9) and spent[1] == pytest.approx(1e-6)
    assert set(document["jobs"]["progression_by_age"]["result"]["groups"]) <= {
        "under_40", "40_to_59", "60_plus",
    }  # fmt: skip
    dag = json.loads((tmp_path / "run" / "dag.json").read_text())
    assert [j["id"] for j in dag["jobs"]] == list(document["jobs"])


def test_forest_example_runs(tmp_path):
    result = run(
        load_job(EXAMPLES / "analytics_forest.yaml", QUIET), out=tmp_path / "run", quiet=True
    )
    assert result.ok, result.error
    assert result.metrics["forest.trees"] == 30
    assert result.metrics["forest.cv_accuracy"] > 0.85
    with np.load(tmp_path / "run" / "model.npz") as saved:
        assert "pipeline.p1.mean" in saved.files
        assert any(k.startswith("forest.t29.") for k in saved.files)


@pytest.mark.slow
def test_stats_example_on_processes_matches_inproc(tmp_path):
    # Relative table paths mean the same to every party process as to the launcher.
    job = load_job(EXAMPLES / "analytics_stats.yaml", [*QUIET, "algorithm.noise.randomness=seeded"])
    local = run(job, launcher="inproc", out=tmp_path / "inproc", quiet=True)
    remote = run(job, launcher="processes", out=tmp_path / "processes", quiet=True)
    assert local.ok and remote.ok, remote.error
    assert remote.rounds_completed == local.rounds_completed == 6
    assert remote.metrics == pytest.approx(dict(local.metrics), rel=1e-12)
    assert _results(tmp_path / "processes")["jobs"] == _results(tmp_path / "inproc")["jobs"]
