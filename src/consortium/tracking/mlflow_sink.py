"""Runs in MLflow: params, per-round metrics, final metrics, tags and artifacts.

mlflow is optional (the ``mlflow`` extra; ``mlflow-skinny`` is enough) and imported when an
:class:`MlflowSink` is built, so a missing install fails before the run, not during it.
Metrics: each global metric by name, ``party/<party>/<name>`` and ``round/*`` at
``step=round``; ``final/<name>`` and ``run/*`` at finish, with the run directory's files as
artifacts. The rounds' metrics go out in one ``log_batch`` once ``flush_s`` seconds have
passed since the last, and at finish: each batch is one request or transaction of
MLflow's store, however many rounds it holds.

The store is ``MlflowSettings.tracking_uri`` if given, else ``MLFLOW_TRACKING_URI`` if set
(MLflow's own convention, e.g. a team server), else :func:`default_tracking_uri` next to
the run directories of the job. MLflow 3 opens a file store only when
``MLFLOW_ALLOW_FILE_STORE`` is set; the sink sets it only while it opens one (MLflow then
caches the store).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import posixpath
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from consortium.errors import ConfigError, ConsortiumError
from consortium.tracking import rundir
from consortium.tracking.records import EventValue, Model, RoundRecord, RunInfo, RunSummary

if TYPE_CHECKING:
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

__all__ = ["MLFLOW_MISSING", "MlflowSettings", "MlflowSink", "default_tracking_uri"]

logger = logging.getLogger(__name__)

MLFLOW_MISSING = "MLflow tracking needs the 'mlflow' extra: pip install 'consortium[mlflow]'"

_ALLOW_FILE_STORE = "MLFLOW_ALLOW_FILE_STORE"
_UNSAFE_KEY_CHARS = re.compile(r"[^\w./\- ]")


@dataclass(frozen=True, kw_only=True)
class MlflowSettings:
    """Where MLflow runs go. ``None`` picks the defaults described in the module docs."""

    tracking_uri: str | None = None
    experiment: str | None = None
    """Experiment name; the job name by default."""


def default_tracking_uri(base: Path) -> str:
    """A local MLflow store in ``base``: ``sqlite:///<base>/mlflow.db`` when SQLAlchemy and
    Alembic are installed (MLflow's recommended local store, which ``mlflow-skinny`` alone
    cannot open), else the file store ``<base>/mlruns``."""
    base = Path(base).resolve()
    try:
        sqlite = all(importlib.util.find_spec(name) for name in ("sqlalchemy", "alembic"))
    except (ImportError, ValueError):  # ValueError: in sys.modules without a spec
        sqlite = False
    return f"sqlite:///{(base / 'mlflow.db').as_posix()}" if sqlite else (base / "mlruns").as_uri()


class MlflowSink:
    """Logs one MLflow run per Consortium run. Meant as an optional sink, after the
    run-directory sink, whose files it logs as artifacts at finish. ``flush_s``: seconds
    between batches of the rounds' metrics (0: every round), as ``clock`` measures them.
    """

    def __init__(
        self,
        *,
        settings: MlflowSettings | None = None,
        flush_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        try:
            import mlflow  # noqa: F401  (imported here to fail before the run, not during it)
        except ImportError as exc:
            raise ConfigError(MLFLOW_MISSING) from exc
        if not flush_s >= 0.0:
            raise ConfigError(f"flush_s must be a number of seconds >= 0, got {flush_s!r}")
        self.settings = settings if settings is not None else MlflowSettings()
        self.run_id: str | None = None  # MLflow's id of the run, once started
        self._flush_s, self._clock = flush_s, clock
        self._client: MlflowClient | None = None
        self._run_dir = Path()
        self._terminated = False
        self._pending: list[Metric] = []
        self._sent_at = 0.0

    def start(self, info: RunInfo) -> None:
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        uri = self.settings.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            Path(info.run_dir).parent.mkdir(parents=True, exist_ok=True)
            uri = default_tracking_uri(Path(info.run_dir).parent)
        allow = urlparse(uri).scheme in ("", "file") and _ALLOW_FILE_STORE not in os.environ
        if allow:
            os.environ[_ALLOW_FILE_STORE] = "true"
        try:
            client = MlflowClient(tracking_uri=uri)
        finally:
            if allow:
                os.environ.pop(_ALLOW_FILE_STORE, None)
        experiment_id = _experiment_id(client, self.settings.experiment or info.job_name)
        tags = {
            "consortium.job": info.job_name,
            "consortium.job_hash": info.job_hash,
            "consortium.run_id": info.run_id,
            "consortium.status": "running",
        }
        if info.resumed_after:  # a new MLflow run holds the rounds after the checkpoint
            tags["consortium.resumed_after"] = str(info.resumed_after)
        run = client.create_run(experiment_id, run_name=info.run_id, tags=tags)
        self._client, self.run_id, self._run_dir = client, run.info.run_id, Path(info.run_dir)
        logger.info("MLflow run %s in experiment %s at %s", self.run_id, experiment_id, uri)
        limit = _limit("MAX_PARAM_VAL_LENGTH", 500)
        values = {_key(name): _cut(str(value), limit) for name, value in info.params.items()}
        params = [Param(k, v) for k, v in values.items()]
        batch = _limit("MAX_PARAMS_TAGS_PER_BATCH", 100)
        for start in range(0, len(params), batch):
            client.log_batch(self.run_id, params=params[start : start + batch])
        self._sent_at = self._clock()

    def round(self, record: RoundRecord) -> None:
        values: dict[str, float] = {_key(name): v for name, v in record.metrics.items()}
        for party, metrics in record.party_metrics.items():
            values.update({_key(f"party/{party}/{name}"): v for name, v in metrics.items()})
        values["round/duration_s"] = record.duration_s
        values["round/participants"] = len(record.participants)
        values["round/failures"] = len(record.failures)
        self._hold(values, step=record.round)
        if self._clock() - self._sent_at >= self._flush_s:
            self._send()

    def event(self, name: str, **fields: EventValue) -> None:
        """Events are not sent one by one; ``events.jsonl`` is logged as an artifact."""

    def finish(self, summary: RunSummary, model: Model | None) -> None:
        from mlflow.entities import RunTag

        client, run_id = self._started()
        try:
            values = {_key(f"final/{name}"): v for name, v in summary.metrics.items()}
            values["run/duration_s"] = summary.duration_s
            values["run/rounds_completed"] = summary.rounds_completed
            self._hold(values, step=summary.rounds_completed)
            self._send()
            tags = [RunTag("consortium.status", summary.status)]
            if summary.error:
                error = _cut(summary.error, _limit("MAX_TAG_VAL_LENGTH", 5000))
                tags.append(RunTag("consortium.error", error))
            client.log_batch(run_id, tags=tags)
            for name in rundir.FILES:
                if (self._run_dir / name).is_file():
                    client.log_artifact(run_id, str(self._run_dir / name))
        finally:
            client.set_terminated(run_id, "FINISHED" if summary.status == "completed" else "FAILED")
            self._terminated = True

    def close(self) -> None:
        """A run that never finished is marked KILLED, so it does not look alive; the
        rounds' metrics not sent yet are sent first."""
        if self._client is not None and self.run_id is not None and not self._terminated:
            self._terminated = True
            try:
                self._send()
            finally:
                self._client.set_terminated(self.run_id, "KILLED")

    def _started(self) -> tuple[MlflowClient, str]:
        if self._client is None or self.run_id is None:
            raise ConsortiumError("MlflowSink used before start()")
        return self._client, self.run_id

    def _hold(self, values: Mapping[str, float], *, step: int) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        self._pending += [Metric(k, float(v), stamp, step) for k, v in values.items()]

    def _send(self) -> None:
        """Log the held metrics, in as few batches as MLflow takes."""
        client, run_id = self._started()
        pending, self._pending = self._pending, []
        self._sent_at = self._clock()
        batch = _limit("MAX_METRICS_PER_BATCH", 1000)
        for start in range(0, len(pending), batch):
            client.log_batch(run_id, metrics=pending[start : start + batch])


def _experiment_id(client: MlflowClient, name: str) -> str:
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is None:
        try:
            return client.create_experiment(name)
        except MlflowException:
            found = client.get_experiment_by_name(name)  # created meanwhile by another run
            if found is None:
                raise
    if found.lifecycle_stage == "deleted":
        raise ConfigError(
            f"MLflow experiment {name!r} is deleted; restore it or choose another experiment"
        )
    return str(found.experiment_id)


def _limit(name: str, fallback: int) -> int:
    """One of MLflow's limits, from the installed MLflow when it defines it."""
    from mlflow.utils import validation

    return int(getattr(validation, name, fallback))


def _key(name: str) -> str:
    """A valid MLflow param or metric key: unsupported characters become ``_``, and so do
    slashes where MLflow would read the key as a path that is not unique (``a//b``)."""
    key = _UNSAFE_KEY_CHARS.sub("_", name)
    if posixpath.normpath(key) != key or key.startswith(("/", "..")):
        key = key.replace("/", "_")
    return _cut(key or "_", _limit("MAX_ENTITY_KEY_LENGTH", 250))


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
