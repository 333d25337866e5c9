"""Training curves as a PNG: the panels :func:`~consortium.tracking.panels.choose_panels`
picks, under a title naming the run.

matplotlib is optional (the ``plot`` extra) and imported only when a plot is drawn. The
figure is built with the object-oriented API on an Agg canvas, so drawing a plot never
switches the process-wide pyplot backend (which would break, say, inline plots in a
notebook that runs a job).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from consortium.errors import ConfigError
from consortium.npz import replacing
from consortium.tracking.panels import MetricRows, Panel, choose_panels, row_lengths
from consortium.tracking.records import RoundRecord

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["PLOT_MISSING", "curves_figure", "plot_curves"]

PLOT_MISSING = (
    "drawing curves.png needs matplotlib, the 'plot' extra: pip install 'consortium[plot]'"
)

_PANEL_INCHES = (4.0, 3.0)  # width and height of one panel of a full row, with its margins
_TITLE_INCHES = 0.4  # room for the figure's title above the panels
_DPI = 100
# Margins in inches, so that they hold the same text whatever the figure's size: a panel's
# two-line title above it, its tick labels and x label below, its y tick labels left.
_LEFT, _RIGHT, _BOTTOM = 0.75, 0.2, 0.55
_ABOVE_PANEL = 0.5  # a two-line panel title
_BETWEEN_ROWS = 1.0  # tick labels and x label of one row, the panel titles of the next
_BETWEEN_PANELS = 0.8  # y tick labels of the panel on the right
_MARKERS_BELOW = 30  # points on a line; more are drawn without a marker each


def curves_figure(panels: Sequence[Panel], *, title: str, x_label: str = "round") -> Figure:
    """The figure of ``panels`` under ``title``, in rows as
    :func:`~consortium.tracking.panels.row_lengths` shares them out, on an Agg canvas.
    Raises :class:`ImportError` when matplotlib is not installed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    rows = row_lengths(len(panels))
    width = _PANEL_INCHES[0] * max(rows, default=1)
    height = _TITLE_INCHES + _PANEL_INCHES[1] * len(rows)
    figure = Figure(figsize=(width, height), dpi=_DPI)
    FigureCanvasAgg(figure)
    figure.suptitle(title, y=1.0 - 0.1 / height, va="top", fontsize="large", fontweight="bold")
    if not rows:
        return figure
    # one column per share of a row that every row length divides: in a grid of six, a
    # panel of a row of two spans three columns, one of a row of three two
    columns = math.lcm(*rows)
    top = _TITLE_INCHES + _ABOVE_PANEL
    column = (width - _LEFT - _RIGHT - (columns - 1) * _BETWEEN_PANELS) / columns
    row = (height - top - _BOTTOM - (len(rows) - 1) * _BETWEEN_ROWS) / len(rows)
    grid = figure.add_gridspec(
        len(rows),
        columns,
        left=_LEFT / width,
        right=1.0 - _RIGHT / width,
        top=1.0 - top / height,
        bottom=_BOTTOM / height,
        wspace=_BETWEEN_PANELS / column,
        hspace=_BETWEEN_ROWS / row,
    )
    remaining = iter(panels)
    for index, count in enumerate(rows):
        span = columns // count
        for place in range(count):
            axes = figure.add_subplot(grid[index, place * span : (place + 1) * span])
            _draw_panel(axes, next(remaining))
            axes.set_xlabel(x_label)
            axes.xaxis.set_major_locator(MaxNLocator(integer=True))
            axes.grid(True, alpha=0.3)
    return figure


def plot_curves(
    records: Sequence[RoundRecord],
    path: Path,
    *,
    job: Mapping[str, Any] | None = None,
    title: str = "",
) -> bool:
    """Draw the curves of ``records`` into ``path`` (a PNG, written atomically), titled
    with the rows each metric was computed on where the resolved ``job`` says so. False
    when no metric gets a panel. Raises :class:`~consortium.errors.ConfigError`
    (:data:`PLOT_MISSING`) when matplotlib is not installed."""
    panels = choose_panels(records, job)
    if not panels:
        return False
    try:
        figure = curves_figure(panels, title=title, x_label=MetricRows(job).x_label)
    except ImportError as exc:
        raise ConfigError(PLOT_MISSING) from exc
    with replacing(path) as temporary:
        figure.savefig(temporary, format="png")
    return True


def _draw_panel(axes: Any, panel: Panel) -> None:
    for line in panel.lines:
        marker = "o" if len(line.rounds) < _MARKERS_BELOW else None
        axes.plot(line.rounds, line.values, marker=marker, markersize=3, label=line.label)
    if (band := panel.band) is not None:  # after the median, which the legend names first
        color = axes.lines[0].get_color()
        axes.fill_between(
            band.rounds, band.low, band.high, color=color, alpha=0.25, label="min-max"
        )
    if panel.per_party:
        axes.legend(fontsize="small")
    axes.set_title(panel.title, fontsize="medium")
