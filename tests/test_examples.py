"""Every example job validates, and runs to completion when cut down to two rounds (and,
where it encrypts, to a small test key: 2048-bit runs are benchmarks)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from consortium.jobs import load_job, run

EXAMPLES = sorted((Path(__file__).parents[1] / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs(tmp_path, path):
    overrides = ["algorithm.rounds=2", "tracking.console=false", "tracking.mlflow.enabled=false"]
    if "paillier" in yaml.safe_load(path.read_text()).get("algorithm", {}):
        overrides.append("algorithm.paillier.key_bits=512")
    job = load_job(path, overrides)
    result = run(job, out=tmp_path / "run", quiet=True)
    assert result.ok, result.error
    assert result.rounds_completed == 2
    assert (tmp_path / "run" / "summary.json").is_file()
