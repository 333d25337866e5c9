"""The sink interface and the :class:`Tracker` that fans each call out to its sinks.

The runtime talks to one tracker; the tracker talks to any number of sinks (run directory,
console, MLflow, ...). Sinks come in two kinds:

* **required** sinks (the run directory) hold the results of the run. Their failures are
  raised to the caller, because results must never be lost silently.
* **optional** sinks (console, MLflow) are conveniences. One that raises is logged and
  disabled; the run goes on with the others.

Calls reach the sinks in a fixed order: required sinks first, then optional ones, each
group in the order given. Sinks may rely on it: the MLflow sink logs the files the
run-directory sink wrote in the same ``finish`` call.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self

import numpy as np

from consortium.clock import Clock, SystemClock
from consortium.errors import ConsortiumError
from consortium.tracking.records import RoundRecord, RunInfo, RunSummary

__all__ = ["EventValue", "Model", "Sink", "Tracker"]

logger = logging.getLogger(__name__)

EventValue = str | int | float
"""A field of an event: ``tracker.event("dropout", party="bank-2", round=3)``."""

Model = Mapping[str, np.ndarray]
"""Model weights as named arrays."""


class Sink(Protocol):
    """Something that records a run. Every method is called under the tracker's lock."""

    def start(self, info: RunInfo) -> None:
        """The run begins."""
        ...

    def round(self, record: RoundRecord) -> None:
        """A round has closed."""
        ...

    def event(self, name: str, **fields: EventValue) -> None:
        """Something worth noting happened: a dropout, a party joined, a warning."""
        ...

    def finish(self, summary: RunSummary, model: Model | None) -> None:
        """The run ended, completed or failed; ``model`` is the final model, if any."""
        ...

    def close(self) -> None:
        """Release files, displays and connections. Called once, after ``finish`` if any."""
        ...


@dataclass
class _Entry:
    sink: Sink
    required: bool
    enabled: bool = True

    @property
    def name(self) -> str:
        return type(self.sink).__name__


class Tracker:
    """Fans every call out to its sinks, in order: ``required`` first, then ``optional``.

    A required sink that raises makes the call raise (after the other sinks had their
    turn); an optional sink that raises is logged and disabled. Use it as a context
    manager: leaving the block on an exception after :meth:`start` and before
    :meth:`finish` records a failed summary (keeping the rounds already finished; if even
    that fails, it is logged and the block's own exception goes on), and leaving it in any
    way closes every sink. :meth:`close` is idempotent.
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
        """Seconds since :meth:`start` (0 before it)."""
        return 0.0 if self._started_at is None else self._clock.now() - self._started_at

    def start(self, info: RunInfo) -> None:
        with self._lock:
            self._check_open("start")
            if self._started_at is not None:
                raise ConsortiumError("Tracker.start() was already called; one tracker per run")
            self._started_at = self._clock.now()
            self._dispatch("start", lambda sink: sink.start(info))

    def round(self, record: RoundRecord) -> None:
        with self._lock:
            self._check_running("round")
            self._rounds_completed += 1
            self._last_metrics = record.metrics
            self._dropouts.update(record.failures)
            self._dispatch("round", lambda sink: sink.round(record))

    def event(self, name: str, **fields: EventValue) -> None:
        with self._lock:
            self._check_running("event")
            self._dispatch("event", lambda sink: sink.event(name, **fields))

    def finish(self, summary: RunSummary, model: Model | None = None) -> None:
        with self._lock:
            self._check_running("finish")
            self._finished = True
            self._dispatch("finish", lambda sink: sink.finish(summary, model))

    def close(self) -> None:
        """Close every sink, disabled ones too. Raises the first required sink's error."""
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
        started = self._started_at if self._started_at is not None else self._clock.now()
        message = str(exc)
        return RunSummary(
            status="failed",
            metrics=self._last_metrics,
            rounds_completed=self._rounds_completed,
            duration_s=self._clock.now() - started,
            dropouts=dict(self._dropouts),
            error=f"{type(exc).__name__}: {message}" if message else type(exc).__name__,
        )

    def _check_open(self, method: str) -> None:
        if self._closed:
            raise ConsortiumError(f"Tracker.{method}() after close(); start a new tracker")

    def _check_running(self, method: str) -> None:
        self._check_open(method)
        if self._started_at is None:
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
                if entry.required:
                    if error is None:
                        error = exc
                    else:
                        logger.error(
                            "tracking sink %s failed in %s()", entry.name, method, exc_info=exc
                        )
                elif entry.enabled:
                    entry.enabled = False
                    logger.warning(
                        "tracking sink %s failed in %s() and is disabled for the rest of the run",
                        entry.name,
                        method,
                        exc_info=exc,
                    )
                else:
                    logger.debug("disabled tracking sink %s failed in %s()", entry.name, method)
        if error is not None:
            raise error
