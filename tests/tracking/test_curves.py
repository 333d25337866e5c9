"""curves.png as drawn: every cell of the grid holds a panel, the panels carry the lines,
bands, legends and titles chosen for them, and the file is a whole PNG of the promised size
(4 x 3 inches a panel of a full row, 0.4 inch for the title, 100 dots an inch)."""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

import pytest

from consortium.tracking import RoundRecord
from consortium.tracking.curves import curves_figure, plot_curves
from consortium.tracking.panels import Line, Panel, choose_panels, row_lengths

from .conftest import make_record

pytest.importorskip("matplotlib")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def panel(n: int) -> Panel:
    return Panel(
        metric=f"m{n}",
        title=f"m{n}",
        per_party=False,
        lines=(Line(label=f"m{n}", rounds=(1, 2, 3), values=(1.0, 2.0, n)),),
    )


def parties(count: int, rounds: int = 3) -> list[RoundRecord]:
    """Rounds with a global accuracy and a per-party train_loss of ``count`` trainers."""
    return [
        replace(
            make_record(n),
            metrics={"accuracy": 0.5 + n / 10},
            party_metrics={f"trainer-{i}": {"train_loss": (i + 1) / n} for i in range(count)},
        )
        for n in range(1, rounds + 1)
    ]


@pytest.mark.parametrize("count", range(1, 13))
def test_every_row_of_panels_fills_the_figure_width(count: int) -> None:
    panels = [panel(n) for n in range(count)]
    figure = curves_figure(panels, title="job — run r1")
    assert [axes.get_title() for axes in figure.axes] == [p.title for p in panels]
    rows: dict[float, list[tuple[float, float]]] = {}
    for axes in figure.axes:
        box = axes.get_position()
        rows.setdefault(round(box.y0, 6), []).append((box.x0, box.x1))
    assert [len(rows[y]) for y in sorted(rows, reverse=True)] == list(row_lengths(count))
    (first, *_) = rows.values()
    left, right = first[0][0], first[-1][1]
    gaps = set()
    for spans in rows.values():
        assert spans[0][0] == pytest.approx(left) and spans[-1][1] == pytest.approx(right)
        widths = [x1 - x0 for x0, x1 in spans]
        assert max(widths) == pytest.approx(min(widths))  # a row's panels share it evenly
        gaps |= {round(b[0] - a[1], 6) for a, b in itertools.pairwise(spans)}
    assert len(gaps) <= 1 and all(gap > 0 for gap in gaps)  # one gap, between every two


def more_metrics(records: list[RoundRecord], *names: str) -> list[RoundRecord]:
    return [
        replace(r, metrics={**r.metrics, **{n: i + 1 / r.round for i, n in enumerate(names)}})
        for r in records
    ]


@pytest.mark.parametrize(
    ("records", "size"),
    [
        (parties(0), (340, 400)),  # one panel
        (parties(2), (340, 800)),  # two panels: one row of two
        (more_metrics(parties(12), "loss", "f1"), (640, 800)),  # four: two rows of two
        (more_metrics(parties(3), "loss", "f1", "r2"), (640, 1200)),  # five: three, two
    ],
)
def test_a_png_of_the_expected_size_is_written_whole(
    tmp_path: Path, records: list[RoundRecord], size: tuple[int, int]
) -> None:
    from matplotlib.image import imread

    path = tmp_path / "curves.png"
    path.write_bytes(b"an older picture")
    assert plot_curves(records, path, title="job — run r1")
    assert path.read_bytes().startswith(PNG_MAGIC)
    image = imread(path)
    assert image.shape[:2] == size
    assert image.std() > 0  # something is drawn
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png"]  # no temporary left


def test_many_parties_draw_a_median_and_a_band_few_a_legend_in_name_order() -> None:
    from matplotlib.collections import PolyCollection

    many = choose_panels(parties(12))
    few = choose_panels(parties(5))
    figure = curves_figure([many[1], few[1]], title="t")
    banded, lined = figure.axes
    assert [line.get_label() for line in banded.lines] == ["median of 12 parties"]
    assert sum(isinstance(c, PolyCollection) for c in banded.collections) == 1
    assert [t.get_text() for t in banded.get_legend().get_texts()] == [
        "median of 12 parties",
        "min-max",
    ]
    names = [f"trainer-{i}" for i in range(5)]
    assert [line.get_label() for line in lined.lines] == names
    assert not lined.collections
    assert [t.get_text() for t in lined.get_legend().get_texts()] == names


def test_the_figure_is_titled_and_the_x_axis_named(tmp_path: Path) -> None:
    job = {"algorithm": {"protocol": "vertical"}, "data": {"test_fraction": 0.2}}
    records = [
        replace(r, metrics={"accuracy": r.metrics["accuracy"]}, party_metrics={})
        for r in parties(1)
    ]
    (only,) = choose_panels(records, job)
    figure = curves_figure([only], title="vfl — run r7", x_label="epoch")
    assert figure.get_suptitle() == "vfl — run r7"
    (axes,) = figure.axes
    assert axes.get_title() == "accuracy\ntest rows: 20% of the aligned records"
    assert axes.get_xlabel() == "epoch"
    assert axes.get_legend() is None  # one global line: its title names it


def test_nothing_to_draw_writes_nothing(tmp_path: Path) -> None:
    empty = RoundRecord(
        round=1, metrics={}, party_metrics={}, participants=(), failures={}, duration_s=0.1
    )
    assert not plot_curves([empty], tmp_path / "c.png")
    assert not (tmp_path / "c.png").exists()
