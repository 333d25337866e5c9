"""What a run records: a run directory, progress on the console, MLflow.

The runtime calls a :class:`Tracker` (``start``, ``round``, ``event``, ``finish``,
``close``), which fans each call out to its sinks. Importing this package imports neither
mlflow nor matplotlib; each is imported when first used.
"""

from consortium.tracking.build import SINKS, build_tracker
from consortium.tracking.console import WARNING_EVENTS, ConsoleSink
from consortium.tracking.curves import plot_curves
from consortium.tracking.mlflow_sink import (
    MLFLOW_MISSING,
    MlflowSettings,
    MlflowSink,
    default_tracking_uri,
)
from consortium.tracking.records import (
    ParamValue,
    RoundRecord,
    RunInfo,
    RunStatus,
    RunSummary,
    default_run_dir,
    flatten_params,
    hash_job,
    new_run_id,
)
from consortium.tracking.rundir import RunDirectory, save_model
from consortium.tracking.tracker import EventValue, Model, Sink, Tracker

__all__ = [
    "MLFLOW_MISSING",
    "SINKS",
    "WARNING_EVENTS",
    "ConsoleSink",
    "EventValue",
    "MlflowSettings",
    "MlflowSink",
    "Model",
    "ParamValue",
    "RoundRecord",
    "RunDirectory",
    "RunInfo",
    "RunStatus",
    "RunSummary",
    "Sink",
    "Tracker",
    "build_tracker",
    "default_run_dir",
    "default_tracking_uri",
    "flatten_params",
    "hash_job",
    "new_run_id",
    "plot_curves",
    "save_model",
]
