"""Checkpoints give back exactly what was saved, and only to the job that saved it."""

from __future__ import annotations

import numpy as np
import pytest

from consortium.errors import ConfigError, ConsortiumError
from consortium.npz import save_arrays
from consortium.runtime import Checkpoints


def test_a_nested_state_comes_back_bit_for_bit(tmp_path):
    state = {
        "weights": {
            "W": np.random.default_rng(0).normal(size=(3, 2)),
            "b": np.zeros(2, np.float32),
        },
        "extra": {"m": {"W": np.ones((3, 2))}, "lr": np.float32(0.1), "t": np.int64(4)},
        "metrics": {"loss": np.nextafter(0.5, 1.0), "nan": float("nan"), "inf": float("inf")},
        "dropouts": {"trainer-3": "did not join: timed out"},
        "pair": (1, [2.5, None, True]),
    }
    points = Checkpoints(path=tmp_path / "c.npz", job_hash="a" * 64)
    points.save(3, state)
    back = Checkpoints.read(tmp_path / "c.npz", job_hash="a" * 64)
    assert back.round == 3
    np.testing.assert_array_equal(back.state["weights"]["W"], state["weights"]["W"])
    assert back.state["weights"]["b"].dtype == np.float32
    assert (
        back.state["extra"]["lr"] == np.float32(0.1)
        and type(back.state["extra"]["lr"]) is np.float32
    )
    assert type(back.state["extra"]["t"]) is np.int64
    assert back.state["metrics"]["loss"] == np.nextafter(0.5, 1.0)
    assert np.isnan(back.state["metrics"]["nan"]) and back.state["metrics"]["inf"] == float("inf")
    assert back.state["dropouts"] == state["dropouts"]
    assert back.state["pair"] == (1, [2.5, None, True])


def test_a_later_save_replaces_the_earlier(tmp_path):
    points = Checkpoints(path=tmp_path / "c.npz", job_hash="h")
    points.save(1, {"w": np.zeros(2)})
    points.save(2, {"w": np.ones(2)})
    back = Checkpoints.read(tmp_path / "c.npz", job_hash="h")
    assert back.round == 2
    np.testing.assert_array_equal(back.state["w"], np.ones(2))


@pytest.mark.parametrize(
    ("every", "due"),
    [(1, [1, 2, 3, 4, 5]), (2, [2, 4, 5]), (0, [])],
)
def test_due_every_k_rounds_and_after_the_last(tmp_path, every, due):
    points = Checkpoints(path=tmp_path / "c.npz", job_hash="h", every=every)
    assert [r for r in range(1, 6) if points.due(r, last=r == 5)] == due


def test_another_jobs_checkpoint_is_refused_naming_the_file(tmp_path):
    Checkpoints(path=tmp_path / "c.npz", job_hash="a" * 64).save(1, {})
    with pytest.raises(ConfigError, match=rf"^{tmp_path / 'c.npz'}: the checkpoint is of another"):
        Checkpoints.read(tmp_path / "c.npz", job_hash="b" * 64)


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path):
    save_arrays(tmp_path / "model.npz", {"W": np.zeros(2)})
    with pytest.raises(ConfigError, match="not a checkpoint"):
        Checkpoints.read(tmp_path / "model.npz", job_hash="h")


@pytest.mark.parametrize(
    ("state", "match"),
    [({1: np.zeros(1)}, "state has a key 1"), ({"x": object()}, r"cannot save state\.x")],
)
def test_what_cannot_be_saved_is_named(tmp_path, state, match):
    with pytest.raises(ConsortiumError, match=match):
        Checkpoints(path=tmp_path / "c.npz", job_hash="h").save(1, state)
    assert not (tmp_path / "c.npz").exists()
