"""The ``processes`` launcher: one OS process per party, gRPC on loopback, supervised.

The hub starts first and reports its bound address through a pipe; the other parties dial
it. Each child's exit is awaited on its own thread and reported through a queue (no
polling). A party that exits with an error fails the run and is named; a party killed by a
signal is a dropout, which the hub handles with its quorum.

The launcher owns its children. Each runs in its own session, so a Ctrl-C at the terminal
reaches the launcher alone, and asks the kernel to end it when the launcher dies (see
:func:`~consortium.jobs.party.die_with`). SIGINT or SIGTERM to the launcher stops the run in
order: the hub is sent SIGTERM (it records the run as stopped), then the other parties;
whatever is left after :data:`_STOP_GRACE` seconds, a stopped process included, is killed.
A second signal kills at once. Then the caller's own handling of the signal runs: the CLI
exits with 130 or 143, a Python caller gets ``KeyboardInterrupt``, and a process that
left SIGTERM at its default ends as it would have.

The parties speak mutual TLS. Unless the job names certificates (``runtime.tls``), the
launcher makes a throw-away CA and a certificate per party for the run: the CA's key stays
in this process's memory; the parties' keys are written owner-only into a private temporary
folder (never the run directory) and removed on every way out of the launcher but SIGKILL.
Only with ``runtime.tls.insecure: true`` do the parties talk in plain text.
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
import time
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
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
# Seconds a party gets to act on SIGTERM before SIGKILL. A party's clean-up (the hub writing
# its summary) takes well under a second; on a signal the hub and then the others get this
# long, which ends the launcher inside Docker's default 10 s between SIGTERM and SIGKILL.
_STOP_GRACE = 4.0
_RUN_CERT_DAYS = 30  # throw-away certificates: valid for longer than any run lasts
_FORWARDED = (signal.SIGINT, signal.SIGTERM)


@dataclass(frozen=True, slots=True)
class _Exited:
    party: str
    code: int


@dataclass(frozen=True, slots=True)
class _Listening:
    address: str  # empty: the hub closed the pipe without listening


@dataclass(frozen=True, slots=True)
class _Signalled:
    signum: int


_Event = _Exited | _Listening | _Signalled


def _child_env(job: LoadedJob) -> dict[str, str]:
    env = dict(os.environ)
    for var in _THREAD_ENV:
        env[var] = "1"  # one BLAS thread per party process: no oversubscription
    paths = [str(job.base_dir), *sys.path]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return env


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
    job: LoadedJob,
    run_dir: Path,
    *,
    console: Any = None,
    quiet: bool = False,
    resume: bool = False,
) -> RunResult:
    children = _Children(job, run_dir, quiet=quiet, resume=resume)
    restore = _catch_signals(children.on_signal)
    try:
        with ExitStack() as stack:  # removes the run's throw-away keys, whatever happens
            tls = _tls_flags(job, job.topology.names(), stack)
            result = children.run(tls)
    finally:
        restore()
    if children.signum is not None:
        signal.raise_signal(children.signum)  # the caller's own handling of it (see above)
    return result


def _catch_signals(handler: Callable[[int], None]) -> Callable[[], None]:
    """Send SIGINT and SIGTERM to ``handler`` until the returned function is called.

    Python runs signal handlers on the main thread only; elsewhere nothing is caught and the
    launcher's ``finally`` blocks stop the children. A signal ignored here stays ignored.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def on_signal(signum: int, frame: FrameType | None) -> None:
        handler(signum)

    previous = {}
    for signum in _FORWARDED:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            previous[signum] = signal.signal(signum, on_signal)

    def restore() -> None:
        for signum, old in previous.items():
            signal.signal(signum, old)

    return restore


