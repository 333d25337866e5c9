"""Every example job validates, and runs to completion when cut down to two rounds (and,
where it encrypts, to a small test key: 2048-bit runs are benchmarks)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from consortium.jobs import load_job, run
from consortium.testing import skip_without_extras

EXAMPLES = sorted((Path(__file__).parents[1] / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs(tmp_path, path):
    overrides = ["algorithm.rounds=2", "tracking.console=false", "tracking.mlflow.enabled=false"]
    if "paillier" in yaml.safe_load(path.read_text()).get("algorithm", {}):
        overrides.append("algorithm.paillier.key_bits=512")
    skip_without_extras(yaml.safe_load(path.read_text()))
    job = load_job(path, overrides)
    result = run(job, out=tmp_path / "run", quiet=True)
    assert result.ok, result.error
    assert result.rounds_completed == 2
    assert (tmp_path / "run" / "summary.json").is_file()


SCRIPTS = ["custom_strategy", "custom_torch_client", "custom_dataset"]


@pytest.mark.parametrize("name", SCRIPTS)
def test_extension_example_runs_as_a_script(tmp_path, name):
    """Each example of docs/extending.md runs as its users would run it."""
    if name == "custom_torch_client":
        pytest.importorskip("torch")
    script = EXAMPLES[0].parent / f"{name}.py"
    done = subprocess.run(
        [sys.executable, str(script), "--rounds", "2", "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1].startswith("completed: accuracy")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["rounds"] == 2


@pytest.mark.slow
def test_a_strategy_example_is_a_plugin_for_the_processes_launcher(tmp_path, small_job, write_job):
    """The same module, named under plugins:, serves every party of a multi-process run."""
    job = small_job(algorithm__strategy={"name": "fedavg_clipped", "args": {"max_norm": 0.5}})
    job["plugins"] = ["custom_strategy"]
    path = write_job(job)
    shutil.copy(EXAMPLES[0].parent / "custom_strategy.py", path.parent)
    result = run(load_job(path), launcher="processes", out=tmp_path / "run", quiet=True)
    assert result.ok, result.error
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all("clipped" in r["metrics"] for r in records)


def test_the_extension_guide_matches_the_examples():
    """docs/extending.md shows names the examples really register and functions they define."""
    guide = (EXAMPLES[0].parents[1] / "docs" / "extending.md").read_text()
    for name, shown in [
        ("custom_strategy", ['register_strategy("fedavg_clipped")', "class FedAvgClipped"]),
        ("custom_torch_client", ['register_client("torch_adam")', "def torch_adam("]),
        ("custom_dataset", ['register_dataset("csv_table")', "def csv_table("]),
    ]:
        source = (EXAMPLES[0].parent / f"{name}.py").read_text()
        assert f"examples/{name}.py" in guide
        for text in shown:
            assert text in guide and text in source, (name, text)
