"""The command line: exit codes and messages a user sees, from a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).parents[2]
FLAGSHIP = ROOT / "examples" / "hfl_digits.yaml"


def consortium(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(
        [sys.executable, "-m", "consortium", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        check=False,
    )


def write(tmp_path: Path, job: dict, name: str = "job.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(job))
    return path


def test_validate_ok():
    proc = consortium("validate", str(FLAGSHIP))
    assert proc.returncode == 0, proc.stderr
    assert "valid" in proc.stdout and "trainer x10" in proc.stdout


def test_validate_misspelt_key_exits_2_and_names_it(tmp_path):
    job = yaml.safe_load(FLAGSHIP.read_text())
    job["algorithm"]["local"]["learning_rate"] = job["algorithm"]["local"].pop("lr")
    proc = consortium("validate", str(write(tmp_path, job)))
    assert proc.returncode == 2
    assert "algorithm.local.learning_rate" in proc.stderr and "unknown key" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_plugin_lists_choices(tmp_path):
    job = yaml.safe_load(FLAGSHIP.read_text())
    job["algorithm"]["strategy"]["name"] = "fedavgg"
    proc = consortium("run", str(write(tmp_path, job)))
    assert proc.returncode == 2
    assert "unknown strategy 'fedavgg'; choose one of: " in proc.stderr
    assert ", fedavg, fedavgm, " in proc.stderr


def test_missing_file_exits_2():
    proc = consortium("run", "does/not/exist.yaml")
    assert proc.returncode == 2
    assert "does/not/exist.yaml: no such job file" in proc.stderr


def test_bad_set_exits_2():
    proc = consortium("validate", str(FLAGSHIP), "--set", "algorithm.rounds=-1")
    assert proc.returncode == 2 and "algorithm.rounds" in proc.stderr


def test_an_override_error_names_the_override():
    proc = consortium("validate", str(FLAGSHIP), "--set", "algorithm.rounds=abc")
    assert proc.returncode == 2
    assert proc.stderr.startswith(
        "consortium: error: --set algorithm.rounds=abc: algorithm.rounds:"
    )


def test_validate_binds_the_data_as_a_run_would():
    proc = consortium("validate", str(FLAGSHIP), "--set", "topology.roles.trainer.count=5000")
    assert proc.returncode == 2
    assert "cannot give 5000 parties at least one row each" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_version():
    from importlib.metadata import version

    proc = consortium("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"consortium {version('consortium')}"


def test_list_shows_registries():
    proc = consortium("list")
    assert proc.returncode == 0
    lines = dict(line.split(": ", 1) for line in proc.stdout.splitlines())
    assert "fedavg" in lines["strategy"]
    assert {"inproc", "processes"} <= set(lines["launcher"].split(", "))
    assert {"digits", "breast_cancer", "wine", "iris", "diabetes", "synthetic"} <= set(
        lines["dataset"].split(", ")
    )
    assert {"iid", "dirichlet", "shards"} <= set(lines["partitioner"].split(", "))
    assert {"logreg", "mlp"} <= set(lines["model"].split(", "))


def test_run_writes_run_dir_and_exits_0(tmp_path):
    out = tmp_path / "run"
    proc = consortium(
        "run",
        str(FLAGSHIP),
        "--out",
        str(out),
        "--quiet",
        "--set",
        "algorithm.rounds=2",
        "--set",
        "tracking.mlflow.enabled=false",
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["rounds"] == 2


def test_crash_exits_1_and_names_the_party(tmp_path):
    job = yaml.safe_load(FLAGSHIP.read_text())
    job["plugins"] = ["faulty_plugins"]
    job["model"] = {"name": "faulty_logreg", "args": {"fault": "raise", "at_call": 1}}
    job["tracking"] = {"console": False, "mlflow": {"enabled": False}}
    path = write(tmp_path, job)
    (tmp_path / "faulty_plugins.py").write_text(
        (ROOT / "tests" / "jobs" / "faulty_plugins.py").read_text()
    )
    proc = consortium("run", str(path), "--out", str(tmp_path / "run"))
    assert proc.returncode == 1
    assert "crashed" in proc.stderr and "trainer-" in proc.stderr
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "failed"
