"""Running a job from Python: ``consortium.run("job.yaml")`` or ``consortium.run(dict)``,
optionally with Python objects in place of the job's registered strategy, client or dataset
(a simulation in this process)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from consortium.errors import ConfigError
from consortium.horizontal import CLIENTS, STRATEGIES, Client, Strategy
from consortium.jobs.hosting import checkpoints_for
from consortium.jobs.job import LAUNCHERS, LoadedJob
from consortium.jobs.load import apply_overrides, load_job, parse_job
from consortium.jobs.result import RunResult
from consortium.ml import DATASETS, Dataset
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
    resume: bool = False,
    strategy: Strategy[Any] | None = None,
    client: Client | None = None,
    dataset: Dataset | Callable[..., Dataset] | None = None,
) -> RunResult:
    """Validate and run a job; returns its result (``result.ok``, ``result.metrics``, ...).

    ``job`` is a job file path, a mapping with the same content, or an already loaded job.
    ``launcher`` overrides ``runtime.launcher``; ``out`` is the run directory (default
    ``runs/<job name>/<run id>``); ``overrides`` are ``path.to.key=value`` settings.
    ``resume``: go on from the checkpoint in ``out`` (the same job and overrides, any
    launcher), after the last round it saved.

    ``strategy`` (a :class:`~consortium.strategy.Strategy`), ``client`` (see
    :mod:`consortium.client`) and ``dataset`` (a :class:`~consortium.data.Dataset`, or a
    loader ``(*, seed) -> Dataset``) replace what the job names, for a run of the in-process
    launcher: they are registered in this process as ``python:<name>`` and the job names
    them so (its resolved file and tracking say so). Other launchers start processes that
    cannot see them; register them in a module named under ``plugins:`` instead.
    """
    extra = _register_objects(strategy=strategy, client=client, dataset=dataset)
    if isinstance(job, LoadedJob):
        if extra or tuple(overrides):
            raise ConfigError(
                "overrides and Python objects need the job file or mapping, not a loaded job"
            )
        loaded = job
    elif isinstance(job, Mapping):
        loaded = parse_job(apply_overrides(copy.deepcopy(dict(job)), [*overrides, *extra]))
    else:
        loaded = load_job(job, [*overrides, *extra])
    name = launcher or loaded.spec.runtime.launcher
    if extra and name != "inproc":
        raise ConfigError(
            f"strategy=, client= and dataset= objects run with the inproc launcher only, not "
            f"{name!r}: register them in a module named under plugins: instead"
        )
    if resume and out is None:
        raise ConfigError("to resume a run, give its run directory (--out)")
    run_dir = resolve_run_dir(loaded, out)
    if resume:
        checkpoints_for(loaded, run_dir, resume=True)  # refused here, before anything starts
    return LAUNCHERS.get(name)(loaded, run_dir, console=console, quiet=quiet, resume=resume)


def _register_objects(
    *,
    strategy: Strategy[Any] | None,
    client: Client | None,
    dataset: Dataset | Callable[..., Dataset] | None,
) -> list[str]:
    """Register the given objects under ``python:`` names; the overrides that name them."""
    out: list[str] = []
    if strategy is not None:
        if not isinstance(strategy, Strategy):
            raise ConfigError(
                f"strategy= must be a consortium.strategy.Strategy, got {type(strategy).__name__}"
            )
        name = f"python:{type(strategy).__qualname__}"
        STRATEGIES.register(name, lambda: strategy, force=True)
        out += [f"algorithm.strategy.name={name}", "algorithm.strategy.args={}"]
    if client is not None:
        if not callable(client):
            raise ConfigError(f"client= must be callable, got {type(client).__name__}")
        name = f"python:{getattr(client, '__qualname__', type(client).__qualname__)}"
        CLIENTS.register(name, client, force=True)
        out.append(f"algorithm.client.name={name}")
    if dataset is not None:
        if isinstance(dataset, Dataset):
            name, loader = f"python:{dataset.name}", lambda *, seed: dataset
        elif callable(dataset):
            name, loader = f"python:{getattr(dataset, '__qualname__', 'dataset')}", dataset
        else:
            raise ConfigError(
                f"dataset= must be a Dataset or a loader, got {type(dataset).__name__}"
            )
        DATASETS.register(name, loader, force=True)
        out += [f"data.dataset.name={name}", "data.dataset.args={}"]
    return out
