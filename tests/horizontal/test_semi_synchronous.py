"""Semi-synchronous rounds: each trainer's local epochs sized to a time budget from its
measured speed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from consortium.jobs import load_job, run

SLOW_PLUGIN = Path(__file__).with_name("slow_plugins.py")


def _epochs(run_dir: Path) -> list[dict[str, float]]:
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{p: m["epochs"] for p, m in line["party_metrics"].items()} for line in lines]


@pytest.mark.parametrize(("budget", "expected"), [(1e-9, 1), (1e9, 6)], ids=["tiny", "huge"])
def test_epochs_follow_the_budget_within_bounds(tmp_path, small_job, budget, expected):
    job = small_job(algorithm__semi_synchronous={"budget_s": budget, "max_epochs": 6})
    result = run(job, out=tmp_path / "run", quiet=True)
    assert result.ok, result.error
    rounds = _epochs(tmp_path / "run")
    assert set(rounds[0].values()) == {1}  # local.epochs until a speed was measured
    for later in rounds[1:]:
        assert set(later.values()) == {expected}


@pytest.mark.slow
def test_a_slow_trainer_gets_fewer_epochs(tmp_path, small_job, write_job):
    job = small_job(
        plugins=["slow_plugins"],
        model={"name": "slow_logreg", "args": {"factor": 40, "parties": ["trainer-0"]}},
        algorithm__rounds=3,
        algorithm__semi_synchronous={"budget_s": 0.2, "max_epochs": 50},
    )
    path = write_job(job)
    shutil.copy(SLOW_PLUGIN, path.parent)
    result = run(load_job(path), launcher="processes", out=tmp_path / "run", quiet=True)
    assert result.ok, result.error
    last = _epochs(tmp_path / "run")[-1]
    fast = [last[f"trainer-{i}"] for i in (1, 2, 3)]
    assert last["trainer-0"] < min(fast), last
