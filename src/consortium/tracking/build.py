"""Build the tracker a run uses from a few settings, through the :data:`SINKS` registry.

The run-directory sink is always there, first and required: a run's results are never
lost silently. MLflow (when asked for) and the console follow as optional sinks, in that
order, so the console's final table is the last thing printed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from consortium.registry import Registry
from consortium.tracking.console import ConsoleSink
from consortium.tracking.mlflow_sink import MlflowSettings, MlflowSink
from consortium.tracking.rundir import RunDirectory
from consortium.tracking.tracker import Sink, Tracker

__all__ = ["SINKS", "build_tracker"]

SINKS: Registry[Callable[..., Sink]] = Registry("tracking sink")
"""Sink factories by name. Built-ins: ``run_dir`` (``path=``), ``console`` (``console=``,
``quiet=``) and ``mlflow`` (``settings=``)."""

SINKS.register("run_dir", RunDirectory)
SINKS.register("console", ConsoleSink)
SINKS.register("mlflow", MlflowSink)


def build_tracker(
    *,
    run_dir: Path,
    console: bool,
    mlflow: MlflowSettings | None,
    console_obj: Console | None = None,
    quiet: bool = False,
    curves: bool = True,
) -> Tracker:
    """A tracker writing into ``run_dir``, showing progress if ``console``, and logging to
    MLflow if ``mlflow`` settings are given; ``curves``: draw ``curves.png`` at the end.

    Raises :class:`~consortium.errors.ConfigError` when MLflow is asked for but not
    installed, before anything runs.
    """
    required: list[Sink] = [SINKS.get("run_dir")(path=run_dir, curves=curves)]
    optional: list[Sink] = []
    if mlflow is not None:
        optional.append(SINKS.get("mlflow")(settings=mlflow))
    if console:
        optional.append(SINKS.get("console")(console=console_obj, quiet=quiet))
    return Tracker(required=required, optional=optional)
