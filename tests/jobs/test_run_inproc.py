"""End-to-end runs on the in-process launcher, checked against what they must produce."""

from __future__ import annotations

import json

import numpy as np
import pytest

import consortium
from consortium.jobs import load_job, run
from consortium.ml import read_card
from consortium.npz import load_arrays


def test_small_run_writes_everything_and_logs_to_mlflow(tmp_path, small_job, write_job, console):
    mlflow = pytest.importorskip("mlflow")
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    job = small_job(
        tracking={
            "console": True,
            "mlflow": {"enabled": True, "tracking_uri": store, "experiment": "e2e"},
        }
    )
    result = run(load_job(write_job(job)), out=tmp_path / "run", console=console)
    assert result.ok, result.error
    assert result.rounds_completed == 3
    assert result.metrics["accuracy"] > 0.85
    run_dir = tmp_path / "run"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["metrics"] == pytest.approx(dict(result.metrics))
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [x["round"] for x in lines] == [1, 2, 3]
    assert sorted(lines[0]["participants"]) == [f"trainer-{i}" for i in range(4)]
    assert set(lines[0]["party_metrics"]["trainer-0"]) >= {"num_examples", "train_loss"}
    card, weights = read_card(load_arrays(run_dir / "model.npz"), "model.npz")
    assert set(weights) == {"W", "b"} and weights["W"].shape == (64, 10)
    assert (card.model, card.n_features, card.n_classes) == ("logreg", 64, 10)
    assert card.mean is not None and card.mean.shape == (64,)  # the rows were standardised
    assert (run_dir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "accuracy" in console.file.getvalue()

    client = mlflow.tracking.MlflowClient(tracking_uri=store)
    (exp,) = [e for e in client.search_experiments() if e.name == "e2e"]
    (mrun,) = client.search_runs([exp.experiment_id])
    assert mrun.info.status == "FINISHED"
    assert mrun.data.params["algorithm.rounds"] == "3"
    history = client.get_metric_history(mrun.info.run_id, "accuracy")
    assert [m.step for m in history] == [1, 2, 3]
    assert history[-1].value == pytest.approx(result.metrics["accuracy"])


def test_federated_matches_itself_and_learns(tmp_path, small_job):
    job = small_job(runtime={"workers": 2})
    a = consortium.run(job, out=tmp_path / "a", quiet=True)
    b = consortium.run(job, out=tmp_path / "b", quiet=True)
    assert a.ok and b.ok
    assert a.metrics["accuracy"] == pytest.approx(b.metrics["accuracy"], abs=1e-9)
    with np.load(tmp_path / "a" / "model.npz") as ma, np.load(tmp_path / "b" / "model.npz") as mb:
        for name in ma.files:
            np.testing.assert_allclose(ma[name], mb[name], rtol=1e-5, atol=1e-6)


def test_one_trainer_with_all_data_equals_central_training(tmp_path, small_job):
    """FedAvg with a single trainer is plain SGD on the pooled training rows: same model."""
    from consortium.jobs import bind_data

    job = small_job(
        topology={
            "template": "star",
            "roles": {"aggregator": {"count": 1}, "trainer": {"count": 1}},
        }
    )
    loaded = consortium.jobs.parse_job(job)
    result = run(loaded, out=tmp_path / "fed", quiet=True)
    data = bind_data(loaded)
    model = data["trainer"].model_factory()
    train = data["trainer"].train
    local = loaded.algorithm.local
    for rnd in range(1, loaded.algorithm.rounds + 1):
        # the same (seed, round, party rank) stream the trainer used
        rng = consortium.runtime.derive_rng(
            loaded.spec.seed, rnd, loaded.topology.party("trainer").rank
        )
        model.fit(
            train.x, train.y, epochs=local.epochs, batch_size=local.batch_size, lr=local.lr, rng=rng
        )
    test = data["aggregator"].test
    assert result.metrics["accuracy"] == pytest.approx(
        model.evaluate(test.x, test.y)["accuracy"], abs=1e-9
    )


def test_a_crashing_trainer_fails_the_run_and_is_named(tmp_path, small_job, write_job):
    job = small_job(
        plugins=["faulty_plugins"],
        model={"name": "faulty_logreg", "args": {"fault": "raise", "at_call": 2}},
    )
    path = write_job(job)
    import pathlib
    import shutil

    shutil.copy(pathlib.Path(__file__).with_name("faulty_plugins.py"), path.parent)
    result = run(load_job(path), out=tmp_path / "run", quiet=True)
    assert not result.ok
    assert "trainer-" in result.error and "simulated bug in local training" in result.error
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed"
    assert summary["rounds"] == 1  # the round finished before the crash is kept
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 1


def test_nan_updates_are_recorded_failures_not_crashes(tmp_path, small_job, write_job):
    job = small_job(
        plugins=["faulty_plugins"],
        model={"name": "faulty_logreg", "args": {"fault": "nan", "at_call": 1, "parties": None}},
        algorithm__quorum=0.5,
    )
    path = write_job(job)
    import pathlib
    import shutil

    shutil.copy(pathlib.Path(__file__).with_name("faulty_plugins.py"), path.parent)
    result = run(load_job(path), out=tmp_path / "run", quiet=True)
    # every trainer poisons its update: no usable reply, so the quorum is lost
    assert not result.ok
    assert "NaN" in result.error and "quorum" in result.error


def test_a_thousand_simulated_trainers_share_a_small_pool(tmp_path, small_job):
    import threading

    seen_threads: list[int] = []

    job = small_job(
        topology={
            "template": "star",
            "roles": {"aggregator": {"count": 1}, "trainer": {"count": 1000}},
        },
        data__dataset={
            "name": "synthetic",
            "args": {"n_samples": 20_000, "n_features": 20, "n_classes": 3},
        },
        algorithm__selection={"name": "random", "args": {"count": 50}},
        algorithm__rounds=2,
        runtime={"workers": 2},
    )
    loaded = consortium.jobs.parse_job(job)
    from consortium.jobs import run_inproc

    result = run_inproc(
        loaded,
        tmp_path / "run",
        quiet=True,
        on_context=lambda ctx: seen_threads.append(threading.active_count()),
    )
    assert result.ok, result.error
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [len(x["participants"]) for x in lines] == [50, 50]
    assert max(seen_threads) <= 2 + 4  # the pool, not a thread per party


def test_flagship_reaches_090(tmp_path, flagship):
    result = run(
        load_job(flagship, ["tracking.mlflow.enabled=false"]), out=tmp_path / "run", quiet=True
    )
    assert result.ok and result.rounds_completed == 20
    assert result.metrics["accuracy"] >= 0.90


def test_curves_are_drawn_unless_the_job_says_not(tmp_path, small_job):
    pytest.importorskip("matplotlib")
    drawn = run(small_job(), out=tmp_path / "drawn", quiet=True)
    plain = run(small_job(tracking__curves=False), out=tmp_path / "plain", quiet=True)
    assert drawn.ok and plain.ok
    assert (tmp_path / "drawn" / "curves.png").is_file()
    assert not (tmp_path / "plain" / "curves.png").exists()
    assert (tmp_path / "plain" / "metrics.jsonl").read_text()  # the data is all there
