"""Two of ten trainers poison their updates (their update scaled by -10): each robust
strategy ends within 3 accuracy points of its own clean run (the same job with the two
parties honest), FedAvg does not. (Krum keeps one update per round, so its clean run is a
few points below FedAvg's; what matters is that the attack does not move it.)"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from consortium.jobs import load_job, run

EXAMPLE = Path(__file__).parents[2] / "examples" / "hfl_robust.yaml"
ATTACKS = EXAMPLE.with_name("attacks.py")


def _run(tmp_path: Path, name: str, strategy: dict[str, Any], attacked: bool) -> float:
    job = yaml.safe_load(EXAMPLE.read_text())
    job["algorithm"]["strategy"] = strategy
    job["tracking"] = {"console": False, "mlflow": {"enabled": False}}
    if not attacked:
        job["topology"]["roles"]["attacker"]["program"] = "trainer"
    directory = tmp_path / name
    directory.mkdir()
    (directory / "job.yaml").write_text(yaml.safe_dump(job))
    shutil.copy(ATTACKS, directory)
    result = run(load_job(directory / "job.yaml"), out=directory / "run", quiet=True)
    assert result.ok, result.error
    return float(result.metrics["accuracy"])


ROBUST = {
    "krum": {"name": "krum", "args": {"byzantine": 2}},
    "multikrum": {"name": "multikrum", "args": {"byzantine": 2}},
    "median": {"name": "fedmedian", "args": {}},
    "trimmed": {"name": "fedtrimmedavg", "args": {"beta": 0.2}},
}


@pytest.mark.parametrize("strategy", sorted(ROBUST))
def test_robust_strategies_shrug_off_the_attack(tmp_path, strategy):
    clean = _run(tmp_path, "clean", ROBUST[strategy], attacked=False)
    attacked = _run(tmp_path, "attacked", ROBUST[strategy], attacked=True)
    assert clean > 0.85
    assert attacked >= clean - 0.03, (strategy, attacked, clean)


def test_fedavg_visibly_degrades(tmp_path):
    clean = _run(tmp_path, "clean", {"name": "fedavg"}, attacked=False)
    attacked = _run(tmp_path, "attacked", {"name": "fedavg"}, attacked=True)
    assert clean > 0.9
    assert attacked < clean - 0.2, (attacked, clean)
