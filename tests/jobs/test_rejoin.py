"""A trainer killed mid-run and started again by hand is taken back: with quorum 1.0 the run
completes, and ends with the model of a run in which nobody was killed."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from consortium.jobs import load_job, run

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[2]
PLUGIN = Path(__file__).with_name("faulty_plugins.py")
KILL = "CONSORTIUM_TEST_KILL_TRAINER"  # the plugin kills trainer-1 only where this is set
_PATIENCE = 300.0  # seconds: a guard against a hang on a loaded machine, not a measurement


def test_a_killed_trainer_started_again_rejoins_and_the_run_completes(
    tmp_path, small_job, write_job
):
    job = small_job(
        plugins=["faulty_plugins"],
        model={
            "name": "faulty_logreg",
            "args": {"fault": "kill", "at_call": 2, "parties": ["trainer-1"], "only_if_env": KILL},
        },
        topology__roles__trainer__count=3,
        algorithm__quorum=1.0,
        algorithm__round_timeout=300,
        runtime__tls__insecure=True,
    )
    path = write_job(job)
    shutil.copy(PLUGIN, path.parent)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{sock.getsockname()[1]}"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    env.pop(KILL, None)

    logs = tmp_path / "logs"
    logs.mkdir()

    def party(name: str, *args: str, kill: bool = False) -> subprocess.Popen[str]:
        """A party whose output goes to a file (a pipe nobody reads could fill and stall it)."""
        cmd = [sys.executable, "-m", "consortium", "party", "--job", str(path), "--party", name]
        with open(logs / f"{name}.{len(list(logs.glob(name + '.*')))}.log", "w") as log:
            return subprocess.Popen(
                [*cmd, *args],
                env={**env, KILL: "1"} if kill else env,
                text=True,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )

    hub = party("aggregator", "--listen", address, "--out", str(tmp_path / "run"))
    trainers = [party(f"trainer-{i}", "--connect", address, kill=i == 1) for i in range(3)]
    assert trainers[1].wait() == -9  # killed in its second round
    hub_log = logs / "aggregator.0.log"
    deadline = time.monotonic() + _PATIENCE
    while "lost party 'trainer-1'" not in hub_log.read_text():  # its name is free again
        assert hub.poll() is None and time.monotonic() < deadline, hub_log.read_text()
        time.sleep(0.05)
    trainers[1] = party("trainer-1", "--connect", address)
    codes = [p.wait(_PATIENCE) for p in [hub, *trainers]]
    outputs = {f.name: f.read_text()[-2000:] for f in sorted(logs.iterdir())}
    assert codes == [0, 0, 0, 0], outputs

    out = tmp_path / "run"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["rounds"] == 3
    events = [json.loads(x) for x in (out / "events.jsonl").read_text().splitlines()]
    rejoined = [e["fields"] for e in events if e["event"] == "rejoined"]
    assert rejoined == [{"party": "trainer-1", "round": 2}]
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [sorted(x["participants"]) for x in lines] == [
        ["trainer-0", "trainer-1", "trainer-2"]
    ] * 3

    # The restarted trainer did round 2 over from the same model and seed: same result as a
    # run in which nobody was killed.
    whole = run(load_job(path), launcher="inproc", out=tmp_path / "whole", quiet=True)
    assert whole.ok and not whole.dropouts
    with np.load(out / "model.npz") as a, np.load(tmp_path / "whole" / "model.npz") as b:
        for name in b.files:
            np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-6)
