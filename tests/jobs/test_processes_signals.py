"""The ``processes`` launcher owns its children: signals to it stop every party, a stopped
party does not hang it, the run's throw-away keys go, and the CLI says what happened in one
line (real processes, real signals, the real ``consortium`` command)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent
_PATIENCE = 300.0  # seconds: a guard against a hang on a loaded machine, not a measurement


class Launch:
    """``consortium run JOB --launcher processes --quiet`` in a process of its own, with a
    private temporary folder, so that the run's key folder can be looked for."""

    def __init__(self, tmp_path: Path, job: Path, *args: str) -> None:
        self.run_dir = tmp_path / "run"
        self.tmp = tmp_path / "tmp"
        self.tmp.mkdir()
        env = {**os.environ, "TMPDIR": str(self.tmp)}
        cmd = [sys.executable, "-m", "consortium.cli", "run", str(job), "--launcher", "processes"]
        self.proc = subprocess.Popen(
            [*cmd, "--out", str(self.run_dir), "--quiet", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.parties: dict[str, int] = {}

    def wait_for_first_round(self, parties: int) -> None:
        """Until metrics.jsonl has a line; then records the party processes' pids."""
        metrics = self.run_dir / "metrics.jsonl"
        _until(lambda: metrics.exists() and metrics.read_text().strip() != "")
        assert self.proc.poll() is None, self.proc.communicate()
        self.parties = _children(self.proc.pid)
        assert len(self.parties) == parties, self.parties

    def finish(self) -> tuple[int, str]:
        _, err = self.proc.communicate(timeout=_PATIENCE)
        return self.proc.returncode, err

    def key_folders(self) -> list[Path]:
        return list(self.tmp.glob("consortium-tls-*"))

    def alive(self) -> list[str]:
        return sorted(name for name, pid in self.parties.items() if _alive(pid))


def _assert_one_line(err: str, line: str) -> None:
    """The CLI's own output is that one line, last; the launcher may have logged warnings."""
    assert "Traceback" not in err, err
    assert [x for x in err.splitlines() if x.startswith("consortium:")] == [line], err
    assert err.splitlines()[-1] == line


def _until(condition, patience: float = _PATIENCE) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + patience
    while not condition():
        assert time.monotonic() < deadline, "the state was not reached"
        time.sleep(0.1)


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # state, ppid, ...


def _alive(pid: int) -> bool:
    """A process that has not ended (a zombie has ended; it waits for its reaper)."""
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"


def _children(parent: int) -> dict[str, int]:
    """The party processes of ``parent``: party name -> pid."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = _stat(int(entry.name))
        if stat is None or int(stat[1]) != parent:
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue
        if "--party" in argv:
            found[argv[argv.index("--party") + 1]] = int(entry.name)
    return found


@pytest.fixture
def long_job(small_job, write_job):
    """Four trainers and far more rounds than any test lets it finish."""

    def make(**changes):  # type: ignore[no-untyped-def]
        return write_job(small_job(algorithm__rounds=100_000, **changes))

    return make


needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")


@needs_proc
def test_sigterm_stops_every_party_and_removes_the_keys(tmp_path, long_job):
    launch = Launch(tmp_path, long_job())
    launch.wait_for_first_round(parties=5)
    assert len(launch.key_folders()) == 1  # the run's throw-away keys, while it runs
    launch.proc.send_signal(signal.SIGTERM)
    code, err = launch.finish()
    assert code == 143
    _assert_one_line(err, "consortium: terminated (SIGTERM)")
    assert launch.alive() == []
    assert launch.key_folders() == []
    summary = json.loads((launch.run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and 1 <= summary["rounds"] < 100_000


@needs_proc
def test_sigint_exits_130_without_a_traceback(tmp_path, long_job):
    launch = Launch(tmp_path, long_job())
    launch.wait_for_first_round(parties=5)
    launch.proc.send_signal(signal.SIGINT)
    code, err = launch.finish()
    assert code == 130
    _assert_one_line(err, "consortium: interrupted")
    assert launch.alive() == []
    assert launch.key_folders() == []


@needs_proc
def test_a_hub_that_ignores_sigterm_is_killed(tmp_path, long_job):
    job = long_job(
        plugins=["stubborn_plugins"],
        model={"name": "stubborn_logreg"},  # the aggregator ignores SIGTERM
    )
    shutil.copy(HERE / "stubborn_plugins.py", job.parent)
    launch = Launch(tmp_path, job)
    launch.wait_for_first_round(parties=5)
    launch.proc.send_signal(signal.SIGTERM)
    code, err = launch.finish()
    assert code == 143
    _assert_one_line(err, "consortium: terminated (SIGTERM)")
    assert "party aggregator did not stop within" in err
    assert launch.alive() == []
    assert launch.key_folders() == []


@needs_proc
def test_a_stopped_trainer_is_dropped_and_does_not_hang_the_launcher(
    tmp_path, small_job, write_job
):
    job = write_job(
        small_job(algorithm__rounds=300, algorithm__quorum=0.75, algorithm__round_timeout=2)
    )
    launch = Launch(tmp_path, job)
    launch.wait_for_first_round(parties=5)
    os.kill(launch.parties["trainer-1"], signal.SIGSTOP)
    code, err = launch.finish()
    assert code == 0, err
    assert "completed with dropouts: trainer-1" in err
    assert launch.alive() == []
    assert launch.key_folders() == []
    summary = json.loads((launch.run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["rounds"] == 300


@needs_proc
def test_a_killed_hub_is_reported_with_its_log_file(tmp_path, long_job):
    launch = Launch(tmp_path, long_job())
    launch.wait_for_first_round(parties=5)
    os.kill(launch.parties["aggregator"], signal.SIGKILL)
    code, err = launch.finish()
    assert code == 1
    log = launch.run_dir / "logs" / "aggregator.log"
    assert (
        f"the hub aggregator ended without writing a summary (killed by SIGKILL; see {log})" in err
    )
    assert launch.alive() == []
    assert launch.key_folders() == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_parties_end_with_a_killed_launcher(tmp_path, long_job):
    launch = Launch(tmp_path, long_job())
    launch.wait_for_first_round(parties=5)
    launch.proc.kill()
    launch.finish()
    _until(lambda: launch.alive() == [])
