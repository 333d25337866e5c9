"""What a run records: a run directory, progress on the console, MLflow.

Importing this package imports neither mlflow nor matplotlib; each is imported when first
used.
"""

from consortium.tracking.console import ConsoleSink
from consortium.tracking.curves import PLOT_MISSING, curves_figure, plot_curves
from consortium.tracking.mlflow_sink import (
    MLFLOW_MISSING,
    MlflowSettings,
    MlflowSink,
    default_tracking_uri,
)
from consortium.tracking.panels import Panel, choose_panels, row_lengths
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
from consortium.tracking.rundir import RunDirectory, draw_report, read_report, save_model
from consortium.tracking.tracker import SINKS, Sink, Tracker, build_tracker

__all__ = [
    "MLFLOW_MISSING",
    "PLOT_MISSING",
    "SINKS",
    "ConsoleSink",
    "EventValue",
    "MlflowSettings",
    "MlflowSink",
    "Model",
    "Panel",
    "ParamValue",
    "RoundRecord",
    "RunDirectory",
    "RunInfo",
    "RunSummary",
    "Sink",
    "Tracker",
    "build_tracker",
    "choose_panels",
    "curves_figure",
    "default_run_dir",
    "default_tracking_uri",
    "draw_report",
    "flatten_params",
    "hash_job",
    "new_run_id",
    "plot_curves",
    "read_report",
    "row_lengths",
    "save_model",
]
