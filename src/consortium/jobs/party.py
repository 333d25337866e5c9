"""Running one party by hand: ``consortium party --job JOB --party NAME``.

The hub party listens (``--listen``); every other party dials it (``--connect``). This is
what the ``processes`` launcher starts for each party, and what an organisation runs on its
own host in a multi-host run.

Parties speak mutual TLS: each needs the federation's CA certificate, its own certificate
and its key, given as files (flags, or ``runtime.tls`` in the job file). A party without
them refuses to start, unless the job says ``runtime.tls.insecure: true``.
"""

from __future__ import annotations

import ctypes
import dataclasses
import logging
import os
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import numpy as np

from consortium.errors import ConfigError, RunFailed
from consortium.jobs.hosting import host_driver
from consortium.jobs.job import LoadedJob, bind_data
from consortium.jobs.result import RunResult
from consortium.runtime import LocalData, PartyContext, program_for
from consortium.runtime.host import run_interruptibly, serve_actor, serve_driver

if TYPE_CHECKING:
    from consortium.security import PartyCredentials, TlsFiles
    from consortium.wire import Limits

__all__ = ["die_with", "run_party", "tls_files"]

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"terminated by signal {signum}")


def die_with(supervisor: int) -> None:
    """End this process with SIGTERM when the process ``supervisor`` ends, however it ends.

    The ``processes`` launcher starts each party with its own pid; a launcher killed with
    SIGKILL then leaves no party behind. On Linux the kernel sends the signal
    (``PR_SET_PDEATHSIG``); elsewhere this only checks that the supervisor is still there.
    Raises :class:`RunFailed` if it has already ended (this process's parent is no longer it).
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
                log.warning("prctl(PR_SET_PDEATHSIG): %s", os.strerror(ctypes.get_errno()))
        except (OSError, AttributeError) as exc:  # a libc without prctl
            log.warning("cannot ask to end with the launcher: %s", exc)
    # Checked after prctl: a supervisor that ended before it would never signal this process.
    if os.getppid() != supervisor:
        raise RunFailed(f"the launcher that started this party (pid {supervisor}) has ended")


MIN_MESSAGE_BYTES = 64 * 2**20


def message_limits(data: Any) -> Limits:
    """The largest message a party of this job takes: four times its model (a model and a
    float64 tensor of the same shape sent along, say), at least :data:`MIN_MESSAGE_BYTES`;
    the transport's default where the job has no model. A peer can make a party hold no more
    than that (see :mod:`consortium.transport.grpc_hub`)."""
    from consortium.transport.grpc_common import DEFAULT_LIMITS, limits_for_model

    if not isinstance(data, LocalData) or data.model_factory is None:
        return DEFAULT_LIMITS
    weights = data.model_factory().get_weights()
    model_bytes = sum(np.asarray(w).nbytes for w in weights.values())
    limits = limits_for_model(model_bytes, margin=4.0)
    if limits.max_message_bytes >= MIN_MESSAGE_BYTES:
        return limits
    return dataclasses.replace(limits, max_message_bytes=MIN_MESSAGE_BYTES)


def tls_files(job: LoadedJob, name: str) -> TlsFiles | None:
    """The TLS files ``runtime.tls`` names for party ``name``: ``{party}`` replaced by the
    name, relative paths taken from the job file's folder. None if it names none."""
    from consortium.security import TlsFiles

    paths = job.spec.runtime.tls.paths
    if paths is None:
        return None
    base = job.base_dir
    ca, cert, key = (base / Path(p.replace("{party}", name)).expanduser() for p in paths)
    return TlsFiles(ca=ca, cert=cert, key=key)


def _credentials(
    job: LoadedJob, name: str, tls: TlsFiles | None, insecure: bool
) -> PartyCredentials | None:
    files = tls or tls_files(job, name)
    if files is not None:
        return files.load(party=name)
    if insecure or job.spec.runtime.tls.insecure:
        return None  # the transport warns on every start
    raise ConfigError(
        f"party {name!r} has no TLS material: give --tls-ca, --tls-cert and --tls-key (made "
        "with `consortium certs`), or name them under runtime.tls in the job file; only on a "
        "trusted network, runtime.tls.insecure: true runs gRPC in plain text"
    )


def run_party(
    job: LoadedJob,
    name: str,
    *,
    connect: str | None = None,
    listen: str | None = None,
    ready_fd: int | None = None,
    run_dir: Path | None = None,
    console: Any = None,
    tls: TlsFiles | None = None,
    insecure: bool = False,
    resume: bool = False,
    launched_at: float | None = None,
) -> RunResult | None:
    """Run party ``name`` until its program ends. Returns the run's result on the hub.

    ``tls`` (the CA certificate, this party's certificate and key) overrides what the job
    file names; ``insecure`` allows plain-text gRPC when there is none. ``resume``: the hub
    goes on from the checkpoint in ``run_dir``.
    """
    from consortium.transport import GrpcHub, GrpcSpoke  # gRPC loads only for real parties

    topology = job.topology
    party = topology.party(name)
    is_hub = name == topology.hub
    peers = topology.names()
    chunk = job.spec.runtime.chunk_bytes
    creds = _credentials(job, name, tls, insecure)
    job_key = job.job_id
    data = bind_data(job, [name])[name]
    limits = message_limits(data)
    if is_hub:
        endpoint: Any = GrpcHub(
            party=name,
            peers=peers,
            address=listen or job.spec.runtime.hub_address,
            chunk_bytes=chunk,
            tls=creds,
            job=job_key,
            limits=limits,
        )
        log.info("hub %s listening on %s", name, endpoint.address)
        if ready_fd is not None:
            with os.fdopen(ready_fd, "w") as pipe:
                pipe.write(f"{endpoint.address}\n")
    else:
        if not connect:
            raise ConfigError(
                f"party {name!r} is not the hub ({topology.hub!r}): give --connect HOST:PORT"
            )
        endpoint = GrpcSpoke(
            party=name,
            peers=peers,
            hub=connect,
            chunk_bytes=chunk,
            tls=creds,
            hub_party=topology.hub,
            job=job_key,
            limits=limits,
        )
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:  # the CLI has its own handler
        signal.signal(signal.SIGTERM, _terminate)
    try:
        ctx = PartyContext(
            party=party,
            topology=topology,
            endpoint=endpoint,
            job_id=job_key,
            seed=job.spec.seed,
            settings=job.algorithm,
            data=data,
        )
        program: Any = program_for(job.protocol, party.program)(ctx)
        if is_hub and run_dir is None:
            raise ConfigError("the hub party needs a run directory (--out)")

        def work() -> RunResult | None:
            if is_hub:
                assert run_dir is not None
                return host_driver(
                    job,
                    ctx,
                    program,
                    run_dir,
                    console=console,
                    resume=resume,
                    launched_at=launched_at,
                )
            if hasattr(program, "run"):
                serve_driver(ctx, program)  # an intermediate aggregator, say
            else:
                serve_actor(ctx, program)
            return None

        def stop(reason: str) -> None:
            ctx.interrupted = reason
            endpoint.close()

        return run_interruptibly(work, stop)
    finally:
        endpoint.close()
