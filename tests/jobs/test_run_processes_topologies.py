"""Hierarchical and ring topologies, and SCAFFOLD (auxiliary tensors both ways) with
federated evaluation, with one OS process per party over gRPC: the same models as
in-process."""

from __future__ import annotations

import numpy as np
import pytest

from consortium.jobs import load_job, run

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    "example",
    ["hfl_hierarchical", "hfl_ring", "hfl_noniid"],
    ids=["hierarchical", "ring", "scaffold-with-federated-evaluation"],
)
def test_topology_on_processes_matches_inproc(tmp_path, flagship, example):
    path = flagship.with_name(f"{example}.yaml")
    # no drawing at the end: the hub leaves as soon as its rounds are done, and every party
    # must still stop by itself (not be stopped by the launcher once its grace is over)
    overrides = [
        "algorithm.rounds=3",
        "tracking.console=false",
        "tracking.mlflow.enabled=false",
        "tracking.curves=false",
    ]
    job = load_job(path, overrides)
    local = run(job, launcher="inproc", out=tmp_path / "inproc", quiet=True)
    remote = run(job, launcher="processes", out=tmp_path / "processes", quiet=True)
    assert local.ok and remote.ok, remote.error
    assert remote.rounds_completed == local.rounds_completed == 3
    with (
        np.load(tmp_path / "inproc" / "model.npz") as a,
        np.load(tmp_path / "processes" / "model.npz") as b,
    ):
        for name in a.files:
            np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-6)
    assert remote.metrics["accuracy"] == pytest.approx(local.metrics["accuracy"], abs=1e-6)
