"""Running a job from Python: ``consortium.run("job.yaml")`` or ``consortium.run(dict)``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from consortium.jobs.job import LAUNCHERS, LoadedJob
from consortium.jobs.load import apply_overrides, load_job, parse_job
from consortium.jobs.result import RunResult
from consortium.tracking import default_run_dir, new_run_id

__all__ = ["resolve_run_dir", "run"]


def resolve_run_dir(job: LoadedJob, out: str | Path | None) -> Path:
    if out is not None:
        return Path(out)
    return default_run_dir(Path("runs"), job.spec.name, new_run_id())


def run(
    job: str | Path | Mapping[str, Any] | LoadedJob,
    *,
    launcher: str | None = None,
    out: str | Path | None = None,
    overrides: Iterable[str] = (),
    console: Any = None,
    quiet: bool = False,
) -> RunResult:
    """Validate and run a job; returns its result (``result.ok``, ``result.metrics``, ...).

    ``job`` is a job file path, a mapping with the same content, or an already loaded job.
    ``launcher`` overrides ``runtime.launcher``; ``out`` is the run directory (default
    ``runs/<job name>/<run id>``).
    """
    if isinstance(job, LoadedJob):
        loaded = job
    elif isinstance(job, Mapping):
        loaded = parse_job(apply_overrides(dict(job), overrides))
    else:
        loaded = load_job(job, overrides)
    name = launcher or loaded.spec.runtime.launcher
    run_dir = resolve_run_dir(loaded, out)
    return LAUNCHERS.get(name)(loaded, run_dir, console=console, quiet=quiet)
