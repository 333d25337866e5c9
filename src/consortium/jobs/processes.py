"""The ``processes`` launcher: one OS process per party, gRPC on loopback, supervised.

The hub starts first and reports its bound address through a pipe; the other parties dial
it. Each child's exit is awaited on its own thread and reported through a queue (no
polling). A party that exits with an error fails the run and is named; a party killed by a
signal is a dropout, which the hub handles with its quorum.

The parties speak mutual TLS. Unless the job names certificates (``runtime.tls``), the
launcher makes a throw-away CA and a certificate per party for the run: the CA's key stays
in this process's memory; the parties' keys are written owner-only into a private temporary
folder (never the run directory) and removed when the run ends. Only with
``runtime.tls.insecure: true`` do the parties talk in plain text.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Literal

import yaml

from consortium.errors import RunFailed
from consortium.jobs.job import LAUNCHERS, LoadedJob
from consortium.jobs.party import tls_files
from consortium.jobs.result import RunResult

__all__ = ["run_processes"]

log = logging.getLogger(__name__)

_THREAD_ENV = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "NUMBA_NUM_THREADS",
)
_HUB_START_TIMEOUT = 120.0  # seconds for the hub to import, load data and bind its port
_GRACE = 30.0  # seconds the other parties get to leave after the hub is done
_RUN_CERT_DAYS = 30  # throw-away certificates: valid for longer than any run lasts


def _child_env(job: LoadedJob) -> dict[str, str]:
    env = dict(os.environ)
    for var in _THREAD_ENV:
        env[var] = "1"  # one BLAS thread per party process: no oversubscription
    paths = [str(job.base_dir), *sys.path]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return env


def _read_address(fd: int, proc: subprocess.Popen[bytes]) -> str:
    box: queue.Queue[str] = queue.Queue()

    def reader() -> None:
        with os.fdopen(fd, "r") as pipe:
            box.put(pipe.readline().strip())

    threading.Thread(target=reader, daemon=True).start()
    try:
        address = box.get(timeout=_HUB_START_TIMEOUT)
    except queue.Empty:
        proc.kill()
        raise RunFailed(f"the hub did not start within {_HUB_START_TIMEOUT:g} s") from None
    if not address:
        raise RunFailed(f"the hub exited before listening (exit code {proc.wait()})")
    return address


def _tls_flags(job: LoadedJob, names: Iterable[str], stack: ExitStack) -> dict[str, list[str]]:
    """The ``consortium party`` TLS flags of each party (see the module's docstring)."""
    from consortium.security import Authority  # cryptography loads only for real parties

    spec = job.spec.runtime.tls
    if spec.insecure:
        log.warning("runtime.tls.insecure: the parties of this run talk over plain-text gRPC")
        return {name: ["--insecure"] for name in names}
    if spec.paths is not None:
        files = {name: tls_files(job, name) for name in names}
    else:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="consortium-tls-")))
        authority = Authority.create(f"Consortium run CA ({job.spec.name})", days=_RUN_CERT_DAYS)
        files = {n: authority.issue(n, days=_RUN_CERT_DAYS).save(folder, n) for n in names}
    return {
        name: ["--tls-ca", str(f.ca), "--tls-cert", str(f.cert), "--tls-key", str(f.key)]
        for name, f in files.items()
        if f is not None
    }


def run_processes(
    job: LoadedJob, run_dir: Path, *, console: Any = None, quiet: bool = False
) -> RunResult:
    with ExitStack() as stack:  # removes the run's throw-away keys, whatever happens
        tls = _tls_flags(job, job.topology.names(), stack)
        return _run(job, run_dir, tls, console=console, quiet=quiet)


def _run(
    job: LoadedJob, run_dir: Path, tls: dict[str, list[str]], *, console: Any, quiet: bool
) -> RunResult:
    run_dir.mkdir(parents=True, exist_ok=True)
    logs = run_dir / "logs"
    logs.mkdir(exist_ok=True)
    job_file = run_dir / "job.yaml"
    job_file.write_text(yaml.safe_dump(dict(job.resolved), sort_keys=False))
    env = _child_env(job)
    base = [
        sys.executable,
        *("-m", "consortium", "party", "--job", str(job_file)),
        *("--base-dir", str(job.base_dir)),  # relative paths mean what they meant to the user
    ]
    hub = job.topology.hub
    exits: queue.Queue[tuple[str, int]] = queue.Queue()
    procs: dict[str, subprocess.Popen[bytes]] = {}

    def watch(name: str, proc: subprocess.Popen[bytes]) -> None:
        exits.put((name, proc.wait()))

    def start(name: str, extra: list[str], **kwargs: Any) -> None:
        cmd = [*base, "--party", name, *tls[name], *extra]
        if quiet or name != hub:
            log_file = open(logs / f"{name}.log", "wb")  # noqa: SIM115 (owned by the child)
            kwargs.update(stdout=log_file, stderr=subprocess.STDOUT)
        proc = subprocess.Popen(cmd, env=env, **kwargs)
        procs[name] = proc
        threading.Thread(target=watch, args=(name, proc), daemon=True).start()

    read_fd, write_fd = os.pipe()
    try:
        start(
            hub,
            [
                "--out",
                str(run_dir),
                "--listen",
                job.spec.runtime.hub_address,
                "--ready-fd",
                str(write_fd),
            ],
            pass_fds=(write_fd,),
        )
    finally:
        os.close(write_fd)
    try:
        address = _read_address(read_fd, procs[hub])
        for name in job.topology.names():
            if name != hub:
                start(name, ["--connect", address])
        crashed = _supervise(hub, procs, exits)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return _result(run_dir, crashed)


def _supervise(
    hub: str, procs: dict[str, subprocess.Popen[bytes]], exits: queue.Queue[tuple[str, int]]
) -> dict[str, str]:
    """Wait for the hub; fail fast on a crashed party. Returns crashed parties and reasons."""
    crashed: dict[str, str] = {}
    running = set(procs)
    hub_done = False
    while running:
        try:
            name, code = exits.get(timeout=_GRACE if hub_done else None)
        except queue.Empty:
            for name in sorted(running):
                log.warning("party %s did not leave after the hub finished; stopping it", name)
                procs[name].terminate()
            hub_done = False  # wait for the terminated ones without a further deadline
            continue
        running.discard(name)
        if name == hub:
            hub_done = True
            if code != 0:
                log.info("the hub exited with code %d", code)
        elif code < 0:
            log.warning("party %s was killed by signal %d: a dropout", name, -code)
        elif code > 0:
            crashed[name] = f"exited with code {code} (see logs/{name}.log)"
            if not hub_done and procs[hub].poll() is None:
                procs[hub].send_signal(signal.SIGTERM)
    return crashed


def _result(run_dir: Path, crashed: dict[str, str]) -> RunResult:
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        summary = {
            "status": "failed",
            "error": "the hub ended without writing a summary (see its output above)",
        }
    error = summary.get("error")
    if crashed:
        named = "; ".join(f"{p}: {r}" for p, r in sorted(crashed.items()))
        error = f"{error}; {named}" if error else f"parties crashed: {named}"
    status: Literal["completed", "failed"] = (
        "completed" if summary.get("status") == "completed" and not crashed else "failed"
    )
    return RunResult(
        status=status,
        metrics=summary.get("metrics", {}),
        rounds_completed=int(summary.get("rounds", 0)),
        run_dir=run_dir,
        duration_s=float(summary.get("duration_s", 0.0)),
        dropouts=summary.get("dropouts", {}),
        error=error,
    )


LAUNCHERS.register("processes", run_processes)
