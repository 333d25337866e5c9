"""The public data surface: datasets and partitioners of one's own, by name or as objects."""

from __future__ import annotations

import numpy as np
import pytest

import consortium
from consortium.data import (
    Dataset,
    classification,
    load_dataset,
    register_dataset,
    register_partitioner,
    regression,
)
from consortium.errors import ConfigError
from consortium.jobs import bind_data, parse_job


def _blobs(seed: int, n: int = 400) -> Dataset:
    rng = np.random.default_rng(seed)
    labels = np.where(rng.random(n) < 0.5, "left", "right")
    x = rng.normal(size=(n, 3)) + np.where(labels == "left", -2.0, 2.0)[:, None]
    return classification("blobs", x, labels)


@register_dataset("test_blobs")
def blobs(*, seed: int, n: int = 400) -> Dataset:
    return _blobs(seed, n)


def test_classification_numbers_the_labels_in_sorted_order():
    ds = classification("t", [[1.0], [2.0], [3.0]], ["b", "a", "b"])
    assert ds.y.tolist() == [1, 0, 1] and ds.n_classes == 2 and ds.x.dtype == np.float32
    reg = regression("r", [[1.0], [2.0]], [0.5, 1.5])
    assert reg.task == "regression" and reg.y.dtype == np.float32


def test_a_registered_loader_is_named_by_a_job_with_its_args(tmp_path, small_job):
    job = small_job(data__dataset={"name": "test_blobs", "args": {"n": 300}})
    data = bind_data(parse_job(job))
    held = sum(len(data[p].train.y) for p in data if p.startswith("trainer"))
    assert held + len(data["aggregator"].test.y) == 300
    result = consortium.run(job, out=tmp_path / "r", quiet=True)
    assert result.ok and result.metrics["accuracy"] > 0.9


def test_a_dataset_object_runs_in_a_simulation(tmp_path, small_job):
    result = consortium.run(small_job(), out=tmp_path / "r", quiet=True, dataset=_blobs(3))
    assert result.ok and result.metrics["accuracy"] > 0.9
    assert "python:blobs" in (tmp_path / "r" / "job.yaml").read_text()


def test_a_loader_that_fails_or_takes_other_args_names_the_dataset(small_job):
    with pytest.raises(ConfigError, match="test_blobs.*rows"):
        load_dataset("test_blobs", seed=0, rows=5)
    with pytest.raises(ConfigError, match="unknown dataset 'nope'"):
        parse_job(small_job(data__dataset={"name": "nope"}))


def test_a_registered_partitioner_decides_who_holds_which_rows(small_job):
    @register_partitioner("test_halves", force=True)
    def halves(labels: np.ndarray, *, n_parties: int, seed: int) -> list[np.ndarray]:
        rows = np.arange(len(labels))
        return [rows[i::n_parties] for i in range(n_parties)]

    job = small_job(
        data__roles={
            "trainer": {"split": "train", "partitioner": {"name": "test_halves"}},
            "aggregator": {"split": "test"},
        }
    )
    data = bind_data(parse_job(job))
    sizes = [len(data[f"trainer-{i}"].train.y) for i in range(4)]
    assert max(sizes) - min(sizes) <= 1
