"""The curves are drawn by a helper process, and here when it is gone or cannot draw."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from consortium.tracking import RoundRecord, RunInfo, painter, plot_curves, rundir
from consortium.tracking.curves import Blank

from .conftest import make_record

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def metrics_file(folder: Path, records: list[RoundRecord], name: str = "metrics.jsonl") -> Path:
    """``records`` written as a run directory writes them."""
    path = folder / name
    path.write_text("".join(json.dumps(r.to_json()) + "\n" for r in records))
    return path


def test_the_helper_draws_what_this_process_would(tmp_path: Path) -> None:
    records = [make_record(n) for n in range(1, 4)]
    helper = painter._Painter()
    helper.start()
    try:
        assert helper.paint(metrics_file(tmp_path, records), tmp_path / "helper.png") is True
        two = metrics_file(tmp_path, records[:2], "two.jsonl")
        assert helper.paint(two, tmp_path / "again.png") is True  # one process, reused
    finally:
        helper.close()
    assert plot_curves(records, tmp_path / "here.png")
    drawn = (tmp_path / "helper.png").read_bytes()
    assert drawn.startswith(PNG_MAGIC)
    assert drawn == (tmp_path / "here.png").read_bytes()


def test_a_helper_that_died_is_replaced_by_drawing_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    helper = painter._Painter()
    helper.start()
    process = helper._process
    assert process is not None
    process.kill()
    process.wait()
    metrics = metrics_file(tmp_path, [make_record(1), make_record(2)])
    assert helper.paint(metrics, tmp_path / "c.png") is None
    monkeypatch.setattr(painter, "_PAINTER", helper)
    assert painter.draw_curves(metrics, tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes().startswith(PNG_MAGIC)


def test_a_request_the_helper_cannot_draw_is_an_answer_not_a_hang(tmp_path: Path) -> None:
    helper = painter._Painter()
    helper.start()
    try:
        # a folder that does not exist: the helper answers with an error
        metrics = metrics_file(tmp_path, [make_record(1), make_record(2)])
        assert helper.paint(metrics, tmp_path / "no" / "c.png") is None
        assert helper._process is not None and helper._process.poll() is None  # still serving
    finally:
        helper.close()


def test_a_prepared_figure_draws_what_this_process_would(tmp_path: Path) -> None:
    records = [make_record(n) for n in range(1, 4)]
    helper = painter._Painter()
    helper.start()
    try:
        helper.prepare((1, 3))  # the grid of these records
        helper.prepare((0, 0))  # nothing to make: ignored, with no answer
        helper.prepare((1000, 1000))  # too many panels: ignored
        metrics = metrics_file(tmp_path, records)
        assert helper.paint(metrics, tmp_path / "helper.png") is True
        assert helper.paint(metrics, tmp_path / "again.png") is True  # prepared one spent
    finally:
        helper.close()
    assert plot_curves(records, tmp_path / "here.png")
    for name in ("helper.png", "again.png"):
        assert (tmp_path / name).read_bytes() == (tmp_path / "here.png").read_bytes()


def test_a_malformed_request_is_answered_and_the_answers_stay_in_step(tmp_path: Path) -> None:
    helper = painter._Painter()
    helper.start()
    process = helper._process
    assert process is not None and process.stdin is not None and process.stdout is not None
    try:
        process.stdin.write('{"prepare": "not a grid"}\nnot json\n')
        process.stdin.flush()
        answer = painter._read_line(process.stdout, 60.0)
        assert answer is not None and "error" in answer  # for the line that is not JSON only
        metrics = metrics_file(tmp_path, [make_record(1), make_record(2)])
        assert helper.paint(metrics, tmp_path / "c.png") is True
    finally:
        helper.close()


def test_the_helper_builds_each_prepared_grid_once_and_draws_on_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The helper's loop, run here on its own pipes: a prepare gets no answer and one blank;
    the drawing of that grid uses it; one of another grid makes its own figure."""
    built: list[tuple[int, int]] = []

    class CountedBlank(Blank):
        def __init__(self, *, rows: int, columns: int) -> None:
            built.append((rows, columns))
            super().__init__(rows=rows, columns=columns)

    monkeypatch.setattr(painter, "Blank", CountedBlank)
    monkeypatch.setattr("consortium.tracking.curves.Blank", CountedBlank)
    records = [make_record(n) for n in range(1, 4)]  # a grid of 1 x 3
    lines = [
        {"prepare": [1, 3]},
        {"prepare": [1, 3]},  # already there
        {"prepare": [2, 2]},
        {"metrics": str(metrics_file(tmp_path, records)), "path": str(tmp_path / "a.png")},
        {"metrics": str(tmp_path / "metrics.jsonl"), "path": str(tmp_path / "b.png")},
    ]
    out = io.StringIO()
    monkeypatch.setattr("sys.stdin", io.StringIO("".join(json.dumps(x) + "\n" for x in lines)))
    monkeypatch.setattr("sys.stdout", out)
    painter._serve()
    answers = [json.loads(line) for line in out.getvalue().splitlines()]
    assert answers == [{"drawn": True}, {"drawn": True}]  # none for the prepares
    # the warm-up draws without a Blank; then 1 x 3 and 2 x 2 for the prepares, and the
    # second drawing of 1 x 3 makes its own, the prepared one being spent
    assert built == [(1, 3), (2, 2), (1, 3)]
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def test_a_run_directory_asks_for_its_figure_after_two_rounds(
    run_dir: Path, info: RunInfo, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[int] = []
    monkeypatch.setattr(rundir, "start_painter", lambda: None)
    monkeypatch.setattr(rundir, "prepare_curves", lambda records: asked.append(len(records)))
    directory = rundir.RunDirectory(path=run_dir)
    directory.start(info)
    for n in range(1, 5):
        directory.round(make_record(n))
    directory.close()
    assert asked == [2]


def test_a_prepare_does_not_wait_for_a_drawing_in_progress() -> None:
    helper = painter._Painter()
    helper.start()
    try:
        with helper._lock:  # as while another run's drawing holds the pipe
            helper.prepare((1, 3))  # returns at once, sending nothing
        process = helper._process
        assert process is not None and process.poll() is None
    finally:
        helper.close()
