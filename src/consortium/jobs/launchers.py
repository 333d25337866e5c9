"""Launchers start a job's parties. ``inproc`` runs them all in this process; ``processes``
(see :mod:`consortium.jobs.processes`) runs one OS process per party over gRPC."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from consortium.clock import Clock, SystemClock
from consortium.errors import RunFailed
from consortium.jobs.hosting import host_driver
from consortium.jobs.job import LAUNCHERS, LoadedJob, bind_data
from consortium.jobs.result import RunResult
from consortium.runtime import PartyContext, program_for
from consortium.runtime.host import ActorPool, ActorSlot, run_interruptibly
from consortium.transport import InprocNetwork

__all__ = ["run_inproc"]

log = logging.getLogger(__name__)


def _blas_limits(workers: int) -> Any:
    """One BLAS thread per worker when parties share the cores (oversubscription livelocks)."""
    if workers <= 1:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


def _one_blas_thread() -> None:
    """The same limit on each pool thread: OpenMP's thread count (torch's, for one) is a
    per-thread setting, which the process-wide limit does not reach."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)


def run_inproc(
    job: LoadedJob,
    run_dir: Path,
    *,
    console: Any = None,
    quiet: bool = False,
    clock: Clock | None = None,
    on_context: Callable[[PartyContext], None] | None = None,
    resume: bool = False,
) -> RunResult:
    """Every party in this process: the hub's driver on this thread, other drivers on threads
    of their own, actors on this thread (``runtime.workers`` 1, the default) or a pool."""
    launched_at = time.time()
    clock = clock or SystemClock()
    topology = job.topology
    workers = job.spec.runtime.workers
    network = InprocNetwork(clock=clock)
    data = bind_data(job)
    crashes: dict[str, str] = {}
    crash_lock = threading.Lock()

    def on_crash(party: str, exc: BaseException) -> None:
        with crash_lock:
            crashes[party] = f"{type(exc).__name__}: {exc}"

    with (
        _blas_limits(workers),
        contextlib.closing(
            ActorPool(workers=workers, on_crash=on_crash, thread_init=_one_blas_thread)
        ) as pool,
    ):
        hub: tuple[PartyContext, Any] | None = None
        contexts: list[PartyContext] = []
        drivers: list[tuple[PartyContext, Any]] = []
        actors: list[tuple[ActorSlot, PartyContext, Any]] = []
        # every party is built before any starts, so that no message goes to a party that
        # does not exist yet
        for party in topology.parties:
            factory = program_for(job.protocol, party.program)
            slot = None if hasattr(factory, "run") else pool.slot()
            endpoint = network.endpoint(party.name, mailbox=None if slot is None else slot.mailbox)
            ctx = PartyContext(
                party=party,
                topology=topology,
                endpoint=endpoint,
                job_id=job.job_id,
                seed=job.spec.seed,
                settings=job.algorithm,
                data=data[party.name],
                clock=clock,
            )
            if on_context is not None:
                on_context(ctx)
            contexts.append(ctx)
            program = factory(ctx)
            if party.name == topology.hub:
                hub = (ctx, program)
            elif slot is None:
                drivers.append((ctx, program))
            else:
                actors.append((slot, ctx, program))
        if hub is None or not hasattr(hub[1], "run"):
            raise RunFailed(f"the hub {topology.hub!r} must run a driver program")
        hub_ctx, hub_program = hub
        for ctx, program in drivers:
            pool.start_driver(ctx, program)
        for slot, ctx, program in actors:
            slot.bind(ctx, program)

        def stop(reason: str) -> None:
            hub_ctx.interrupted = reason
            for ctx in contexts:
                ctx.endpoint.close()

        try:
            result = run_interruptibly(
                lambda: host_driver(
                    job,
                    hub_ctx,
                    hub_program,
                    run_dir,
                    console=console,
                    quiet=quiet,
                    resume=resume,
                    launched_at=launched_at,
                ),
                stop,
            )
        finally:
            hub_ctx.endpoint.close()
            if not pool.wait_all_done(timeout=60.0):
                log.warning("some parties did not finish; closing their endpoints")
            for ctx in contexts:
                ctx.endpoint.close()
    if crashes and result.ok:
        # A crash the hub did not see (e.g. after its last round) still fails the run.
        named = "; ".join(f"{p}: {r}" for p, r in sorted(crashes.items()))
        raise RunFailed(f"parties crashed: {named}")
    return result


LAUNCHERS.register("inproc", run_inproc)
