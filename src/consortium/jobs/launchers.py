"""Launchers start a job's parties. ``inproc`` runs them all in this process; ``processes``
(see :mod:`consortium.jobs.processes`) runs one OS process per party over gRPC."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import threading
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Protocol

from consortium.clock import Clock, SystemClock
from consortium.errors import RunFailed
from consortium.jobs.data import bind_data
from consortium.jobs.hosting import host_driver
from consortium.jobs.load import LoadedJob
from consortium.jobs.result import RunResult
from consortium.registry import Registry
from consortium.runtime import ActorPool, PartyContext, program_for
from consortium.transport import InprocNetwork

__all__ = ["LAUNCHERS", "Launcher", "default_workers", "run_inproc"]

log = logging.getLogger(__name__)


class Launcher(Protocol):
    def __call__(
        self, job: LoadedJob, run_dir: Path, *, console: Any = None, quiet: bool = False
    ) -> RunResult: ...


LAUNCHERS: Registry[Launcher] = Registry("launcher")


def default_workers() -> int:
    return max(
        1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )


@contextlib.contextmanager
def _frozen_heap() -> Any:
    """Keep what exists now (imports, data) out of the cyclic garbage collector's full
    collections until the block ends; :func:`gc.freeze` inside the block adds what was made
    since (the parties). A full collection walks every tracked object: while a thousand
    parties were being built one cost ~50 ms, and during the run, with them in memory,
    ~0.1 s in the middle of a round. Reference counting still frees everything; the
    objects are handed back to the collector at the end."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _blas_limits(workers: int) -> Any:
    """One BLAS thread per worker when parties share the cores (oversubscription livelocks)."""
    if workers <= 1:
        return ExitStack()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


def _pin_thread() -> None:
    """The same limit on each thread the pool starts: OpenMP's thread count (torch's, for
    one) is a per-thread setting, so the limit set on this thread does not reach them. It
    lasts as long as the thread, which ends with the run; the process-wide limits (BLAS)
    are lifted when the run's own limit is."""
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
) -> RunResult:
    """Every party in this process: actors on a shared pool, the hub's driver on this thread."""
    clock = clock or SystemClock()
    topology = job.topology
    workers = job.spec.runtime.workers or default_workers()
    network = InprocNetwork(clock=clock)
    data = bind_data(job)
    crashes: dict[str, str] = {}
    crash_lock = threading.Lock()

    def on_crash(party: str, exc: BaseException) -> None:
        with crash_lock:
            crashes[party] = f"{type(exc).__name__}: {exc}"

    job_id = f"{job.spec.name}:{job.job_hash[:12]}"
    with (
        _blas_limits(workers),
        _frozen_heap(),
        contextlib.closing(
            ActorPool(
                workers=workers,
                on_crash=on_crash,
                thread_init=_pin_thread if workers > 1 else None,
            )
        ) as pool,
    ):
        hub_ctx: PartyContext | None = None
        hub_program: Any = None
        contexts: list[PartyContext] = []
        for party in topology.parties:
            factory = program_for(job.protocol, party.program)
            is_hub = party.name == topology.hub
            is_driver = hasattr(factory, "run")
            slot = pool.slot()
            endpoint = network.endpoint(
                party.name,
                on_put=None if is_driver else slot.notify,
                idle=pool.run_one if is_driver else None,
            )
            ctx = PartyContext(
                party=party,
                topology=topology,
                endpoint=endpoint,
                job_id=job_id,
                seed=job.spec.seed,
                settings=job.algorithm,
                data=data[party.name],
                clock=clock,
            )
            if on_context is not None:
                on_context(ctx)
            contexts.append(ctx)
            program = factory(ctx)
            if is_hub:
                hub_ctx, hub_program = ctx, program
            elif is_driver:
                pool.start_driver(ctx, program)  # type: ignore[arg-type]
            else:
                slot.bind(ctx, program, endpoint.mailbox)  # type: ignore[arg-type]
        if hub_ctx is None or not hasattr(hub_program, "run"):
            raise RunFailed(f"the hub {topology.hub!r} must run a driver program")
        gc.freeze()  # the parties too
        try:
            result = host_driver(job, hub_ctx, hub_program, run_dir, console=console, quiet=quiet)
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
