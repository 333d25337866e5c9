"""The run directory: the files that are the results of a run.

``job.yaml``, the resolved job, at start; ``metrics.jsonl``, a JSON object per round, and
``events.jsonl``, ``{"time": unix seconds, "event": name, "fields": {...}}`` per event,
each flushed line by line so a crash keeps what came before; at finish, completed or
failed, ``summary.json``, ``model.npz`` (arrays by name, no pickled objects) and
``curves.png``, drawn from the files above when matplotlib is installed (:func:`draw_report`
draws it again). All but the two logs are written atomically. Non-finite metric values
are written as ``NaN``/``Infinity``, as Python's ``json`` does, rather than dropped: a
diverged loss is a result too.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import yaml

from consortium.errors import ConfigError, ConsortiumError
from consortium.npz import replacing, save_arrays
from consortium.tracking.curves import plot_curves
from consortium.tracking.records import (
    EventValue,
    Model,
    RoundRecord,
    RunInfo,
    RunSummary,
    read_metrics,
)

__all__ = ["RunDirectory", "RunReport", "draw_report", "read_report"]

logger = logging.getLogger(__name__)

JOB_FILE = "job.yaml"
METRICS_FILE = "metrics.jsonl"
EVENTS_FILE = "events.jsonl"
SUMMARY_FILE = "summary.json"
MODEL_FILE = "model.npz"
CURVES_FILE = "curves.png"
FILES = (JOB_FILE, METRICS_FILE, EVENTS_FILE, SUMMARY_FILE, MODEL_FILE, CURVES_FILE)


class RunDirectory:
    """Writes a run's results into ``path``, the run's ``RunInfo.run_dir``; a folder that
    already holds a run's metrics or summary is refused rather than overwritten. ``curves``:
    draw ``curves.png`` at finish (``consortium report`` draws it later either way).
    """

    def __init__(
        self, *, path: Path, curves: bool = True, wall_clock: Callable[[], float] = time.time
    ) -> None:
        self.path = Path(path)
        self._curves = curves
        self._wall_clock = wall_clock
        self._header: dict[str, Any] = {}  # of summary.json: which run, of which job
        self._metrics: IO[str] | None = None
        self._events: IO[str] | None = None

    def start(self, info: RunInfo) -> None:
        if Path(info.run_dir).resolve() != self.path.resolve():
            raise ConfigError(
                f"RunInfo.run_dir {str(info.run_dir)!r} differs from the run directory "
                f"{str(self.path)!r} this sink writes to; build both from the same path"
            )
        header = {"run_id": info.run_id, "job": info.job_name, "job_hash": info.job_hash}
        if info.resumed_after:
            self._reopen(info.resumed_after)
            self._header = header
            return
        self.path.mkdir(parents=True, exist_ok=True)
        for name in (METRICS_FILE, SUMMARY_FILE):
            if (self.path / name).exists():
                raise ConfigError(
                    f"{self.path} already holds a run ({name}); give another folder "
                    "(--out), or none for a new run directory"
                )
        self._header = header  # from here on, finish() writes this folder's summary
        # through JSON: plain dicts and lists, which yaml.safe_dump accepts
        job = json.loads(json.dumps(info.resolved_job, default=_json_default))
        text = yaml.safe_dump(job, sort_keys=False, allow_unicode=True)
        _write_atomically(self.path / JOB_FILE, text)
        self._metrics = open(self.path / METRICS_FILE, "x", encoding="utf-8")  # noqa: SIM115
        self._events = open(self.path / EVENTS_FILE, "x", encoding="utf-8")  # noqa: SIM115

    def _reopen(self, rounds: int) -> None:
        """Go on with the run in this folder after its first ``rounds`` rounds: the rounds
        recorded after them (they run again) and the results of the earlier ending go."""
        kept = [r for r in read_metrics(self.path / METRICS_FILE) if r.round <= rounds]
        if [r.round for r in kept] != list(range(1, rounds + 1)):
            raise ConfigError(
                f"{self.path / METRICS_FILE}: rounds 1 to {rounds} are not all recorded; "
                "the folder does not belong to the checkpoint"
            )
        text = "".join(json.dumps(r.to_json(), default=_json_default) + "\n" for r in kept)
        _write_atomically(self.path / METRICS_FILE, text)
        for name in (SUMMARY_FILE, MODEL_FILE, CURVES_FILE):
            (self.path / name).unlink(missing_ok=True)
        self._metrics = open(self.path / METRICS_FILE, "a", encoding="utf-8")  # noqa: SIM115
        self._events = open(self.path / EVENTS_FILE, "a", encoding="utf-8")  # noqa: SIM115
        self.event("resumed", after_round=rounds)

    def round(self, record: RoundRecord) -> None:
        self._append(self._metrics, record.to_json())

    def event(self, name: str, **fields: EventValue) -> None:
        self._append(self._events, {"time": self._wall_clock(), "event": name, "fields": fields})

    def finish(self, summary: RunSummary, model: Model | None) -> None:
        if not self._header:  # never started, or its start failed: the folder may be another run's
            raise ConsortiumError("RunDirectory.finish() before start()")
        try:
            if model is not None:
                save_arrays(self.path / MODEL_FILE, model)
        finally:
            # The summary is written even if the model cannot be: it holds the metrics.
            document = {
                **self._header,
                "status": summary.status,
                "metrics": {name: float(value) for name, value in summary.metrics.items()},
                "rounds": summary.rounds_completed,
                "duration_s": float(summary.duration_s),
                "dropouts": dict(summary.dropouts),
                "error": summary.error,
            }
            text = json.dumps(document, indent=2, default=_json_default) + "\n"
            _write_atomically(self.path / SUMMARY_FILE, text)
        if not self._curves:
            return
        # The plot is only a view of metrics.jsonl, which is safe on disk already, so a
        # plotting problem must not turn a completed run into a failed one.
        try:
            draw_report(self.path)
        except ConfigError as exc:  # matplotlib is not installed, say
            logger.warning("%s was not drawn: %s", CURVES_FILE, exc)
        except Exception:
            logger.warning("could not draw %s from %s", CURVES_FILE, METRICS_FILE, exc_info=True)

    def close(self) -> None:
        for handle in (self._metrics, self._events):
            if handle is not None:
                handle.close()
        self._metrics = self._events = None

    def _append(self, log: IO[str] | None, line: Mapping[str, Any]) -> None:
        if log is None:
            raise ConsortiumError("RunDirectory used before start() or after close()")
        log.write(json.dumps(line, default=_json_default) + "\n")
        log.flush()


@dataclass(frozen=True, kw_only=True)
class RunReport:
    """What ``curves.png`` is drawn from: a run directory's files, read back."""

    records: list[RoundRecord]
    job: Mapping[str, Any]
    """The resolved job of ``job.yaml`` (empty when there is none)."""
    title: str
    """``<job> — run <run id>``, with the status when the run did not complete."""


