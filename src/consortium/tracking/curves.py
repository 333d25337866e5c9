"""Training curves as a PNG: one panel per metric over rounds.

matplotlib is optional (the ``plot`` extra) and imported only when a plot is drawn. The
figure is built with the object-oriented API on an Agg canvas, so drawing a plot never
switches the process-wide pyplot backend (which would break, say, inline plots in a
notebook that runs a job).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from consortium.tracking.records import RoundRecord

__all__ = ["plot_curves"]

logger = logging.getLogger(__name__)

_MAX_LEGEND_PARTIES = 10
# Past this many parties' lines the legend takes two columns in a smaller type, see-through,
# so that it covers less of the lines it names.
_ONE_COLUMN = 4
_COMPACT_LEGEND: dict[str, Any] = {
    "fontsize": "x-small",
    "ncol": 2,
    "framealpha": 0.6,
    "columnspacing": 0.8,
    "handlelength": 1.2,
    "borderaxespad": 0.3,
}
_COLUMNS = 3
_ROW_INCHES = 3.0
_TOP_INCHES, _BOTTOM_INCHES = 0.6, 0.72
_PNG = {"compress_level": 1}


def plot_curves(records: Sequence[RoundRecord], path: Path) -> bool:
    """Draw global metrics, then per-party metrics (one line per party), into ``path``.

    Returns False, after a log message, when there is nothing to draw or matplotlib is not
    installed. The file is written atomically.
    """
    panels = _panels(records)
    grid = _grid(len(panels))
    if grid is None:
        logger.debug("no metrics recorded; %s not drawn", path.name)
        return False
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        logger.warning(
            "matplotlib is not installed, so %s was not drawn: pip install 'consortium[plot]'",
            path.name,
        )
        return False
    rows, columns = grid
    height = _ROW_INCHES * rows
    figure = Figure(figsize=(4.0 * columns, height))
    # margins in inches, so that a single row keeps room for its titles and x labels
    figure.subplots_adjust(
        left=0.08,
        right=0.98,
        bottom=_BOTTOM_INCHES / height,
        top=1.0 - _TOP_INCHES / height,
        wspace=0.3,
        hspace=0.5,
    )
    FigureCanvasAgg(figure)
    for index, (title, lines) in enumerate(panels):
        axes = figure.add_subplot(rows, columns, index + 1)
        axes.set_xlabel("round")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(True, alpha=0.3)
        if len(lines) > _MAX_LEGEND_PARTIES:
            # Many parties: a band (min to max) around the mean, not one line per party.
            xs, low, mean, high = _band(lines)
            axes.fill_between(xs, low, high, alpha=0.25, label=f"min-max of {len(lines)} parties")
            axes.plot(xs, mean, label="mean")
            axes.legend(fontsize="small")
            lines = {}
        for label, (xs, ys) in lines.items():
            axes.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3, label=label)
        _set_title(axes, title)
        if 1 < len(lines) <= _MAX_LEGEND_PARTIES:
            axes.legend(**(_COMPACT_LEGEND if len(lines) > _ONE_COLUMN else {"fontsize": "small"}))
    temporary = path.with_name(f".{path.name}.tmp")
    # zlib's fastest level: a third less time to encode (~15 ms left, most of it PNG's
    # filtering of each row), for a file ~15% larger
    figure.savefig(temporary, format="png", dpi=100, pil_kwargs=_PNG)
    os.replace(temporary, path)
    return True


def _set_title(axes: Any, title: str) -> None:
    """The title above the panel. Where the y axis shows no offset or exponent (``1e-6``,
    ``+1.5e3`` above its top end), the title's place is given, and matplotlib skips
    measuring the tick labels for room to move it up (a tenth of a drawing); where it
    shows one, matplotlib places the title clear of it."""
    formatter = axes.yaxis.get_major_formatter()
    formatter.set_locs(axes.yaxis.get_majorticklocs())
    if formatter.get_offset():
        axes.set_title(title)
    else:
        axes.set_title(title, y=1.0)


def _grid(panels: int) -> tuple[int, int] | None:
    if panels == 0:
        return None
    columns = min(_COLUMNS, panels)
    return math.ceil(panels / columns), columns


_Line = tuple[list[int], list[float]]


def _band(lines: dict[str, _Line]) -> tuple[list[int], list[float], list[float], list[float]]:
    by_round: dict[int, list[float]] = {}
    for xs, ys in lines.values():
        for x, y in zip(xs, ys, strict=True):
            by_round.setdefault(x, []).append(y)
    rounds = sorted(by_round)
    low = [min(by_round[r]) for r in rounds]
    mean = [sum(by_round[r]) / len(by_round[r]) for r in rounds]
    high = [max(by_round[r]) for r in rounds]
    return rounds, low, mean, high


def _panels(records: Sequence[RoundRecord]) -> list[tuple[str, dict[str, _Line]]]:
    """Panels in first-seen order: each global metric, then each per-party metric."""
    global_lines: dict[str, _Line] = {}
    party_panels: dict[str, dict[str, _Line]] = {}
    for record in records:
        for name, value in record.metrics.items():
            xs, ys = global_lines.setdefault(name, ([], []))
            xs.append(record.round)
            ys.append(float(value))
        for party, metrics in record.party_metrics.items():
            for name, value in metrics.items():
                xs, ys = party_panels.setdefault(name, {}).setdefault(party, ([], []))
                xs.append(record.round)
                ys.append(float(value))
    panels = [(name, {name: line}) for name, line in global_lines.items()]
    panels += [(f"parties: {name}", lines) for name, lines in party_panels.items()]
    # A metric that never changes (each party's example count, say) is a number, not a curve.
    return [(title, lines) for title, lines in panels if not _flat(lines)]


def _flat(lines: dict[str, _Line]) -> bool:
    """Whether every line keeps one value, and some line has more than one point."""
    return any(len(ys) > 1 for _, ys in lines.values()) and all(
        len(set(ys)) <= 1 for _, ys in lines.values()
    )
