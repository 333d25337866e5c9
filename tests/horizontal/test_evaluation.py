"""Federated evaluation: trainers score the global model on their own held-out rows."""

from __future__ import annotations

import json

import pytest

from consortium.errors import ConfigError
from consortium.horizontal.evaluation import METRIC_AGGREGATIONS
from consortium.jobs import bind_data, parse_job, run
from consortium.ml import read_card
from consortium.npz import load_arrays


def test_aggregations_against_plain_arithmetic():
    scores = [(10, {"accuracy": 0.5, "loss": 2.0}), (30, {"accuracy": 0.9, "loss": 1.0, "x": 3.0})]
    weighted = METRIC_AGGREGATIONS.get("weighted_mean")(scores)
    assert weighted == pytest.approx({"accuracy": (5 + 27) / 40, "loss": (20 + 30) / 40})
    assert METRIC_AGGREGATIONS.get("mean")(scores) == pytest.approx({"accuracy": 0.7, "loss": 1.5})
    assert METRIC_AGGREGATIONS.get("median")(
        [(1, {"a": 1.0}), (1, {"a": 9.0}), (5, {"a": 2.0})]
    ) == {"a": 2.0}


def _job(small_job, **changes):
    return small_job(
        data__roles={
            "trainer": {"split": "train", "partitioner": {"name": "iid"}, "holdout": 0.25},
            "aggregator": {"split": "test"},
        },
        algorithm__evaluation={"federated": True, "every": 1},
        **changes,
    )


def test_federated_metrics_equal_the_weighted_mean_of_local_scores(tmp_path, small_job):
    job = _job(small_job)
    result = run(job, out=tmp_path / "run", quiet=True)
    assert result.ok, result.error
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    # Oracle: score the final global model on each trainer's held-out rows, by hand.
    data = bind_data(parse_job(job))
    _, weights = read_card(load_arrays(tmp_path / "run" / "model.npz"), "model.npz")
    model = data["aggregator"].model_factory()
    model.set_weights(weights)
    total, correct = 0, 0.0
    for i in range(4):
        test = data[f"trainer-{i}"].test
        acc = model.evaluate(test.x, test.y)["accuracy"]
        assert lines[-1]["party_metrics"][f"trainer-{i}"]["eval_accuracy"] == pytest.approx(acc)
        total += len(test.y)
        correct += acc * len(test.y)
    assert result.metrics["federated_accuracy"] == pytest.approx(correct / total)
    assert "federated_loss" in lines[0]["metrics"]


def test_held_out_rows_are_not_trained_on(small_job):
    data = bind_data(parse_job(_job(small_job)))
    plain = bind_data(parse_job(small_job()))
    for i in range(4):
        own = data[f"trainer-{i}"]
        assert len(own.train.y) + len(own.test.y) == len(plain[f"trainer-{i}"].train.y)
        rows = {r.tobytes() for r in own.train.x}
        assert not any(r.tobytes() in rows for r in own.test.x)


def test_federated_evaluation_needs_held_out_rows(small_job):
    job = small_job(algorithm__evaluation={"federated": True})
    with pytest.raises(ConfigError, match=r"algorithm.evaluation.federated needs rows"):
        parse_job(job)
