"""Which metrics curves.png shows, how, and what their titles say: checked against values
worked out here from the records (numpy for the bands), and against the resolved job."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from consortium.tracking import RoundRecord, choose_panels
from consortium.tracking.panels import MetricRows, is_duration, row_lengths

from .conftest import make_record

HORIZONTAL = {
    "name": "hfl",
    "topology": {"roles": {"aggregator": {"count": 1}, "trainer": {"count": 10}}},
    "data": {
        "test_fraction": 0.2,
        "roles": {
            "trainer": {"split": "train", "holdout": 0.2},
            "aggregator": {"split": "test", "holdout": 0.0},
        },
    },
    "algorithm": {
        "protocol": "horizontal",
        "evaluation": {"federated": True, "aggregation": {"name": "weighted_mean"}},
    },
}
VERTICAL = {
    "name": "vfl",
    "topology": {"roles": {"master": {"count": 1}, "member": {"count": 2}}},
    "data": {"test_fraction": 0.25, "roles": {"master": {}, "member": {}}},
    "algorithm": {"protocol": "vertical"},
}


def party_value(party: int, rnd: int) -> float:
    return (party + 1) / rnd


def horizontal_round(rnd: int, parties: int) -> RoundRecord:
    """A FedAvg round as the aggregator records it, with federated evaluation."""
    return RoundRecord(
        round=rnd,
        metrics={
            "loss": 1.0 / rnd,
            "accuracy": 1.0 - 0.5 / rnd,
            "examples": 1438.0,  # the same each round
            "replies": float(parties),  # the same each round
            "federated_loss": 1.1 / rnd,
            "federated_accuracy": 1.0 - 0.4 / rnd,
        },
        party_metrics={
            f"trainer-{i}": {
                "num_examples": 100.0 + i,  # a constant of its own per party
                "epochs": 1.0,
                "train_seconds": 0.001 * (i + rnd),  # timing noise
                "train_loss": party_value(i, rnd),
                "eval_accuracy": 1.0 - party_value(i, rnd) / 20,
            }
            for i in range(parties)
        },
        participants=tuple(f"trainer-{i}" for i in range(parties)),
        failures={},
        duration_s=0.1 * rnd,
    )


def test_a_horizontal_run_names_the_rows_of_each_metric() -> None:
    records = [horizontal_round(n, 10) for n in range(1, 5)]
    panels = choose_panels(records, HORIZONTAL)
    assert [(p.metric, p.title) for p in panels] == [
        ("loss", "loss\naggregator's test rows"),
        ("accuracy", "accuracy\naggregator's test rows"),
        ("federated_loss", "federated_loss\ntrainers' held-out rows, weighted mean"),
        ("federated_accuracy", "federated_accuracy\ntrainers' held-out rows, weighted mean"),
        ("train_loss", "train_loss\neach trainer's training rows"),
        ("eval_accuracy", "eval_accuracy\neach trainer's held-out rows"),
    ]  # no examples, replies, num_examples, epochs (constants) nor train_seconds (timing)
    assert [p.band is not None for p in panels] == [False] * 4 + [True] * 2
    (accuracy,) = panels[1].lines
    assert accuracy.rounds == (1, 2, 3, 4)
    assert accuracy.values == tuple(r.metrics["accuracy"] for r in records)


def test_more_than_five_parties_are_a_median_within_a_min_max_band() -> None:
    records = [horizontal_round(n, 6) for n in range(1, 4)]
    # trainer-2 missed round 2, and trainer-5 reported a diverged loss in round 3
    records[1] = replace(
        records[1],
        party_metrics={p: m for p, m in records[1].party_metrics.items() if p != "trainer-2"},
    )
    diverged = dict(records[2].party_metrics)
    diverged["trainer-5"] = {**diverged["trainer-5"], "train_loss": math.nan}
    records[2] = replace(records[2], party_metrics=diverged)
    (panel,) = [p for p in choose_panels(records, HORIZONTAL) if p.metric == "train_loss"]
    values = [
        [m["train_loss"] for m in r.party_metrics.values() if math.isfinite(m["train_loss"])]
        for r in records
    ]
    assert panel.band is not None
    assert panel.band.rounds == (1, 2, 3)
    np.testing.assert_allclose(panel.band.low, [np.min(v) for v in values])
    np.testing.assert_allclose(panel.band.high, [np.max(v) for v in values])
    (median,) = panel.lines
    assert median.label == "median of 6 trainers"
    np.testing.assert_allclose(median.values, [np.median(v) for v in values])


@pytest.mark.parametrize("parties", [1, 5])
def test_up_to_five_parties_are_a_line_each_in_name_order(parties: int) -> None:
    names = ["b-10", "b-9", "a", "b-1", "c"][:parties]
    records = [
        replace(
            make_record(n),
            party_metrics={name: {"train_loss": i + 1 / n} for i, name in enumerate(names)},
        )
        for n in range(1, 4)
    ]
    (panel,) = [p for p in choose_panels(records) if p.per_party]
    assert panel.band is None
    expected = sorted(names, key=lambda n: (n[0], int(n[2:]) if n[2:] else -1))
    assert [line.label for line in panel.lines] == expected  # b-9 before b-10
    for line in panel.lines:
        i = names.index(line.label)
        assert line.values == tuple(i + 1 / n for n in range(1, 4))


def test_durations_get_no_panel_even_when_they_vary() -> None:
    records = [
        replace(
            make_record(n),
            metrics={"accuracy": n / 4, "duration_s": n, "wait_seconds": 2 * n, "seconds": 3 * n},
            party_metrics={"bank-1": {"train_seconds": 0.1 * n, "train_loss": 1.0 / n}},
        )
        for n in range(1, 4)
    ]
    assert [p.metric for p in choose_panels(records)] == ["accuracy", "train_loss"]
    durations = ["train_seconds", "duration_s", "seconds"]
    assert [is_duration(name) for name in [*durations, "loss", "steps"]] == [True] * 3 + [False] * 2


def test_a_metric_each_party_keeps_is_no_panel() -> None:
    # make_record: each bank's example count stays the same (100 and 50); accuracy, loss
    # and the parties' train_loss change
    assert [p.metric for p in choose_panels([make_record(n) for n in range(1, 4)])] == [
        "accuracy",
        "loss",
        "train_loss",
    ]
    # one round: every metric is a point, none is known to stay the same
    assert [p.metric for p in choose_panels([make_record(1)])] == [
        "accuracy",
        "loss",
        "train_loss",
        "examples",
    ]


def test_without_a_job_titles_name_the_metric_only() -> None:
    panels = choose_panels([make_record(n) for n in range(1, 4)])
    assert [p.title for p in panels] == ["accuracy", "loss", "train_loss, per party"]


def test_a_vertical_run_names_the_aligned_records() -> None:
    records = [
        replace(
            make_record(n),
            metrics={"train_loss": 1.0 / n, "loss": 1.2 / n, "accuracy": 0.5 + n / 10},
            party_metrics={},
        )
        for n in range(1, 4)
    ]
    assert [p.title for p in choose_panels(records, VERTICAL)] == [
        "train_loss\ntraining rows: 75% of the aligned records",
        "loss\ntest rows: 25% of the aligned records",
        "accuracy\ntest rows: 25% of the aligned records",
    ]
    assert MetricRows(VERTICAL).x_label == "epoch"
    assert MetricRows(HORIZONTAL).x_label == "round"
    # the exact solver records one round with its step count: a point each, no rows claimed
    solved = replace(records[0], metrics={"steps": 12.0, "r2": 0.4})
    assert [p.title for p in choose_panels([solved], VERTICAL)] == [
        "r2\ntest rows: 25% of the aligned records",
        "steps",
    ]


def test_an_analytics_run_has_no_panel() -> None:
    empty = replace(make_record(1), metrics={}, party_metrics={})
    job = {"topology": {"roles": {"coordinator": {}, "worker": {"count": 3}}}}
    assert (
        choose_panels(
            [empty, replace(empty, round=2)], {**job, "algorithm": {"protocol": "analytics"}}
        )
        == []
    )


@pytest.mark.parametrize(
    ("binding", "rows"),
    [
        ({"split": "test"}, "aggregator's test rows"),
        ({"split": "train", "holdout": 0.3}, "aggregator's held-out rows"),
        ({"split": "train", "holdout": 0.0}, "aggregator's training rows"),
    ],
)
def test_the_aggregators_split_comes_from_the_job(binding: dict, rows: str) -> None:
    job = {**HORIZONTAL, "data": {"roles": {"aggregator": binding}}}
    assert MetricRows(job).of_global("accuracy") == rows
    # a strategy's count is computed on no rows
    assert MetricRows(job).of_global("replies") is None


def test_a_role_with_its_own_name_runs_the_program() -> None:
    job = {
        "topology": {
            "roles": {"server": {"program": "aggregator"}, "hospital": {"program": "trainer"}}
        },
        "data": {"roles": {"server": {"split": "test"}}},
        "algorithm": {"protocol": "horizontal", "evaluation": {"aggregation": {"name": "median"}}},
    }
    rows = MetricRows(job)
    assert rows.of_global("loss") == "server's test rows"
    assert rows.of_global("federated_loss") == "hospitals' held-out rows, median"
    assert rows.role_of(["hospital-0", "hospital-11"]) == "hospital"
    assert rows.role_of(["hospital-0", "server"]) == "party"
    assert rows.of_party("eval_loss", "hospital") == "each hospital's held-out rows"


def test_regions_of_a_hierarchy_are_named_as_such() -> None:
    job = {
        "topology": {"roles": {"aggregator": {}, "region": {"count": 3}, "trainer": {"count": 12}}},
        "algorithm": {"protocol": "horizontal"},
    }
    records = [
        replace(
            make_record(n),
            party_metrics={f"region-{i}": {"replies": float(4 - (n + i) % 2)} for i in range(3)},
        )
        for n in range(1, 4)
    ]
    (panel,) = [p for p in choose_panels(records, job) if p.per_party]
    assert panel.title == "replies, per region"


@pytest.mark.parametrize("count", range(1, 13))
def test_rows_share_the_panels_evenly_three_at_most(count: int) -> None:
    rows = row_lengths(count)
    assert sum(rows) == count
    assert len(rows) == math.ceil(count / 3)
    assert all(1 <= n <= 3 for n in rows)
    assert max(rows) - min(rows) <= 1
    assert list(rows) == sorted(rows, reverse=True)


def test_row_lengths_of_a_few_counts() -> None:
    assert [row_lengths(n) for n in (0, 1, 2, 4, 5, 7, 10)] == [
        (),
        (1,),
        (2,),
        (2, 2),
        (3, 2),
        (3, 2, 2),
        (3, 3, 2, 2),
    ]
