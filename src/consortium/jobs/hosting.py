"""Hosting the party that records the run: tracker set-up, the driver, and the summary.

Whatever happens in the driver, the run directory gets a summary: "completed" with the final
metrics, or "failed" with the error, keeping every round finished before the failure.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from consortium.errors import ConfigError, ConsortiumError, RunFailed
from consortium.jobs.job import LoadedJob
from consortium.jobs.result import RunResult
from consortium.runtime import Checkpoints, LocalData, Outcome, PartyContext
from consortium.tracking import (
    MlflowSettings,
    RunInfo,
    RunSummary,
    build_tracker,
    flatten_params,
    new_run_id,
)

__all__ = ["CHECKPOINT_FILE", "checkpoints_for", "host_driver", "open_tracker"]

log = logging.getLogger(__name__)


CHECKPOINT_FILE = "checkpoint.npz"


def checkpoints_for(job: LoadedJob, run_dir: Path, *, resume: bool) -> Checkpoints:
    """The hub's checkpoints in ``run_dir``; to resume, with the snapshot read back
    (ConfigError naming the file when there is none, or it is another job's)."""
    path = Path(run_dir) / CHECKPOINT_FILE
    if resume and not path.exists():
        raise ConfigError(
            f"{path}: no checkpoint to resume from (the run ended before its first checkpoint, "
            f"its protocol saves none, or runtime.checkpoint_every is 0)"
        )
    resumed = Checkpoints.read(path, job_hash=job.job_hash) if resume else None
    every = job.spec.runtime.checkpoint_every
    return Checkpoints(path=path, job_hash=job.job_hash, every=every, resumed=resumed)


def open_tracker(
    job: LoadedJob,
    run_dir: Path,
    *,
    console: Any = None,
    quiet: bool = False,
    resumed_after: int = 0,
    launched_at: float | None = None,
) -> Any:
    spec = job.spec.tracking
    mlflow = None
    if spec.mlflow.enabled:
        mlflow = MlflowSettings(
            tracking_uri=spec.mlflow.tracking_uri,
            experiment=spec.mlflow.experiment or job.spec.name,
        )
    tracker = build_tracker(
        run_dir=run_dir,
        console=spec.console and not quiet,
        mlflow=mlflow,
        console_obj=console,
        curves=spec.curves,
    )
    tracker.start(
        RunInfo(
            run_id=run_dir.name if run_dir.name else new_run_id(),
            job_name=job.spec.name,
            job_hash=job.job_hash,
            resolved_job=job.resolved,
            params=flatten_params(job.resolved),
            rounds=int(getattr(job.algorithm, "rounds", 0)),
            run_dir=run_dir,
            resumed_after=resumed_after,
            startup_s=0.0 if launched_at is None else max(0.0, time.time() - launched_at),
        )
    )
    return tracker


def host_driver(
    job: LoadedJob,
    ctx: PartyContext,
    driver: Any,
    run_dir: Path,
    *,
    console: Any = None,
    quiet: bool = False,
    resume: bool = False,
    launched_at: float | None = None,
) -> RunResult:
    """Run ``driver`` with a tracker and checkpoints attached (``resume``: from the
    checkpoint in ``run_dir``) and always write the summary. ``launched_at`` (``time.time()``
    when the launch began) makes the start-up part of the run's duration."""
    checkpoints = checkpoints_for(job, run_dir, resume=resume)
    resumed_after = 0 if checkpoints.resumed is None else checkpoints.resumed.round
    tracker = open_tracker(
        job,
        run_dir,
        console=console,
        quiet=quiet,
        resumed_after=resumed_after,
        launched_at=launched_at,
    )
    ctx.tracker, ctx.checkpoints = tracker, checkpoints
    try:
        outcome: Outcome = driver.run(ctx)
        summary = RunSummary(
            status="completed",
            metrics=dict(outcome.metrics),
            rounds_completed=outcome.rounds_completed,
            duration_s=tracker.elapsed(),
            dropouts=dict(outcome.dropouts),
        )
        model = outcome.model
        if model is not None and isinstance(ctx.data, LocalData) and ctx.data.card is not None:
            model = {**model, **ctx.data.card.arrays()}  # so that the saved model predicts
    except BaseException as exc:
        # Record the failure first, so finished rounds are never lost; then a bug (not a
        # run failure) propagates with its traceback.
        reason = exc if ctx.interrupted is None else RunFailed(ctx.interrupted)
        # a stop from outside is said once, by whoever stopped the run (the CLI, say)
        log.log(
            logging.ERROR if ctx.interrupted is None else logging.INFO, "run failed: %s", reason
        )
        summary = tracker.failure_summary(reason)
        _finish(tracker, summary, None)
        if not isinstance(exc, ConsortiumError | KeyboardInterrupt):
            raise
    else:
        _finish(tracker, summary, model)
    return RunResult(
        status=summary.status,
        metrics=summary.metrics,
        rounds_completed=summary.rounds_completed,
        run_dir=run_dir,
        duration_s=summary.duration_s,
        dropouts=summary.dropouts,
        error=summary.error,
    )


def _finish(tracker: Any, summary: RunSummary, model: Any) -> None:
    try:
        tracker.finish(summary, model)
    finally:
        tracker.close()