def read_report(run_dir: Path) -> RunReport:
    """Read ``run_dir``'s ``metrics.jsonl``, ``job.yaml`` and ``summary.json``; without a
    summary (the run never finished) the title says ``unfinished``, with the folder's name.
    Raises :class:`~consortium.errors.ConfigError`, naming the file, when ``run_dir`` or its
    ``metrics.jsonl`` is missing or unreadable, or another file is there but unreadable.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: no such run directory")
    records = read_metrics(run_dir / METRICS_FILE)
    job = _read_optional(run_dir / JOB_FILE, yaml.safe_load)
    summary = _read_optional(run_dir / SUMMARY_FILE, json.loads)
    name = str(summary.get("job") or job.get("name") or "job")
    run_id = str(summary.get("run_id") or run_dir.name)
    status = str(summary.get("status", "unfinished"))
    title = f"{name} — run {run_id}" + ("" if status == "completed" else f" ({status})")
    return RunReport(records=records, job=job, title=title)


def draw_report(run_dir: Path) -> Path | None:
    """Draw ``run_dir/curves.png`` (again) from the files :func:`read_report` reads; its
    path, or None when no metric gets a panel (an analytics run records none). Raises
    :class:`~consortium.errors.ConfigError` as :func:`read_report` does, and when matplotlib
    is not installed."""
    report = read_report(run_dir)
    path = Path(run_dir) / CURVES_FILE
    return path if plot_curves(report.records, path, job=report.job, title=report.title) else None


def _read_optional(path: Path, parse: Callable[[str], Any]) -> dict[str, Any]:
    """The mapping a JSON or YAML file holds; empty when there is no such file."""
    try:
        document = parse(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot be read: {exc}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: cannot be read: not a mapping")
    return document


def _write_atomically(path: Path, text: str) -> None:
    with replacing(path) as temporary:
        temporary.write_bytes(text.encode("utf-8"))


def _json_default(obj: object) -> Any:
    """numpy scalars, paths and mappings, which sinks receive from user code, as plain JSON."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, Mapping):
        return dict(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")
