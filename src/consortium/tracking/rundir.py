"""The run directory: the files that are the results of a run.

Layout of ``run_dir``:

``job.yaml``
    The resolved job, written at start.
``metrics.jsonl``
    One JSON object per round, flushed line by line so a crash keeps finished rounds.
``events.jsonl``
    One JSON object per event: ``{"time": unix seconds, "event": name, "fields": {...}}``.
``summary.json``
    Written at finish, completed or failed; atomically (temp file + ``os.replace``).
``model.npz``
    The final model, arrays by name, in numpy's ``.npz`` format with no pickled objects.
``curves.png``
    One panel per metric over rounds, when matplotlib is installed.

Non-finite metric values are written as ``NaN``/``Infinity``, as Python's ``json`` does,
rather than dropped: a diverged loss is a result too.
"""

from __future__ import annotations

import json
import logging
import os
import time
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np
import yaml

from consortium.errors import ConfigError, ConsortiumError
from consortium.tracking.curves import plot_curves
from consortium.tracking.records import RoundRecord, RunInfo, RunSummary, read_metrics
from consortium.tracking.tracker import EventValue, Model

__all__ = ["RunDirectory", "save_model"]

logger = logging.getLogger(__name__)

JOB_FILE = "job.yaml"
METRICS_FILE = "metrics.jsonl"
EVENTS_FILE = "events.jsonl"
SUMMARY_FILE = "summary.json"
MODEL_FILE = "model.npz"
CURVES_FILE = "curves.png"


class RunDirectory:
    """Writes a run's results into ``path``. Meant as the tracker's required sink.

    ``path`` must be the run's ``RunInfo.run_dir``; a folder that already holds a run's
    metrics or summary is refused rather than overwritten.
    """

    def __init__(self, *, path: Path, wall_clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._wall_clock = wall_clock
        self._info: RunInfo | None = None
        self._metrics: IO[str] | None = None
        self._events: IO[str] | None = None

    def start(self, info: RunInfo) -> None:
        if Path(info.run_dir).resolve() != self.path.resolve():
            raise ConfigError(
                f"RunInfo.run_dir {str(info.run_dir)!r} differs from the run directory "
                f"{str(self.path)!r} this sink writes to; build both from the same path"
            )
        self.path.mkdir(parents=True, exist_ok=True)
        for name in (METRICS_FILE, SUMMARY_FILE):
            if (self.path / name).exists():
                raise ConfigError(
                    f"{self.path} already holds a run ({name}); use a new run id "
                    "(new_run_id()) or another folder"
                )
        self._info = info
        text = yaml.safe_dump(_plain(info.resolved_job), sort_keys=False, allow_unicode=True)
        _write_atomically(self.path / JOB_FILE, text.encode("utf-8"))
        self._metrics = open(self.path / METRICS_FILE, "x", encoding="utf-8")  # noqa: SIM115
        self._events = open(self.path / EVENTS_FILE, "x", encoding="utf-8")  # noqa: SIM115

    def round(self, record: RoundRecord) -> None:
        _write_line(self._open(self._metrics), record.to_json())

    def event(self, name: str, **fields: EventValue) -> None:
        line = {"time": self._wall_clock(), "event": name, "fields": fields}
        _write_line(self._open(self._events), line)

    def finish(self, summary: RunSummary, model: Model | None) -> None:
        info = self._info
        if info is None:
            raise ConsortiumError("RunDirectory.finish() before start()")
        try:
            if model is not None:
                save_model(self.path / MODEL_FILE, model)
        finally:
            # The summary is written even if the model cannot be: it holds the metrics.
            self._write_summary(info, summary)
        try:
            plot_curves(read_metrics(self.path / METRICS_FILE), self.path / CURVES_FILE)
        except Exception:
            # The plot is only a view of metrics.jsonl, which is safe on disk already, so
            # a plotting problem must not turn a completed run into a failed one.
            logger.warning("could not draw %s from %s", CURVES_FILE, METRICS_FILE, exc_info=True)

    def close(self) -> None:
        for handle in (self._metrics, self._events):
            if handle is not None:
                handle.close()
        self._metrics = self._events = None

    def _write_summary(self, info: RunInfo, summary: RunSummary) -> None:
        document = {
            "run_id": info.run_id,
            "job": info.job_name,
            "job_hash": info.job_hash,
            "status": summary.status,
            "metrics": {name: float(value) for name, value in summary.metrics.items()},
            "rounds": summary.rounds_completed,
            "duration_s": float(summary.duration_s),
            "dropouts": dict(summary.dropouts),
            "error": summary.error,
        }
        text = json.dumps(document, indent=2, default=_json_default) + "\n"
        _write_atomically(self.path / SUMMARY_FILE, text.encode("utf-8"))

    def _open(self, handle: IO[str] | None) -> IO[str]:
        if handle is None:
            raise ConsortiumError("RunDirectory used before start() or after close()")
        return handle


def save_model(path: Path, model: Model) -> None:
    """Save named arrays as ``.npz`` (readable with ``np.load(path, allow_pickle=False)``).

    Written member by member with ``np.lib.format.write_array(allow_pickle=False)`` rather
    than ``np.savez(file, **model)``: that refuses layers named ``file`` and would pickle
    object arrays. Object arrays are refused here. The file is replaced atomically.
    """
    arrays: dict[str, np.ndarray] = {}
    for name, value in model.items():
        if not isinstance(name, str) or not name:
            raise ConsortiumError(f"model array names must be non-empty strings, got {name!r}")
        array = np.asarray(value)
        if array.dtype.hasobject:
            raise ConsortiumError(
                f"model array {name!r} has dtype {array.dtype}; only numeric arrays are saved "
                "(never pickled objects)"
            )
        arrays[name] = array
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_STORED) as archive:
            for name, array in arrays.items():
                with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, array, allow_pickle=False)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _write_line(handle: IO[str], obj: Mapping[str, Any]) -> None:
    handle.write(json.dumps(obj, default=_json_default) + "\n")
    handle.flush()


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _json_default(obj: object) -> Any:
    """numpy scalars and paths, which sinks receive from user code, as plain JSON."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _plain(obj: Any) -> Any:
    """Mappings and sequences as plain dicts and lists, which ``yaml.safe_dump`` accepts."""
    if isinstance(obj, Mapping):
        return {str(key): _plain(value) for key, value in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(item) for item in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj
