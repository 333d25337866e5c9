"""The sink interface, the :class:`Tracker` that fans each call out to its sinks, and
:func:`build_tracker`, which builds a run's tracker through the :data:`SINKS` registry.

Required sinks (the run directory) hold the results of the run: their failures are raised,
because results must never be lost silently. Optional sinks (console, MLflow) are
conveniences: one that raises is logged and disabled, and the run goes on. Calls reach the
required sinks first, then the optional ones, each group in the order given. Sinks rely on
it: the MLflow sink logs the files the run directory wrote in the same ``finish``, and the
console's final table, last, is the last thing printed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

from rich.console import Console

from consortium.clock import Clock, SystemClock
from consortium.errors import ConsortiumError
from consortium.registry import Registry
from consortium.tracking.console import ConsoleSink
from consortium.tracking.mlflow_sink import MlflowSettings, MlflowSink
from consortium.tracking.records import EventValue, Model, RoundRecord, RunInfo, RunSummary
from consortium.tracking.rundir import RunDirectory

__all__ = ["SINKS", "Sink", "Tracker", "build_tracker"]

logger = logging.getLogger(__name__)


class Sink(Protocol):
    """Something that records a run; every method is called under the tracker's lock:
    :meth:`start` as the run begins, :meth:`round` as each round closes, :meth:`event` for
    something worth noting (a dropout, a party joined, a warning), :meth:`finish` when the
    run ended, completed or failed, and :meth:`close` once, after ``finish`` if any."""

    def start(self, info: RunInfo) -> None: ...

    def round(self, record: RoundRecord) -> None: ...

    def event(self, name: str, **fields: EventValue) -> None: ...

    def finish(self, summary: RunSummary, model: Model | None) -> None: ...

    def close(self) -> None: ...


@dataclass
class _Entry:
    sink: Sink
    required: bool
    enabled: bool = True


class Tracker:
    """Fans every call out to its sinks (see the module docs).

    Use it as a context manager: leaving the block on an exception after :meth:`start` and
    before :meth:`finish` records a failed summary (if even that fails, it is logged and the
    block's own exception goes on), and leaving it in any way closes every sink.
    """

    def __init__(
        self,
        *,
        required: Sequence[Sink] = (),
        optional: Sequence[Sink] = (),
        clock: Clock | None = None,
    ) -> None:
        self._entries = [_Entry(s, required=True) for s in required]
        self._entries += [_Entry(s, required=False) for s in optional]
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._lock = threading.RLock()
        self._started_at: float | None = None
        self._startup_s = 0.0
        self._finished = False
        self._closed = False
        self._rounds_completed = 0
        self._last_metrics: Mapping[str, float] = {}
        self._dropouts: dict[str, str] = {}

    @property
    def sinks(self) -> tuple[Sink, ...]:
        """Every sink, in call order."""
        return tuple(e.sink for e in self._entries)

    @property
    def disabled(self) -> tuple[Sink, ...]:
        """Optional sinks switched off after they raised."""
        return tuple(e.sink for e in self._entries if not e.enabled)

    def elapsed(self) -> float:
        """Seconds since the launch: the run's start-up and the time since :meth:`start`
        (0 before it)."""
        if self._started_at is None:
            return 0.0
        return self._startup_s + self._clock.now() - self._started_at

    def start(self, info: RunInfo) -> None:
        with self._lock:
            self._check("start")
            self._started_at = self._clock.now()
            self._startup_s = info.startup_s
            self._dispatch("start", lambda sink: sink.start(info))

    def round(self, record: RoundRecord) -> None:
        with self._lock:
            self._check("round")
            self._rounds_completed += 1
            self._last_metrics = record.metrics
            self._dropouts.update(record.failures)
            self._dispatch("round", lambda sink: sink.round(record))

    def event(self, name: str, **fields: EventValue) -> None:
        with self._lock:
            self._check("event")
            self._dispatch("event", lambda sink: sink.event(name, **fields))

    def finish(self, summary: RunSummary, model: Model | None = None) -> None:
        with self._lock:
            self._check("finish")
            self._finished = True
            self._dispatch("finish", lambda sink: sink.finish(summary, model))

    def close(self) -> None:
        """Close every sink, disabled ones too, once. Raises the first required sink's error."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._dispatch("close", lambda sink: sink.close(), include_disabled=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc is not None and self._started_at is not None and not self._finished:
                try:
                    self.finish(self.failure_summary(exc))
                except Exception:
                    # The run's own error is the one to raise; this one must not hide it.
                    logger.exception("could not record the failed run (%s)", type(exc).__name__)
        finally:
            self.close()

    def failure_summary(self, exc: BaseException) -> RunSummary:
        """How the run ended when ``exc`` stopped it: finished rounds and metrics are kept."""
        message = str(exc)
        return RunSummary(
            status="failed",
            metrics=self._last_metrics,
            rounds_completed=self._rounds_completed,
            duration_s=self.elapsed(),
            dropouts=dict(self._dropouts),
            error=f"{type(exc).__name__}: {message}" if message else type(exc).__name__,
        )

    def _check(self, method: str) -> None:
        if self._closed:
            raise ConsortiumError(f"Tracker.{method}() after close(); start a new tracker")
        if method == "start" and self._started_at is not None:
            raise ConsortiumError("Tracker.start() was already called; one tracker per run")
        if method != "start" and self._started_at is None:
            raise ConsortiumError(f"Tracker.{method}() before start(); call start(info) first")
        if self._finished:
            raise ConsortiumError(f"Tracker.{method}() after finish(); the run has ended")

    def _dispatch(
        self, method: str, call: Callable[[Sink], None], *, include_disabled: bool = False
    ) -> None:
        error: Exception | None = None
        for entry in self._entries:
            if not (entry.enabled or include_disabled):
                continue
            try:
                call(entry.sink)
            except Exception as exc:
                name = type(entry.sink).__name__
                if entry.required and error is None:
                    error = exc
                elif entry.required:
                    logger.error("tracking sink %s failed in %s()", name, method, exc_info=exc)
                elif entry.enabled:
                    entry.enabled = False
                    logger.warning(
                        "tracking sink %s failed in %s() and is disabled for the rest of the run",
                        name,
                        method,
                        exc_info=exc,
                    )
                else:
                    logger.debug("disabled tracking sink %s failed in %s()", name, method)
        if error is not None:
            raise error


SINKS: Registry[Callable[..., Sink]] = Registry("tracking sink")
"""Sink factories by name: ``run_dir`` (``path=``, ``curves=``), ``console`` (``console=``,
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
    curves: bool = True,
) -> Tracker:
    """A tracker writing into ``run_dir`` (required), then logging to MLflow if ``mlflow``
    settings are given and showing progress if ``console`` (optional); ``curves``: draw
    ``curves.png`` at the end. Raises :class:`~consortium.errors.ConfigError` when MLflow
    is asked for but not installed, before anything runs."""
    optional: list[Sink] = []
    if mlflow is not None:
        optional.append(SINKS.get("mlflow")(settings=mlflow))
    if console:
        optional.append(SINKS.get("console")(console=console_obj))
    return Tracker(required=[SINKS.get("run_dir")(path=run_dir, curves=curves)], optional=optional)
