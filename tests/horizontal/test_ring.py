"""Ring training: the model goes round the trainers, and equals plain sequential training."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from consortium.jobs import bind_data, parse_job, run
from consortium.runtime import derive_rng


def _job(**changes: Any) -> dict[str, Any]:
    job: dict[str, Any] = {
        "name": "ring",
        "seed": 3,
        "topology": {
            "template": "ring",
            "roles": {"aggregator": {"count": 1}, "trainer": {"count": 4}},
        },
        "data": {"dataset": {"name": "digits"}},
        "model": {"name": "logreg"},
        "algorithm": {"rounds": 3, "local": {"epochs": 1, "batch_size": 16, "lr": 0.05}},
        "tracking": {"console": False, "mlflow": {"enabled": False}},
    }
    job.update(changes)
    return job


def _sequential_oracle(job: dict[str, Any]) -> tuple[dict[str, np.ndarray], float]:
    """The same training as a plain loop: each round, each trainer in turn, starting one
    further along the ring every round."""
    loaded = parse_job(job)
    parties = bind_data(loaded)
    trainers = loaded.topology.with_role("trainer")
    model = parties["aggregator"].model_factory()
    local = job["algorithm"]["local"]
    for rnd in range(1, job["algorithm"]["rounds"] + 1):
        start = (rnd - 1) % len(trainers)
        for name in trainers[start:] + trainers[:start]:
            data = parties[name].train
            rank = loaded.topology.party(name).rank
            model.fit(data.x, data.y, rng=derive_rng(job["seed"], rnd, rank), **local)
    test = parties["aggregator"].test
    return model.get_weights(), model.evaluate(test.x, test.y)["accuracy"]


def test_ring_equals_sequential_training(tmp_path):
    job = _job()
    result = run(job, out=tmp_path / "run", quiet=True)
    assert result.ok, result.error
    weights, accuracy = _sequential_oracle(job)
    with np.load(tmp_path / "run" / "model.npz") as got:
        for name, value in weights.items():
            np.testing.assert_allclose(got[name], value, rtol=1e-6, atol=1e-7)
    assert result.metrics["accuracy"] == accuracy
    assert accuracy > 0.85
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [line["participants"] for line in lines] == [
        ["trainer-0", "trainer-1", "trainer-2", "trainer-3"],
        ["trainer-1", "trainer-2", "trainer-3", "trainer-0"],
        ["trainer-2", "trainer-3", "trainer-0", "trainer-1"],
    ]
