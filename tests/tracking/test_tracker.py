"""The tracker fans calls out in order; optional sinks fail alone, required ones loudly."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console

from consortium.clock import FakeClock
from consortium.errors import ConsortiumError
from consortium.tracking import (
    ConsoleSink,
    EventValue,
    Model,
    RoundRecord,
    RunDirectory,
    RunInfo,
    RunSummary,
    Tracker,
)


class Recorder:
    """A sink that writes down what it was told, and can be told to fail."""

    def __init__(self, *, log: list[str], name: str, fail_in: str | None = None) -> None:
        self.log, self.name, self.fail_in = log, name, fail_in
        self.summary: RunSummary | None = None

    def _note(self, method: str) -> None:
        self.log.append(f"{self.name}.{method}")
        if method == self.fail_in:
            raise RuntimeError(f"{self.name} broke in {method}")

    def start(self, info: RunInfo) -> None:
        self._note("start")

    def round(self, record: RoundRecord) -> None:
        self._note("round")

    def event(self, name: str, **fields: EventValue) -> None:
        self._note("event")

    def finish(self, summary: RunSummary, model: Model | None) -> None:
        self.summary = summary
        self._note("finish")

    def close(self) -> None:
        self._note("close")


def test_calls_reach_required_then_optional_sinks_in_order(
    info: RunInfo, record: Callable[[int], RoundRecord], summary: RunSummary
) -> None:
    log: list[str] = []
    a, b, c = (Recorder(log=log, name=n) for n in "abc")
    with Tracker(required=[a], optional=[b, c]) as tracker:
        assert tracker.sinks == (a, b, c)
        tracker.start(info)
        tracker.finish(summary)
    assert log == [f"{sink}.{method}" for method in ("start", "finish", "close") for sink in "abc"]


def test_a_failing_optional_sink_is_disabled_and_the_others_go_on(
    run_dir: Path,
    info: RunInfo,
    record: Callable[[int], RoundRecord],
    summary: RunSummary,
    caplog: pytest.LogCaptureFixture,
) -> None:
    log: list[str] = []
    broken = Recorder(log=log, name="broken", fail_in="round")
    after = Recorder(log=log, name="after")
    out = io.StringIO()
    console = ConsoleSink(console=Console(file=out, width=100))
    caplog.set_level(logging.WARNING, logger="consortium.tracking")
    with Tracker(required=[RunDirectory(path=run_dir)], optional=[broken, console, after]) as t:
        t.start(info)
        for n in (1, 2, 3):
            t.round(record(n))
        t.finish(summary)
        assert t.disabled == (broken,)
    assert log.count("broken.round") == 1  # disabled after the first failure
    assert log.count("after.round") == 3
    assert "broken.finish" not in log
    assert "broken.close" in log  # disabled sinks are still closed
    assert "Recorder failed in round() and is disabled" in caplog.text
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["round"] for line in lines] == [1, 2, 3]
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"
    assert "0.875" in out.getvalue()


def test_a_failing_required_sink_raises_after_the_others_had_their_turn(
    info: RunInfo, record: Callable[[int], RoundRecord]
) -> None:
    log: list[str] = []
    required = Recorder(log=log, name="required", fail_in="round")
    optional = Recorder(log=log, name="optional")
    tracker = Tracker(required=[required], optional=[optional])
    tracker.start(info)
    with pytest.raises(RuntimeError, match="required broke in round"):
        tracker.round(record(1))
    assert log[-1] == "optional.round"
    assert tracker.disabled == ()
    tracker.close()


def test_close_is_idempotent_and_closes_every_sink_once(info: RunInfo) -> None:
    log: list[str] = []
    required = Recorder(log=log, name="required", fail_in="close")
    optional = Recorder(log=log, name="optional", fail_in="close")
    tracker = Tracker(required=[required], optional=[optional])
    tracker.start(info)
    with pytest.raises(RuntimeError, match="required broke in close"):
        tracker.close()
    tracker.close()
    assert log == ["required.start", "optional.start", "required.close", "optional.close"]
    with pytest.raises(ConsortiumError, match="after close"):
        tracker.start(info)


def test_leaving_on_an_exception_records_a_failed_summary(
    info: RunInfo, record: Callable[[int], RoundRecord]
) -> None:
    clock = FakeClock(start=100.0)
    sink = Recorder(log=[], name="s")
    with pytest.raises(KeyError), Tracker(optional=[sink], clock=clock) as tracker:
        tracker.start(info)
        tracker.round(record(1))
        tracker.round(record(2))
        clock.advance(7.5)
        raise KeyError("bank-9")
    assert sink.summary == RunSummary(
        status="failed",
        metrics=record(2).metrics,
        rounds_completed=2,
        duration_s=7.5,
        dropouts={"bank-2": "timeout"},
        error="KeyError: 'bank-9'",
    )


def test_the_duration_counts_the_start_up_before_tracking(info: RunInfo) -> None:
    clock = FakeClock(start=100.0)
    tracker = Tracker(optional=[Recorder(log=[], name="s")], clock=clock)
    assert tracker.elapsed() == 0.0
    tracker.start(dataclasses.replace(info, startup_s=4.25))  # data bound, processes started
    clock.advance(2.0)
    assert tracker.elapsed() == 6.25
    assert tracker.failure_summary(RuntimeError("x")).duration_s == 6.25


def test_leaving_after_finish_does_not_finish_twice(info: RunInfo, summary: RunSummary) -> None:
    log: list[str] = []
    with pytest.raises(ValueError), Tracker(optional=[Recorder(log=log, name="s")]) as t:
        t.start(info)
        t.finish(summary)
        raise ValueError("after the run")
    assert log == ["s.start", "s.finish", "s.close"]


def test_calls_out_of_order_are_refused(
    info: RunInfo, record: Callable[[int], RoundRecord]
) -> None:
    tracker = Tracker()
    with pytest.raises(ConsortiumError, match="before start"):
        tracker.round(record(1))
    tracker.start(info)
    with pytest.raises(ConsortiumError, match="already called"):
        tracker.start(info)
    tracker.finish(
        RunSummary(status="completed", metrics={}, rounds_completed=0, duration_s=0.0, dropouts={})
    )
    with pytest.raises(ConsortiumError, match="after finish"):
        tracker.event("late")
    tracker.close()
