"""kill -9 of the hub at some round, then ``consortium run JOB --resume RUN_DIR``: the same
final model as a run never interrupted, bit for bit, on both launchers (real processes, real
signals)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from consortium.jobs import load_model

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the parties through /proc"),
]

SLOW_PLUGIN = Path(__file__).parents[1] / "horizontal" / "slow_plugins.py"
_PATIENCE = 300.0  # seconds: a guard against a hang on a loaded machine, not a measurement


def _consortium(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "consortium.cli", *args, "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _until(condition, patience: float = _PATIENCE) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + patience
    while not condition():
        assert time.monotonic() < deadline, "the state was not reached"
        time.sleep(0.05)


def _rounds(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def _running_in(run_dir: Path) -> bool:
    """Whether any process names ``run_dir`` on its command line (a party of that run)."""
    needle = str(run_dir).encode()
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and needle in (entry / "cmdline").read_bytes():
                return True
        except OSError:
            continue
    return False


# In one process every round is quick: many rounds. Across processes a slow trainer (it
# knows its name from its command line) holds every round back: a few rounds.
def _hub_pid(launcher: int, run_dir: Path) -> int:
    """The process that runs the hub: the party writing to ``run_dir`` (``--out``) under the
    processes launcher, the launcher itself in-process."""
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0") if entry.name.isdigit() else []
        except OSError:
            continue
        if (
            b"party" in argv
            and b"--out" in argv
            and argv[argv.index(b"--out") + 1] == bytes(str(run_dir), "utf-8")
        ):
            return int(entry.name)
    return launcher


@pytest.mark.parametrize(("launcher", "rounds"), [("inproc", 200), ("processes", 8)])
def test_a_run_killed_mid_way_resumes_to_the_uninterrupted_model(
    tmp_path, small_job, write_job, launcher, rounds
):
    job = small_job(
        plugins=["slow_plugins"],
        model={"name": "slow_logreg", "args": {"factor": 100, "parties": ["trainer-0"]}},
        algorithm__rounds=rounds,
        algorithm__strategy={"name": "fedavgm", "args": {"momentum": 0.9}},  # server state
    )
    path = write_job(job)
    shutil.copy(SLOW_PLUGIN, path.parent)
    common = [str(path), "--launcher", launcher]

    whole = _consortium("run", *common, "--out", str(tmp_path / "whole"))
    assert whole.wait(_PATIENCE) == 0, whole.communicate()[1]

    cut_dir = tmp_path / "cut"
    cut = _consortium("run", *common, "--out", str(cut_dir))
    _until(lambda: _rounds(cut_dir) >= 2 or cut.poll() is not None)
    assert cut.poll() is None, "the run ended before it could be killed"
    os.kill(_hub_pid(cut.pid, cut_dir), signal.SIGKILL)  # the launcher's own process in-process
    cut.communicate()
    _until(lambda: not _running_in(cut_dir))  # the other parties end with the run
    assert _rounds(cut_dir) < rounds

    resumed = _consortium("run", *common, "--resume", str(cut_dir))
    assert resumed.wait(_PATIENCE) == 0, resumed.communicate()[1]
    expected, got = load_model(tmp_path / "whole")[1], load_model(cut_dir)[1]
    assert list(got) == list(expected)
    for name, array in expected.items():
        np.testing.assert_array_equal(got[name], array)
    recorded = [json.loads(line)["round"] for line in (cut_dir / "metrics.jsonl").open()]
    assert recorded == list(range(1, rounds + 1))
    summary = json.loads((cut_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["rounds"] == rounds
