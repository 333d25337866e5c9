"""Draws ``curves.png`` in a helper process, off the run's critical path.

Importing matplotlib takes most of a second of pure Python, and on a background thread it
holds the interpreter lock against the run's own work. So the first run of a process starts
one helper process (:func:`_serve` in a new interpreter) that imports matplotlib on
another core while the run goes on, then draws each run's curves on request: the request
(which ``metrics.jsonl`` to read, which file to draw) goes over its stdin as one JSON line,
the answer comes back as one JSON line. Later runs in the same process reuse it; it exits
when this process closes its stdin (at exit, or when it dies). If the helper cannot start, dies, or does not answer in time, the curves are drawn
here, as before. Nothing but JSON crosses the pipe.

A run also tells the helper, a few rounds in, the grid of panels it expects to draw
(:func:`prepare_curves`, no answer); the helper makes that figure's empty panels while the
run goes on, which takes a third of the drawing off its end.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import select
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from consortium.tracking.curves import Blank, layout, plot_curves
from consortium.tracking.records import RoundRecord, read_metrics

__all__ = ["draw_curves", "prepare_curves", "start_painter"]

log = logging.getLogger(__name__)

# Drawing a few panels takes a fraction of a second; this is for a helper that hangs.
_ANSWER_TIMEOUT_S = 60.0
# A blank figure is made on request only for a grid of at most this many panels.
_MAX_PANELS = 24
_HELPER = "from consortium.tracking.painter import _serve; _serve()"


class _Painter:
    """The helper process and the lock that keeps one request on the pipe at a time."""

    def __init__(self, *, disabled: bool = False) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[str] | None = None
        self._failed = disabled

    def start(self) -> None:
        with self._lock:
            if self._failed or (self._process is not None and self._process.poll() is None):
                return
            env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
            # the helper imports what this process imports, installed or not
            env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
            try:
                self._process = subprocess.Popen(
                    # not ``-m``: the package imports this module first, and runpy would
                    # then run a second copy of it as __main__
                    [sys.executable, "-c", _HELPER],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    text=True,
                    env=env,
                    close_fds=True,
                )
            except OSError as exc:
                log.debug("no painter process (%s); curves are drawn in-process", exc)
                self._failed = True

    def prepare(self, grid: tuple[int, int]) -> None:
        """Ask the helper for a blank figure of ``grid``; no answer is awaited. Skipped
        when another request holds the pipe (a drawing can take the helper seconds): it is
        only a head start, and a run's round must not wait for it."""
        if not self._lock.acquire(blocking=False):
            return
        try:
            process = self._process
            if process is None or process.poll() is not None:
                return
            assert process.stdin is not None
            try:
                process.stdin.write(json.dumps({"prepare": list(grid)}) + "\n")
                process.stdin.flush()
            except (OSError, ValueError):
                self._stop(process)
        finally:
            self._lock.release()

    def paint(self, metrics: Path, path: Path) -> bool | None:
        """Whether the helper drew the curves of the ``metrics.jsonl`` file ``metrics``
        into ``path`` (None: it could not answer)."""
        with self._lock:
            process = self._process
            if process is None or process.poll() is not None:
                return None
            assert process.stdin is not None and process.stdout is not None
            request = {"metrics": str(metrics), "path": str(path)}
            try:
                process.stdin.write(json.dumps(request) + "\n")
                process.stdin.flush()
                answer = _read_line(process.stdout, _ANSWER_TIMEOUT_S)
            except (OSError, ValueError):
                answer = None
            if answer is None:
                self._stop(process)
                return None
            reply = json.loads(answer)
            if "error" in reply:  # drawn here instead, which reports its own problems
                log.debug("the painter could not draw %s: %s", path.name, reply["error"])
                return None
            return bool(reply["drawn"])

    def close(self) -> None:
        with self._lock:
            if self._process is not None:
                self._stop(self._process)

    def _stop(self, process: subprocess.Popen[str]) -> None:
        self._process = None
        with contextlib.suppress(OSError, ValueError):
            if process.stdin is not None:
                process.stdin.close()
        try:
            process.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def _read_line(stream: IO[str], timeout: float) -> str | None:
    ready, _, _ = select.select([stream], [], [], timeout)
    if not ready:
        log.warning("the painter did not answer within %g s", timeout)
        return None
    line = stream.readline()
    return line or None


_PAINTER = _Painter()
atexit.register(_PAINTER.close)


def start_painter() -> None:
    """Start the helper now, so that matplotlib is imported while the run goes on."""
    _PAINTER.start()


def prepare_curves(records: Sequence[RoundRecord]) -> None:
    """Let the helper make the empty panels for curves like those of ``records`` now (the
    rounds so far), so that drawing them at the end takes less time. Never raises: it is
    only a head start, and the drawing at the end reports its own problems."""
    try:
        grid = layout(records)
        if grid is not None:
            _PAINTER.prepare(grid)
    except Exception:
        log.debug("no blank figure prepared", exc_info=True)


def draw_curves(metrics: Path, path: Path) -> bool:
    """Draw the curves of the ``metrics.jsonl`` file ``metrics`` into ``path`` (see
    :func:`~consortium.tracking.curves.plot_curves`), through the helper process when it
    is there, here otherwise. The helper reads the file itself: nothing of the run's
    records is encoded for it."""
    drawn = _PAINTER.paint(metrics, path)
    if drawn is None:
        return plot_curves(read_metrics(metrics), path)
    return drawn


def _serve() -> None:
    """The helper's loop: one JSON request per line in; one JSON answer per line out for
    each drawing (a request to prepare gets none)."""
    from consortium.tracking.curves import import_matplotlib, warm_up

    drawing = import_matplotlib()
    if drawing:
        with contextlib.suppress(Exception):  # only a head start: drawing works without it
            warm_up()
    blanks: dict[tuple[int, int], Blank] = {}
    for line in sys.stdin:
        try:
            request = json.loads(line)
        except ValueError:
            request = None  # answered with an error by _draw
        if isinstance(request, dict) and request.keys() == {"prepare"}:
            if drawing:
                with contextlib.suppress(Exception):  # only a head start, as the warm-up
                    _prepare(request["prepare"], blanks)
            continue
        answer = _draw(request, blanks) if drawing else {"error": "matplotlib is not installed"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


def _prepare(grid: list[int], blanks: dict[tuple[int, int], Blank]) -> None:
    rows, columns = (int(n) for n in grid)
    if (rows, columns) not in blanks and 0 < rows * columns <= _MAX_PANELS:
        blanks[rows, columns] = Blank(rows=rows, columns=columns)


def _draw(request: Any, blanks: dict[tuple[int, int], Blank]) -> dict[str, Any]:
    try:
        records = read_metrics(Path(request["metrics"]))
        return {"drawn": plot_curves(records, Path(request["path"]), blanks=blanks)}
    except Exception as exc:  # reported to the run, which then draws itself
        return {"error": f"{type(exc).__name__}: {exc}"}
