"""What a run records: a run directory, progress on the console, MLflow.

Importing this package imports neither mlflow nor matplotlib; each is imported when first
used.
"""

from consortium.tracking.console import ConsoleSink
from consortium.tracking.curves import PLOT_MISSING
from consortium.tracking.mlflow_sink import MlflowSettings, MlflowSink
from consortium.tracking.panels import choose_panels
from consortium.tracking.records import (
    EventValue,
    Model,
    ParamValue,
    RoundRecord,
    RunInfo,
    RunSummary,
    default_run_dir,
    flatten_params,
    hash_job,
    new_run_id,
)
from consortium.tracking.rundir import RunDirectory, draw_report, read_report
from consortium.tracking.tracker import SINKS, Sink, Tracker, build_tracker

__all__ = [
    "PLOT_MISSING",
    "SINKS",
    "ConsoleSink",
    "EventValue",
    "MlflowSettings",
    "MlflowSink",
    "Model",
    "ParamValue",
    "RoundRecord",
    "RunDirectory",
    "RunInfo",
    "RunSummary",
    "Sink",
    "Tracker",
    "build_tracker",
    "choose_panels",
    "default_run_dir",
    "draw_report",
    "flatten_params",
    "hash_job",
    "new_run_id",
    "read_report",
]
