"""MLflow receives params, metrics per step, tags, status and artifacts (a real local store)."""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from consortium.errors import ConfigError
from consortium.tracking import (
    MlflowSettings,
    MlflowSink,
    ParamValue,
    RoundRecord,
    RunInfo,
    RunSummary,
    build_tracker,
)
from consortium.tracking.mlflow_sink import MLFLOW_MISSING, default_tracking_uri

mlflow_tracking = pytest.importorskip("mlflow.tracking")


def client_for(uri: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # to read a file store back
    return mlflow_tracking.MlflowClient(tracking_uri=uri)


def test_three_rounds_read_back_from_the_default_store(
    run_dir: Path,
    info: RunInfo,
    record: Callable[[int], RoundRecord],
    summary: RunSummary,
    model: dict[str, np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tracker = build_tracker(run_dir=run_dir, console=False, mlflow=MlflowSettings())
    sink = tracker.sinks[-1]
    assert isinstance(sink, MlflowSink)
    with tracker:
        tracker.start(info)
        for n in (1, 2, 3):
            tracker.round(record(n))
        tracker.finish(summary, model)
    assert tracker.disabled == ()
    assert "MLFLOW_ALLOW_FILE_STORE" not in os.environ  # the opt-in was only temporary

    uri = default_tracking_uri(run_dir.parent)
    assert uri.startswith(("sqlite:///", "file://"))
    client = client_for(uri, monkeypatch)
    experiment = client.get_experiment_by_name(info.job_name)
    assert experiment is not None
    run = client.get_run(sink.run_id)
    assert run.info.experiment_id == experiment.experiment_id
    assert run.info.run_name == info.run_id
    assert run.info.status == "FINISHED"
    assert run.data.params == {k: str(v) for k, v in info.params.items()}
    assert run.data.params["algorithm.rounds"] == "3"
    tags = run.data.tags
    assert tags["consortium.job"] == info.job_name
    assert tags["consortium.job_hash"] == info.job_hash
    assert tags["consortium.run_id"] == info.run_id
    assert tags["consortium.status"] == "completed"

    def history(key: str) -> list[tuple[int, float]]:
        metrics = client.get_metric_history(sink.run_id, key)
        return sorted((m.step, m.value) for m in metrics)

    expected = [record(n) for n in (1, 2, 3)]
    assert history("accuracy") == [(r.round, r.metrics["accuracy"]) for r in expected]
    assert history("loss") == [(r.round, r.metrics["loss"]) for r in expected]
    assert history("party/bank-2/train_loss") == [
        (r.round, r.party_metrics["bank-2"]["train_loss"]) for r in expected
    ]
    assert history("round/participants") == [(1, 2.0), (2, 1.0), (3, 2.0)]
    assert history("round/failures") == [(1, 0.0), (2, 1.0), (3, 0.0)]
    assert history("final/accuracy") == [(3, 0.875)]
    assert history("run/duration_s") == [(3, 12.5)]

    artifacts = {a.path for a in client.list_artifacts(sink.run_id)}
    assert {"model.npz", "job.yaml", "curves.png", "summary.json"} <= artifacts
    assert {"metrics.jsonl", "events.jsonl"} <= artifacts


def test_failed_run_is_failed_in_mlflow(
    tmp_path: Path,
    run_dir: Path,
    info: RunInfo,
    record: Callable[[int], RoundRecord],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    uri = (tmp_path / "store").as_uri()
    settings = MlflowSettings(tracking_uri=uri, experiment="experiments/fl")
    tracker = build_tracker(run_dir=run_dir, console=False, mlflow=settings)
    sink = tracker.sinks[-1]
    assert isinstance(sink, MlflowSink)
    with pytest.raises(RuntimeError), tracker:
        tracker.start(info)
        tracker.round(record(1))
        raise RuntimeError("bank-1 crashed")
    client = client_for(uri, monkeypatch)
    run = client.get_run(sink.run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["consortium.status"] == "failed"
    assert run.data.tags["consortium.error"] == "RuntimeError: bank-1 crashed"
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == "experiments/fl"
    artifacts = {a.path for a in client.list_artifacts(sink.run_id)}
    assert "model.npz" not in artifacts
    assert {"summary.json", "metrics.jsonl"} <= artifacts


def test_long_params_and_odd_names_are_made_acceptable(
    tmp_path: Path,
    run_dir: Path,
    info: RunInfo,
    summary: RunSummary,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    uri = (tmp_path / "store").as_uri()
    params: dict[str, ParamValue] = {"data.paths": "x" * 10_000, "weird key?": 1, "flag": True}
    odd = dataclasses.replace(info, params=params)
    sink = MlflowSink(settings=MlflowSettings(tracking_uri=uri))
    sink.start(odd)
    sink.round(
        RoundRecord(
            round=1,
            metrics={"acc@top-5": 0.5},
            party_metrics={"bank#1": {"loss": 1.0}},
            participants=("bank#1",),
            failures={},
            duration_s=1.0,
        )
    )
    sink.finish(summary, None)
    sink.close()
    run = client_for(uri, monkeypatch).get_run(sink.run_id)
    assert len(run.data.params["data.paths"]) <= 6000
    assert run.data.params["data.paths"].endswith("...")
    assert run.data.params["weird key_"] == "1"
    assert run.data.params["flag"] == "True"
    assert {"acc_top-5", "party/bank_1/loss"} <= set(run.data.metrics)


def test_mlflow_tracking_uri_variable_is_honoured(
    tmp_path: Path,
    run_dir: Path,
    info: RunInfo,
    summary: RunSummary,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    uri = (tmp_path / "team-store").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    sink = MlflowSink()
    sink.start(info)
    sink.finish(summary, None)
    sink.close()
    assert client_for(uri, monkeypatch).get_run(sink.run_id).info.status == "FINISHED"
    assert not (run_dir.parent / "mlruns").exists()


def test_missing_mlflow_is_a_config_error(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # makes `import mlflow` fail
    with pytest.raises(ConfigError) as caught:
        build_tracker(run_dir=run_dir, console=False, mlflow=MlflowSettings())
    assert str(caught.value) == MLFLOW_MISSING
    # Without MLflow settings, MLflow is never needed.
    build_tracker(run_dir=run_dir, console=False, mlflow=None).close()


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_round_metrics_are_sent_in_batches_every_flush_s(
    tmp_path: Path,
    info: RunInfo,
    record: Callable[[int], RoundRecord],
    summary: RunSummary,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    uri = (tmp_path / "store").as_uri()
    clock = FakeClock()
    sink = MlflowSink(settings=MlflowSettings(tracking_uri=uri), flush_s=1.0, clock=clock)
    client = client_for(uri, monkeypatch)
    sink.start(info)

    def steps() -> list[int]:
        return sorted(m.step for m in client.get_metric_history(sink.run_id, "loss"))

    sink.round(record(1))
    clock.now += 0.5
    sink.round(record(2))
    assert steps() == []  # within a second of the start: held
    clock.now += 0.5
    sink.round(record(3))
    assert steps() == [1, 2, 3]  # a second since the last batch: all three in one
    sink.round(record(4))
    assert steps() == [1, 2, 3]
    sink.finish(summary, None)  # sends what is left
    assert steps() == [1, 2, 3, 4]
    final = client.get_metric_history(sink.run_id, "final/accuracy")
    assert [m.step for m in final] == [summary.rounds_completed]
    sink.close()


def test_flush_s_zero_sends_every_round(
    tmp_path: Path,
    info: RunInfo,
    record: Callable[[int], RoundRecord],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    uri = (tmp_path / "store").as_uri()
    sink = MlflowSink(settings=MlflowSettings(tracking_uri=uri), flush_s=0.0, clock=FakeClock())
    client = client_for(uri, monkeypatch)
    sink.start(info)
    sink.round(record(1))
    assert [m.step for m in client.get_metric_history(sink.run_id, "loss")] == [1]
    sink.close()


def test_a_run_closed_unfinished_keeps_its_held_rounds(
    tmp_path: Path,
    info: RunInfo,
    record: Callable[[int], RoundRecord],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    uri = (tmp_path / "store").as_uri()
    sink = MlflowSink(settings=MlflowSettings(tracking_uri=uri), clock=FakeClock())
    sink.start(info)
    sink.round(record(1))
    sink.round(record(2))
    sink.close()  # no finish: killed, with both rounds
    client = client_for(uri, monkeypatch)
    assert client.get_run(sink.run_id).info.status == "KILLED"
    assert sorted(m.step for m in client.get_metric_history(sink.run_id, "loss")) == [1, 2]


@pytest.mark.parametrize("flush_s", [-1.0, float("nan")])
def test_flush_s_must_be_seconds(flush_s: float) -> None:
    with pytest.raises(ConfigError, match="flush_s"):
        MlflowSink(flush_s=flush_s)
