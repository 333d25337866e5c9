"""The console shows progress, warnings and a final table."""

from __future__ import annotations

import io
from collections.abc import Callable

from rich.console import Console

from consortium.tracking import ConsoleSink, RoundRecord, RunInfo, RunSummary, Tracker


def run(
    info: RunInfo,
    record: Callable[[int], RoundRecord],
    summary: RunSummary,
    *,
    quiet: bool = False,
) -> str:
    out = io.StringIO()
    sink = ConsoleSink(console=Console(file=out, width=100), quiet=quiet)
    with Tracker(optional=[sink]) as tracker:
        tracker.start(info)
        for n in (1, 2, 3):
            tracker.round(record(n))
        tracker.event("dropout", party="bank-2", round=2)
        tracker.event("party_joined", party="bank-3")
        tracker.finish(summary)
    return out.getvalue()


def test_final_table_shows_metrics_and_run(
    info: RunInfo, record: Callable[[int], RoundRecord], summary: RunSummary
) -> None:
    text = run(info, record, summary)
    assert "accuracy" in text and "0.875" in text
    assert "loss" in text and "0.3125" in text
    assert "completed" in text
    assert "3/3" in text
    assert "12.5 s" in text
    assert "bank-2 (timeout)" in text
    assert info.run_id in text


def test_progress_shows_latest_metrics(
    info: RunInfo, record: Callable[[int], RoundRecord], summary: RunSummary
) -> None:
    text = run(info, record, summary)
    assert "round 3" in text
    assert "accuracy=0.8" in text


def test_dropouts_print_as_warnings(
    info: RunInfo, record: Callable[[int], RoundRecord], summary: RunSummary
) -> None:
    text = run(info, record, summary)
    assert "warning dropout party=bank-2 round=2" in text
    assert "party_joined party=bank-3" in text


def test_quiet_prints_only_warnings(
    info: RunInfo, record: Callable[[int], RoundRecord], summary: RunSummary
) -> None:
    text = run(info, record, summary, quiet=True)
    assert "warning dropout party=bank-2" in text
    assert "party_joined" not in text
    assert "0.875" not in text


def test_failed_run_shows_the_error(info: RunInfo, record: Callable[[int], RoundRecord]) -> None:
    failed = RunSummary(
        status="failed",
        metrics={"accuracy": 0.625},
        rounds_completed=1,
        duration_s=1.0,
        dropouts={},
        error="quorum lost",
    )
    text = run(info, record, failed, quiet=True)
    assert "run failed quorum lost" in text