class _Children:
    """The party processes of one run: started, watched, and stopped on every way out."""

    def __init__(self, job: LoadedJob, run_dir: Path, *, quiet: bool, resume: bool) -> None:
        self.job, self.run_dir, self.quiet, self.resume = job, run_dir, quiet, resume
        self.launched_at = time.time()
        self.hub = job.topology.hub
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        # SimpleQueue.put is reentrant: the signal handler may call it on the main thread
        # while that thread is inside get().
        self.events: queue.SimpleQueue[_Event] = queue.SimpleQueue()
        self.signum: int | None = None  # the first SIGINT or SIGTERM received
        self.killed = False  # a second signal: SIGKILL has been sent to every child
        self.reaped: set[str] = set()  # the children whose exit _supervise has seen
        self.stopping: set[str] = set()  # the children told to stop
        self.kill_at: dict[str, float] = {}  # when those told to stop are killed, if still there

    def on_signal(self, signum: int) -> None:
        if self.signum is None:
            self.signum = signum
            log.info("%s: stopping the run's parties", _signal_name(signum))
        elif not self.killed:
            self.killed = True
            log.info("a second signal: killing the run's parties")
            self.stopping |= self._running()
            self._send(self._running(), signal.SIGKILL)
        self.events.put(_Signalled(signum))

    def run(self, tls: dict[str, list[str]]) -> RunResult:
        run_dir = self.run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "logs").mkdir(exist_ok=True)
        job_file = run_dir / "job.yaml"
        job_file.write_text(yaml.safe_dump(dict(self.job.resolved), sort_keys=False))
        base = [
            sys.executable,
            *("-m", "consortium", "party", "--job", str(job_file)),
            *("--base-dir", str(self.job.base_dir)),  # relative paths mean what they meant
            *("--supervisor", str(os.getpid())),
        ]
        env = _child_env(self.job)
        try:
            address = None if self.signum is not None else self._start_hub(base, tls[self.hub], env)
            for name in self.job.topology.names():
                if name != self.hub and address is not None and self.signum is None:
                    self._start(base, name, [*tls[name], "--connect", address], env)
            crashed = self._supervise()
        finally:
            self._terminate(self._running())
            self._supervise()  # nothing is left running after it, whatever happened above
        return self._result(crashed)

    def _start(
        self, base: list[str], name: str, args: list[str], env: dict[str, str], **kwargs: Any
    ) -> None:
        cmd = [*base, "--party", name, *args]
        with ExitStack() as stack:  # the child has its own copy of the log file
            if self.quiet or name != self.hub:
                log_file = stack.enter_context(open(self.run_dir / "logs" / f"{name}.log", "wb"))
                kwargs.update(stdout=log_file, stderr=subprocess.STDOUT)
            proc = subprocess.Popen(cmd, env=env, start_new_session=True, **kwargs)
        self.procs[name] = proc
        threading.Thread(
            target=lambda: self.events.put(_Exited(name, proc.wait())), daemon=True
        ).start()

    def _start_hub(self, base: list[str], tls: list[str], env: dict[str, str]) -> str | None:
        """Start the hub and wait until it listens: its address, or None on a signal."""
        read_fd, write_fd = os.pipe()
        try:
            listen = ["--out", str(self.run_dir), "--listen", self.job.spec.runtime.hub_address]
            args = [*tls, *listen, "--ready-fd", str(write_fd), *(["--resume"] * self.resume)]
            args += ["--launched-at", repr(self.launched_at)]
            self._start(base, self.hub, args, env, pass_fds=(write_fd,))
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)

        def read() -> None:
            with os.fdopen(read_fd, "r") as pipe:
                self.events.put(_Listening(pipe.readline().strip()))

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + _HUB_START_TIMEOUT
        while True:
            event = self._next(deadline)
            if event is None:
                raise RunFailed(f"the hub did not start within {_HUB_START_TIMEOUT:g} s")
            if isinstance(event, _Signalled):
                return None
            if isinstance(event, _Listening) and event.address:
                return event.address
            if isinstance(event, _Exited):  # (an empty address comes first: it is ending)
                self.events.put(event)  # for _supervise, which reaps it
                raise RunFailed(f"the hub exited before listening ({self._hub_ending(event.code)})")

    def _next(self, deadline: float | None) -> _Event | None:
        """The next event, or None at the deadline."""
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            return None

    def _supervise(self) -> dict[str, str]:
        """Wait until every child has ended; returns the crashed parties and reasons.

        A crashed party fails the run at once (the hub is stopped). After the hub, the other
        parties get :data:`_GRACE` seconds to leave; those stopped (SIGSTOP) are woken up so
        that they can. On a signal, the hub is stopped first, so that it records the run as
        stopped, then the others.
        """
        crashed: dict[str, str] = {}
        running = self._running()
        leave_by: float | None = None  # when those still running after the hub are stopped
        if self.signum is not None:
            self._terminate(running & {self.hub} or running)
        while running:
            deadlines = list(self.kill_at.values())
            if leave_by is not None:
                deadlines.append(leave_by)
            event = self._next(min(deadlines, default=None))
            if event is None:
                now = time.monotonic()
                for name in sorted(n for n, t in self.kill_at.items() if t <= now):
                    log.warning("party %s did not stop within %g s; killing it", name, _STOP_GRACE)
                    self.procs[name].kill()
                    del self.kill_at[name]
                if leave_by is not None and now >= leave_by:
                    for name in sorted(running):
                        log.warning(
                            "party %s did not leave after the hub finished; stopping it", name
                        )
                    self._terminate(running)
                    leave_by = None
                continue
            if isinstance(event, _Signalled):
                self._terminate(running & {self.hub} or running)
                continue
            if not isinstance(event, _Exited) or event.party in self.reaped:
                continue
            name, code = event.party, event.code
            self.reaped.add(name)
            running.discard(name)
            self.kill_at.pop(name, None)
            if name == self.hub:
                if code != 0:
                    log.info("the hub exited with code %d", code)
                if self.signum is not None:
                    self._terminate(running)
                else:
                    # A stopped party (SIGSTOP, a debugger let go) cannot see the run is over.
                    self._send(running, signal.SIGCONT)
                    leave_by = time.monotonic() + _GRACE
            elif name in self.stopping:
                log.info("party %s stopped (exit code %d)", name, code)
            elif code < 0:
                log.warning("party %s was killed by signal %d: a dropout", name, -code)
            elif code > 0 and self.signum is None:
                crashed[name] = f"exited with code {code} (see logs/{name}.log)"
                self._terminate(running & {self.hub})
        return crashed

    def _running(self) -> set[str]:
        return {name for name in self.procs if name not in self.reaped}

    def _send(self, names: Iterable[str], signum: int) -> None:
        for name in names:
            self.procs[name].send_signal(signum)  # nothing, once it has been waited for

    def _terminate(self, names: set[str]) -> None:
        """SIGTERM, and SIGCONT so that a stopped process acts on it; SIGKILL follows
        :data:`_STOP_GRACE` seconds after a party was first told (see :meth:`_supervise`)."""
        if not names:
            return
        self._send(names, signal.SIGTERM)
        self._send(names, signal.SIGCONT)
        kill_at = time.monotonic() + _STOP_GRACE
        for name in names - self.stopping:
            self.kill_at[name] = kill_at
        self.stopping |= names

    def _hub_ending(self, code: int) -> str:
        """How the hub ended, and where its output is."""
        how = f"killed by {_signal_name(-code)}" if code < 0 else f"exit code {code}"
        if self.quiet:
            return f"{how}; see {self.run_dir / 'logs' / f'{self.hub}.log'}"
        return f"{how}; see its output above"

    def _result(self, crashed: dict[str, str]) -> RunResult:
        try:
            summary = json.loads((self.run_dir / "summary.json").read_text())
        except (OSError, ValueError):
            hub = self.procs.get(self.hub)
            code = hub.returncode if hub is not None else None
            ending = "" if code is None else f" ({self._hub_ending(code)})"
            summary = {
                "status": "failed",
                "error": f"the hub {self.hub} ended without writing a summary{ending}",
            }
        error = summary.get("error")
        if self.signum is not None:
            error = f"stopped by {_signal_name(self.signum)}"
        if crashed:
            named = "; ".join(f"{p}: {r}" for p, r in sorted(crashed.items()))
            error = f"{error}; {named}" if error else f"parties crashed: {named}"
        status: Literal["completed", "failed"] = (
            "completed"
            if summary.get("status") == "completed" and not crashed and self.signum is None
            else "failed"
        )
        return RunResult(
            status=status,
            metrics=summary.get("metrics", {}),
            rounds_completed=int(summary.get("rounds", 0)),
            run_dir=self.run_dir,
            duration_s=float(summary.get("duration_s", 0.0)),
            dropouts=summary.get("dropouts", {}),
            error=error,
        )


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


LAUNCHERS.register("processes", run_processes)
