"""``consortium report RUN_DIR``: curves.png drawn again from a real run's files, and the
bad inputs a user meets, with their exit codes and messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

import consortium
from consortium.tracking import PLOT_MISSING, choose_panels
from consortium.tracking.records import read_metrics

ROOT = Path(__file__).parents[2]

# `import matplotlib` fails in this interpreter, as where the plot extra is not installed
WITHOUT_MATPLOTLIB = (
    "import sys; sys.modules['matplotlib'] = None; "
    "from consortium.cli import main; sys.exit(main(sys.argv[1:]))"
)


def consortium_cli(*args: str, code: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    command = ["-m", "consortium"] if code is None else ["-c", code]
    return subprocess.run(
        [sys.executable, *command, *args], capture_output=True, text=True, env=env, check=False
    )


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run of the flagship job made small: 4 trainers, 3 rounds, each trainer
    holding out a fifth of its rows for federated evaluation."""
    pytest.importorskip("matplotlib")
    job: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "hfl_digits.yaml").read_text())
    job["topology"]["roles"]["trainer"]["count"] = 4
    job["algorithm"]["rounds"] = 3
    job["algorithm"]["evaluation"] = {"federated": True}
    job["data"]["roles"]["trainer"]["holdout"] = 0.2
    job["tracking"] = {"console": False, "mlflow": {"enabled": False}}
    out = tmp_path_factory.mktemp("report") / "run"
    result = consortium.run(job, out=out, quiet=True)
    assert result.ok, result.error
    return out


def test_report_draws_the_runs_curves_again(small_run: Path) -> None:
    from matplotlib.image import imread

    drawn_by_the_run = (small_run / "curves.png").read_bytes()
    (small_run / "curves.png").unlink()
    proc = consortium_cli("report", str(small_run))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"{small_run / 'curves.png'}\n"
    assert (small_run / "curves.png").read_bytes() == drawn_by_the_run
    # loss and accuracy on the aggregator's rows and on the trainers' held-out rows, then
    # the trainers' train_loss, eval_loss and eval_accuracy: 7 panels, rows of 3, 2, 2
    assert imread(small_run / "curves.png").shape[:2] == (940, 1200)
    job = yaml.safe_load((small_run / "job.yaml").read_text())
    panels = choose_panels(read_metrics(small_run / "metrics.jsonl"), job)
    assert [p.title.splitlines()[1] for p in panels] == [
        "aggregator's test rows",
        "aggregator's test rows",
        "trainers' held-out rows, weighted mean",
        "trainers' held-out rows, weighted mean",
        "each trainer's training rows",
        "each trainer's held-out rows",
        "each trainer's held-out rows",
    ]
    trainers = [f"trainer-{i}" for i in range(4)]
    assert [[line.label for line in p.lines] for p in panels[4:]] == [trainers] * 3


def test_a_missing_run_directory_exits_2_and_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "runs" / "no-such-run"
    proc = consortium_cli("report", str(missing))
    assert proc.returncode == 2
    assert proc.stderr == f"consortium: error: {missing}: no such run directory\n"


def test_a_folder_without_metrics_exits_2_and_names_the_file(tmp_path: Path) -> None:
    proc = consortium_cli("report", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"consortium: error: {tmp_path / 'metrics.jsonl'}: no such file")
    assert len(proc.stderr.splitlines()) == 1


def test_a_malformed_metrics_file_exits_2_and_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "metrics.jsonl").write_text('{"round": 1}\n')
    proc = consortium_cli("report", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.startswith(
        f"consortium: error: {tmp_path / 'metrics.jsonl'}, line 1: not a round record"
    )
    assert "Traceback" not in proc.stderr


def test_a_run_with_no_metric_to_draw_says_so(tmp_path: Path) -> None:
    line = {
        "round": 1,
        "metrics": {},
        "party_metrics": {},
        "participants": ["worker-0"],
        "failures": {},
        "duration_s": 0.5,
    }
    (tmp_path / "metrics.jsonl").write_text(json.dumps(line) + "\n")
    proc = consortium_cli("report", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert "holds no metric to draw" in proc.stderr
    assert not (tmp_path / "curves.png").exists()


def test_without_matplotlib_report_exits_2_and_names_the_extra(small_run: Path) -> None:
    before = (small_run / "curves.png").read_bytes()
    proc = consortium_cli("report", str(small_run), code=WITHOUT_MATPLOTLIB)
    assert proc.returncode == 2
    assert proc.stderr == f"consortium: error: {PLOT_MISSING}\n"
    assert (small_run / "curves.png").read_bytes() == before
