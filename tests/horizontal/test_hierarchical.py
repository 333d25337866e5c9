"""A hierarchy of aggregators: trainers -> regional aggregators -> the root.

With example-weighted FedAvg at every level, a two-level run computes the same global model
as a flat run over the same trainers. Full-batch local steps make each trainer's update
independent of its shuffling stream (which is keyed by the party's rank, and ranks differ
between the two topologies), so the two runs must agree to float tolerance.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from consortium.jobs import run


def _job(topology: dict[str, Any], **algorithm: Any) -> dict[str, Any]:
    return {
        "name": "hier",
        "seed": 5,
        "topology": topology,
        "data": {
            "dataset": {"name": "digits"},
            "roles": {
                "trainer": {
                    "split": "train",
                    "partitioner": {"name": "dirichlet", "args": {"alpha": 0.5}},
                },
                "aggregator": {"split": "test"},
            },
        },
        "model": {"name": "logreg"},
        "algorithm": {
            "rounds": 4,
            "local": {"epochs": 2, "batch_size": 10_000, "lr": 0.5},
            **algorithm,
        },
        "tracking": {"console": False, "mlflow": {"enabled": False}},
    }


FLAT = {"template": "star", "roles": {"aggregator": {"count": 1}, "trainer": {"count": 7}}}
TWO_LEVELS = {
    "template": "hierarchical",
    "roles": {"aggregator": {"count": 1}, "region": {"count": 3}, "trainer": {"count": 7}},
}
THREE_LEVELS = {
    "template": "hierarchical",
    "roles": {
        "aggregator": {"count": 1},
        "zone": {"count": 2},
        "region": {"count": 3},
        "trainer": {"count": 7},
    },
}


def _model(run_dir: Path) -> dict[str, np.ndarray]:
    with np.load(run_dir / "model.npz") as f:
        return {k: f[k] for k in f.files}


@pytest.mark.parametrize("tree", [TWO_LEVELS, THREE_LEVELS], ids=["two-levels", "three-levels"])
def test_hierarchical_fedavg_equals_flat_fedavg(tmp_path, tree):
    flat = run(_job(FLAT), out=tmp_path / "flat", quiet=True)
    hier = run(_job(tree), out=tmp_path / "hier", quiet=True)
    assert flat.ok and hier.ok, hier.error
    a, b = _model(tmp_path / "flat"), _model(tmp_path / "hier")
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_allclose(b[name], a[name], rtol=1e-5, atol=1e-6)
    assert hier.metrics["accuracy"] == pytest.approx(flat.metrics["accuracy"], abs=1e-9)
    assert flat.metrics["accuracy"] > 0.8  # the comparison is between trained models


def test_the_root_sees_regions_and_their_example_counts(tmp_path):
    result = run(_job(TWO_LEVELS), out=tmp_path / "run", quiet=True)
    assert result.ok, result.error
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert sorted(lines[0]["participants"]) == ["region-0", "region-1", "region-2"]
    per_region = [lines[0]["party_metrics"][f"region-{i}"] for i in range(3)]
    assert [m["replies"] for m in per_region] == [3, 2, 2]  # trainers split 3 / 2 / 2
    assert sum(m["num_examples"] for m in per_region) == lines[0]["metrics"]["examples"]
