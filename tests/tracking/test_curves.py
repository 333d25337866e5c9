"""curves.png: a figure made ahead of time draws the same picture as one made at the end."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from consortium.tracking import RoundRecord
from consortium.tracking.curves import Blank, layout, plot_curves

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


@pytest.mark.parametrize(
    ("records", "grid"),
    [
        ([make_record(n) for n in range(1, 4)], (1, 3)),
        ([many_parties(n) for n in range(1, 5)], (2, 3)),
        ([replace(make_record(n), party_metrics={}) for n in range(1, 4)], (1, 2)),
    ],
)
def test_a_blank_of_the_right_grid_draws_the_same_picture(
    tmp_path: Path, records: list[RoundRecord], grid: tuple[int, int]
) -> None:
    assert layout(records) == grid
    assert plot_curves(records, tmp_path / "fresh.png")
    assert plot_curves(records, tmp_path / "blank.png", blank=Blank(*grid))
    assert (tmp_path / "blank.png").read_bytes() == (tmp_path / "fresh.png").read_bytes()


def test_a_blank_of_another_grid_is_left_alone(tmp_path: Path) -> None:
    records = [many_parties(n) for n in range(1, 4)]
    blank = Blank(1, 2)
    assert plot_curves(records, tmp_path / "fresh.png")
    assert plot_curves(records, tmp_path / "other.png", blank=blank)
    assert (tmp_path / "other.png").read_bytes() == (tmp_path / "fresh.png").read_bytes()
    assert len(blank.figure.axes) == 2  # not drawn on


def test_a_metric_each_party_keeps_is_no_panel() -> None:
    # make_record: each bank's example count stays the same (100 and 50); accuracy, loss
    # and the parties' train_loss change
    assert layout([make_record(n) for n in range(1, 4)]) == (1, 3)
    assert layout([make_record(1)]) == (2, 3)  # one round: four metrics, each a point


def test_no_metrics_no_grid(tmp_path: Path) -> None:
    empty = RoundRecord(
        round=1, metrics={}, party_metrics={}, participants=(), failures={}, duration_s=0.1
    )
    assert layout([empty]) is None
    assert not plot_curves([empty], tmp_path / "c.png")
    assert not (tmp_path / "c.png").exists()
