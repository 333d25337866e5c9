"""curves.png: the picture is the plain matplotlib drawing of the panels, and a panel's
title keeps clear of its axis' exponent."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from consortium.tracking import RoundRecord
from consortium.tracking.curves import _band, _panels, plot_curves

from .conftest import make_record

pytest.importorskip("matplotlib")


def many_parties(n: int) -> RoundRecord:
    """Three global metrics and two per-party ones over enough parties for bands: five
    panels on a grid of 2 x 3."""
    parties = {f"p{i}": {"train_loss": i / n, "seconds": 0.1 * i + n} for i in range(12)}
    return RoundRecord(
        round=n,
        metrics={"accuracy": 0.5 + n / 10, "loss": 1.0 / n, "f1": 0.4 + n / 20},
        party_metrics=parties,
        participants=tuple(parties),
        failures={},
        duration_s=0.1,
    )


def oracle(records: list[RoundRecord], path: Path) -> None:
    """The picture drawn the plain matplotlib way: one subplot made per panel, as it is
    filled, with matplotlib placing every title."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    panels = _panels(records)
    columns = min(3, len(panels))
    rows = -(-len(panels) // columns)
    figure = Figure(figsize=(4.0 * columns, 3.0 * rows))
    figure.subplots_adjust(
        left=0.08,
        right=0.98,
        bottom=0.72 / (3 * rows),
        top=1 - 0.6 / (3 * rows),
        wspace=0.3,
        hspace=0.5,
    )
    FigureCanvasAgg(figure)
    for index, (title, lines) in enumerate(panels):
        axes = figure.add_subplot(rows, columns, index + 1)
        if len(lines) > 10:
            xs, low, mean, high = _band(lines)
            axes.fill_between(xs, low, high, alpha=0.25, label=f"min-max of {len(lines)} parties")
            axes.plot(xs, mean, label="mean")
            axes.legend(fontsize="small")
            lines = {}
        for label, (xs, ys) in lines.items():
            axes.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3, label=label)
        axes.set_title(title)
        axes.set_xlabel("round")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(True, alpha=0.3)
        if 1 < len(lines) <= 4:
            axes.legend(fontsize="small")
        elif 4 < len(lines) <= 10:  # two columns, smaller, see-through
            axes.legend(
                fontsize="x-small",
                ncol=2,
                framealpha=0.6,
                columnspacing=0.8,
                handlelength=1.2,
                borderaxespad=0.3,
            )
    figure.savefig(path, format="png", dpi=100, pil_kwargs={"compress_level": 1})


def some_parties(n: int) -> RoundRecord:
    """Six parties: a line each, named in a two-column legend."""
    parties = {f"bank-{i}": {"train_loss": (i + 1) / n} for i in range(6)}
    return replace(many_parties(n), party_metrics=parties, participants=tuple(parties))


CASES = [
    [make_record(n) for n in range(1, 4)],
    [some_parties(n) for n in range(1, 4)],
    [make_record(1)],  # four panels, two places left empty
    [many_parties(n) for n in range(1, 5)],
    [replace(make_record(n), party_metrics={}) for n in range(1, 4)],
]


@pytest.mark.parametrize("records", CASES)
def test_the_plain_picture_is_drawn(tmp_path: Path, records: list[RoundRecord]) -> None:
    assert plot_curves(records, tmp_path / "c.png")
    oracle(records, tmp_path / "oracle.png")
    assert (tmp_path / "c.png").read_bytes() == (tmp_path / "oracle.png").read_bytes()


# matplotlib writes its exponents with a minus sign (U+2212)
@pytest.mark.parametrize(
    ("base", "step", "exponent"),
    [(0.0, 1e-6, "1e\u22126"), (1500.0, 1e-3, "+1.5e3"), (0.5, 0.1, "")],
)
def test_a_title_keeps_clear_of_the_axis_exponent(
    tmp_path: Path, base: float, step: float, exponent: str
) -> None:
    records = [
        replace(
            make_record(n),
            metrics={"a_long_metric_name_over_the_panel": base + step * n},
            party_metrics={},
        )
        for n in range(1, 6)
    ]
    assert plot_curves(records, tmp_path / "c.png")
    oracle(records, tmp_path / "oracle.png")
    assert (tmp_path / "c.png").read_bytes() == (tmp_path / "oracle.png").read_bytes()


def test_a_metric_each_party_keeps_is_no_panel() -> None:
    # make_record: each bank's example count stays the same (100 and 50); accuracy, loss
    # and the parties' train_loss change
    assert len(_panels([make_record(n) for n in range(1, 4)])) == 3
    assert [title for title, _ in _panels([make_record(1)])] == [
        "accuracy",
        "loss",
        "parties: train_loss",
        "parties: examples",
    ]  # one round: every metric is a point


def test_no_metrics_no_grid(tmp_path: Path) -> None:
    empty = RoundRecord(
        round=1, metrics={}, party_metrics={}, participants=(), failures={}, duration_s=0.1
    )
    assert not plot_curves([empty], tmp_path / "c.png")
    assert not (tmp_path / "c.png").exists()
