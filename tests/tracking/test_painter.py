"""The curves are drawn by a helper process, and here when it is gone or cannot draw."""

from __future__ import annotations

from pathlib import Path

import pytest

from consortium.tracking import painter, plot_curves

from .conftest import make_record

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_the_helper_draws_what_this_process_would(tmp_path: Path) -> None:
    records = [make_record(n) for n in range(1, 4)]
    helper = painter._Painter()
    helper.start()
    try:
        assert helper.paint(records, tmp_path / "helper.png") is True
        assert helper.paint(records[:2], tmp_path / "again.png") is True  # one process, reused
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
    assert helper.paint([make_record(1), make_record(2)], tmp_path / "c.png") is None
    monkeypatch.setattr(painter, "_PAINTER", helper)
    assert painter.draw_curves([make_record(1), make_record(2)], tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes().startswith(PNG_MAGIC)


def test_a_request_the_helper_cannot_draw_is_an_answer_not_a_hang(tmp_path: Path) -> None:
    helper = painter._Painter()
    helper.start()
    try:
        # a folder that does not exist: the helper answers with an error
        assert helper.paint([make_record(1), make_record(2)], tmp_path / "no" / "c.png") is None
        assert helper._process is not None and helper._process.poll() is None  # still serving
    finally:
        helper.close()
