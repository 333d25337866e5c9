"""Jobs: the job file, data binding, launchers and the Python API.

Importing this package registers every built-in protocol (its settings, programs and data
binder) and launcher: the registries are complete before any job is loaded.
"""

import consortium.analytics
import consortium.horizontal
import consortium.vertical  # noqa: F401
from consortium.jobs.api import resolve_run_dir, run
from consortium.jobs.job import LAUNCHERS, Launcher, LoadedJob, bind_data
from consortium.jobs.launchers import run_inproc
from consortium.jobs.load import apply_overrides, load_job, parse_job
from consortium.jobs.party import run_party
from consortium.jobs.predict import Predictions, load_model, predict
from consortium.jobs.processes import run_processes
from consortium.jobs.result import RunResult
from consortium.jobs.spec import JobSpec

__all__ = [
    "LAUNCHERS",
    "JobSpec",
    "Launcher",
    "LoadedJob",
    "Predictions",
    "RunResult",
    "apply_overrides",
    "bind_data",
    "load_job",
    "load_model",
    "parse_job",
    "predict",
    "resolve_run_dir",
    "run",
    "run_inproc",
    "run_party",
    "run_processes",
]
