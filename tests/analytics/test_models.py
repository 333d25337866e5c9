"""Model operations: round robin finishes with every party's contribution (and equals
training on each party in turn), Iterate refines a model round after round, TrainTest scores
it, and the federated forest predicts as scikit-learn does with the same trees."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from consortium.analytics.forest import grow_trees, predict_forest, unpack_trees
from consortium.ml import build_model

pd = pytest.importorskip("pandas")

FEATURES = ["age", "bmi", "bp", "s5"]
PIPELINE = {
    "id": "pipe",
    "step": "parallel",
    "operation": {
        "name": "preprocess",
        "args": {
            "query": {"table": "patients"},
            "steps": [
                {"kind": "imputer", "columns": ["bmi", "bp"], "strategy": "mean"},
                {"kind": "standard_scaler", "columns": FEATURES},
            ],
        },
    },
}
INIT = {
    "step": "initialize",
    "operation": {
        "name": "model.init",
        "args": {"table": "patients", "features": FEATURES, "label": "sex"},
    },
}


def _train(name="train", label="sex", **extra):
    args = {
        "query": {"table": "patients"},
        "features": FEATURES,
        "label": label,
        "epochs": 3,
        "batch_size": 10_000,
        "lr": 0.5,
        **extra,
    }
    return {"name": name, "args": args}


def test_round_robin_finishes_with_every_partys_contribution(
    tmp_path, job_dict, run_analytics, data_dir
):
    steps = [PIPELINE, INIT, {"id": "ring", "step": "round_robin", "operation": _train()}]
    result, jobs = run_analytics(job_dict(steps), tmp_path / "run")
    assert result.ok, result.error
    frames = [pd.read_csv(data_dir / f"diabetes_{i}.csv", dtype={"sex": str}) for i in range(3)]
    for i, frame in enumerate(frames):
        assert jobs[f"ring@worker-{i}"]["parties"] == [f"worker-{i}"]
        assert jobs[f"ring@worker-{i}"]["result"]["examples"] == len(frame)
    with np.load(tmp_path / "run" / "model.npz") as saved:
        assert saved["model_examples"][0] == sum(len(f) for f in frames)
        got = {k[6:]: saved[k] for k in saved.files if k.startswith("model.")}
    # Oracle: the pipeline fitted on the pooled rows, then full-batch training on each
    # party's rows in turn (full batches make the result independent of shuffling).
    pooled = pd.concat(frames, ignore_index=True)
    means = pooled[FEATURES].mean()
    filled = [f[FEATURES].fillna(means[["bmi", "bp"]]) for f in frames]
    everything = pd.concat(filled)
    mu, sd = everything.mean(), everything.std(ddof=0)
    model = build_model("logreg", n_features=4, n_classes=2, seed=0)
    for f, frame in zip(filled, frames, strict=True):
        x = ((f - mu) / sd).to_numpy()
        y = (frame.sex == "2").to_numpy().astype(np.int64)
        model.fit(x, y, epochs=3, batch_size=10_000, lr=0.5, rng=np.random.default_rng(0))
    for name, value in model.get_weights().items():
        np.testing.assert_allclose(got[name], value, rtol=1e-4, atol=1e-5)


def test_iterate_refines_the_model(tmp_path, job_dict, run_analytics):
    init = {
        "step": "initialize",
        "operation": {
            "name": "model.init",
            "args": {"table": "patients", "features": FEATURES, "label": "age_band"},
        },
    }
    train = _train("train_test", label="age_band", holdout=0.25, epochs=1)
    steps = [
        PIPELINE,
        init,
        {
            "id": "fit",
            "step": "iterate",
            "times": 6,
            "steps": [{"id": "round", "step": "parallel", "operation": train}],
        },
    ]
    result, jobs = run_analytics(job_dict(steps), tmp_path / "run")
    assert result.ok, result.error
    losses = [jobs[f"fit#{i}/round"]["result"]["train_loss"] for i in range(6)]
    tests = [jobs[f"fit#{i}/round"]["result"]["test"]["loss"] for i in range(6)]
    assert losses[0] == pytest.approx(np.log(3), rel=1e-6)  # the first round starts at zero
    assert all(b < a for a, b in itertools.pairwise(losses))  # each starts from the last model
    assert all(b < a for a, b in itertools.pairwise(tests))
    assert jobs["fit#5/round"]["result"]["test"]["accuracy"] > 0.7
    assert len(set(losses)) == 6
    assert jobs["fit#5/round"]["result"]["test_examples"] == pytest.approx(
        sum(round(0.25 * n) for n in (199, 110, 133))
    )


def test_forest_predicts_like_sklearn_with_the_same_trees():
    from sklearn.datasets import load_wine
    from sklearn.ensemble import RandomForestClassifier

    from consortium.analytics.forest import ForestArgs

    x, y = load_wine(return_X_y=True)
    args = ForestArgs.model_validate(
        {"query": {"table": "w"}, "features": ["a"], "label": "b", "trees": 7, "max_depth": 4}
    )
    trees = unpack_trees(grow_trees(args, x, y, 3, seed=5), "")
    oracle = RandomForestClassifier(n_estimators=7, max_depth=4, random_state=5, n_jobs=1).fit(x, y)
    np.testing.assert_allclose(predict_forest(trees, x), oracle.predict_proba(x), atol=1e-12)
    # a party that lacks a class still votes over all of them
    part = unpack_trees(grow_trees(args, x[y != 1], y[y != 1], 3, seed=5), "")
    assert predict_forest(part, x)[:, 1].max() == 0


def test_forest_with_cross_validation(tmp_path, job_dict, run_analytics, wine_columns):
    args = {
        "query": {"table": "wine"},
        "features": wine_columns,
        "label": "cultivar",
        "trees": 5,
        "max_depth": 5,
        "folds": 3,
    }
    steps = [
        {
            "id": "imp",
            "step": "parallel",
            "operation": {
                "name": "preprocess",
                "args": {
                    "query": {"table": "wine"},
                    "steps": [{"kind": "imputer", "columns": ["magnesium"], "strategy": "median"}],
                },
            },
        },
        {"id": "forest", "step": "parallel", "operation": {"name": "forest", "args": args}},
        {"id": "local", "step": "parallel", "operation": {"name": "local_cv", "args": args}},
    ]
    result, jobs = run_analytics(job_dict(steps), tmp_path / "run")
    assert result.ok, result.error
    forest = jobs["forest"]["result"]
    assert forest["trees"] == 15
    assert [f["fold"] for f in forest["folds"]] == [0, 1, 2]
    assert sum(f["examples"] for f in forest["folds"]) == 178  # every row scored once
    assert forest["cv_accuracy"] > 0.85
    assert jobs["local"]["result"]["examples"] == 178
    with np.load(tmp_path / "run" / "model.npz") as saved:
        assert sum(k.endswith(".value") for k in saved.files if k.startswith("forest.")) == 15
