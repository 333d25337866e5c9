"""A run directory read back for its curves: the title, the records and the job; the
picture drawn again is the one the run drew; bad files are named."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from consortium.errors import ConfigError
from consortium.tracking import (
    RoundRecord,
    RunDirectory,
    RunInfo,
    RunSummary,
    Tracker,
    draw_report,
    read_report,
)

from .conftest import completed, make_info, make_record

RUN = "runs/mnist-fedavg/20250101-000000-abcdef01"


def finished_run(run_dir: Path, info: RunInfo, summary: RunSummary | None) -> list[RoundRecord]:
    records = [make_record(n) for n in (1, 2, 3)]
    with Tracker(required=[RunDirectory(path=run_dir)]) as tracker:
        tracker.start(info)
        for record in records:
            tracker.round(record)
        if summary is not None:
            tracker.finish(summary)
    return records


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One completed run of three rounds (make_record), its curves drawn."""
    run_dir = tmp_path_factory.mktemp("finished") / RUN
    finished_run(run_dir, make_info(run_dir), completed())
    return run_dir


@pytest.fixture
def copy(finished: Path, tmp_path: Path) -> Path:
    """A copy of the finished run, to change."""
    return Path(shutil.copytree(finished, tmp_path / RUN))


def test_a_finished_run_reads_back_and_draws_the_same_picture_again(copy: Path) -> None:
    pytest.importorskip("matplotlib")
    run_dir = copy
    info = make_info(run_dir)
    records = [make_record(n) for n in (1, 2, 3)]
    report = read_report(run_dir)
    assert report.title == "mnist-fedavg — run 20250101-000000-abcdef01"
    assert report.records == records
    assert report.job == info.resolved_job
    drawn_by_the_run = (run_dir / "curves.png").read_bytes()
    (run_dir / "curves.png").unlink()
    assert draw_report(run_dir) == run_dir / "curves.png"
    assert (run_dir / "curves.png").read_bytes() == drawn_by_the_run


def test_the_title_says_when_a_run_did_not_complete(
    run_dir: Path, info: RunInfo, summary: RunSummary
) -> None:
    finished_run(run_dir, info, replace(summary, status="failed", error="boom"))
    assert read_report(run_dir).title == "mnist-fedavg — run 20250101-000000-abcdef01 (failed)"


def test_a_run_that_never_finished_is_titled_from_its_job_and_folder(
    run_dir: Path, info: RunInfo
) -> None:
    finished_run(run_dir, info, None)  # killed: no summary
    assert not (run_dir / "summary.json").exists()
    assert read_report(run_dir).title == f"mnist-fedavg — run {run_dir.name} (unfinished)"


def test_a_run_without_metrics_to_draw_gets_no_picture(run_dir: Path, info: RunInfo) -> None:
    empty = replace(make_record(1), metrics={}, party_metrics={})
    with Tracker(required=[RunDirectory(path=run_dir)]) as tracker:
        tracker.start(info)
        tracker.round(empty)
        tracker.round(replace(empty, round=2))
    assert draw_report(run_dir) is None
    assert not (run_dir / "curves.png").exists()


def test_a_last_line_cut_short_is_left_out(run_dir: Path, info: RunInfo) -> None:
    records = finished_run(run_dir, info, None)
    with open(run_dir / "metrics.jsonl", "a", encoding="utf-8") as handle:
        handle.write('{"round": 4, "metr')  # killed while writing round 4
    assert read_report(run_dir).records == records


Breakage = Callable[[Path], None]


def no_folder(run_dir: Path) -> None:
    for child in run_dir.iterdir():
        child.unlink()
    run_dir.rmdir()


def no_metrics(run_dir: Path) -> None:
    (run_dir / "metrics.jsonl").unlink()


def bad_second_line(run_dir: Path) -> None:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines(keepends=True)
    lines[1] = '{"round": 2}\n'
    (run_dir / "metrics.jsonl").write_text("".join(lines))


def not_utf8(run_dir: Path) -> None:
    (run_dir / "metrics.jsonl").write_bytes(b"\xff\xfe\n")


def bad_summary(run_dir: Path) -> None:
    (run_dir / "summary.json").write_text("{not json")


def bad_job(run_dir: Path) -> None:
    (run_dir / "job.yaml").write_text("- a list, not a job\n")


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (no_folder, r"20250101-000000-abcdef01: no such run directory"),
        (no_metrics, r"abcdef01/metrics\.jsonl: no such file"),
        (bad_second_line, r"abcdef01/metrics\.jsonl, line 2: not a round record \(KeyError"),
        (not_utf8, r"abcdef01/metrics\.jsonl: cannot be read"),
        (bad_summary, r"abcdef01/summary\.json: cannot be read"),
        (bad_job, r"abcdef01/job\.yaml: cannot be read: not a mapping"),
    ],
)
def test_a_missing_or_unreadable_file_is_named(
    copy: Path, breakage: Breakage, message: str
) -> None:
    breakage(copy)
    with pytest.raises(ConfigError, match=message):
        draw_report(copy)


def test_the_summary_names_the_job_and_run_even_when_the_folder_does_not(
    finished: Path, tmp_path: Path
) -> None:
    elsewhere = Path(shutil.copytree(finished, tmp_path / "copied"))
    run_id = json.loads((elsewhere / "summary.json").read_text())["run_id"]
    assert read_report(elsewhere).title == f"mnist-fedavg — run {run_id}"
    assert run_id == "20250101-000000-abcdef01"
