"""A trained model predicts on its own: on the run's test split it scores what the run
reported; a run can start from another run's model."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from consortium.errors import ConfigError
from consortium.jobs import load_job, run
from consortium.jobs.predict import predict, write_predictions
from consortium.ml import load_dataset, read_card, train_test_split
from consortium.npz import load_arrays, save_arrays


def _raw_test_split(job) -> tuple[np.ndarray, np.ndarray]:
    """The job's test rows as they are on disk: before any standardisation."""
    spec = job.spec.data
    full = load_dataset(spec.dataset.name, seed=job.spec.seed, **spec.dataset.args)
    _, test = train_test_split(full, test_fraction=spec.test_fraction, seed=job.spec.seed)
    return test.x, test.y


@pytest.fixture
def trained(tmp_path, small_job, write_job):
    job = load_job(write_job(small_job()))
    result = run(job, out=tmp_path / "run", quiet=True)
    assert result.ok, result.error
    return job, result


def test_the_saved_model_scores_the_test_split_as_the_run_reported(tmp_path, trained):
    job, result = trained
    x, y = _raw_test_split(job)
    data = tmp_path / "test.csv"
    with open(data, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*(f"pixel_{i}" for i in range(x.shape[1])), "digit"])
        writer.writerows([*map(float, row), int(label)] for row, label in zip(x, y, strict=True))
    got = predict(tmp_path / "run", data, label="digit")
    assert got.metrics["accuracy"] == result.metrics["accuracy"]
    assert got.metrics["loss"] == pytest.approx(result.metrics["loss"], rel=1e-12)
    assert got.values.shape == (len(y),)
    assert np.mean(got.values == y) == result.metrics["accuracy"]

    write_predictions(tmp_path / "out.csv", got)
    lines = (tmp_path / "out.csv").read_text().splitlines()
    assert lines[0] == "prediction" and [int(v) for v in lines[1:]] == got.values.tolist()


def test_rows_in_an_npz_file_predict_the_same(tmp_path, trained):
    job, _ = trained
    x, _ = _raw_test_split(job)
    save_arrays(tmp_path / "rows.npz", {"x": x})
    by_npz = predict(tmp_path / "run" / "model.npz", tmp_path / "rows.npz")
    assert by_npz.metrics == {}
    card, weights = read_card(load_arrays(tmp_path / "run" / "model.npz"), "model")
    np.testing.assert_array_equal(by_npz.values, card.build(weights).predict(card.prepare(x, "")))


@pytest.mark.parametrize(
    ("text", "label", "match"),
    [
        ("a,b\n1,2\n", None, r"rows of 2 features, the model takes 64"),
        ("a,b\n1,x\n", None, r"line 2, column 'b': 'x' is not a number"),
        ("a,b\n1,2\n\n3,y\n", None, r"line 4, column 'b': 'y' is not a number"),
        ("a,b\n1,2,3\n", None, r"line 2 has 3 fields"),
        ("a,b\n1,2\n", "digit", r"no column 'digit'"),
    ],
)
def test_rows_that_do_not_fit_are_refused_naming_the_file(tmp_path, trained, text, label, match):
    data = tmp_path / "rows.csv"
    data.write_text(text)
    with pytest.raises(ConfigError, match=rf"{data}.*{match}"):
        predict(tmp_path / "run", data, label=label)


def test_a_run_starts_from_another_runs_model(tmp_path, trained, small_job, write_job):
    _, first = trained
    job = small_job(model={"name": "logreg", "init": {"from": str(tmp_path / "run")}})
    job["algorithm"]["local"]["lr"] = 1e-12  # training barely moves the starting model
    again = run(load_job(write_job(job, "again.yaml")), out=tmp_path / "again", quiet=True)
    assert again.ok, again.error
    assert again.metrics["accuracy"] == pytest.approx(first.metrics["accuracy"], abs=0.02)


def test_a_model_of_another_architecture_cannot_start_a_run(
    tmp_path, trained, small_job, write_job
):
    job = small_job(model={"name": "sk_sgd", "init": {"from": str(tmp_path / "run")}})
    with pytest.raises(ConfigError, match=r"model.init.from: .*a model 'logreg'"):
        run(load_job(write_job(job, "other.yaml")), out=tmp_path / "other", quiet=True)


def test_a_missing_starting_model_is_named(tmp_path, small_job, write_job):
    job = small_job(model={"name": "logreg", "init": {"from": "no/such/run"}})
    path = write_job(job)
    with pytest.raises(ConfigError, match=r"model.init.from: .*no/such/run: no such file"):
        run(load_job(path), out=tmp_path / "x", quiet=True)
