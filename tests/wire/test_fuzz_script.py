"""``fuzz/fuzz_decode.py`` keeps working: its fallback runs, and it replays saved inputs."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

if importlib.util.find_spec("atheris") is not None:
    pytest.skip("atheris is installed: the script runs libFuzzer instead", allow_module_level=True)

ROOT = Path(__file__).parents[2]
SCRIPT = ROOT / "fuzz" / "fuzz_decode.py"


def fuzz(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, check=False
    )


def test_the_fuzz_script_runs_without_atheris():
    proc = fuzz("--runs", "300", "--seed", "1")
    assert proc.returncode == 0, proc.stderr
    assert "300 mutated inputs" in proc.stdout


def test_the_fuzz_script_replays_an_input(tmp_path):
    crash = tmp_path / "crash-x"
    crash.write_bytes(b"CSM\x01\xff\xff\xff\xff{}")
    proc = fuzz(str(crash))
    assert proc.returncode == 0, proc.stderr
    assert "replayed 1 input" in proc.stdout
