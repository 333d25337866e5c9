"""Vertical jobs: configuration errors, inference from saved parts, both launchers."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from consortium.errors import ConfigError
from consortium.jobs import bind_data, parse_job, run
from consortium.runtime import PROGRAMS
from consortium.vertical import Member


def test_predicting_from_saved_parts_repeats_the_trained_model(tmp_path, vfl):
    parts = str(tmp_path / "parts" / "{party}")
    raw = vfl.example("vfl_logreg_breast_cancer", algorithm__rounds=3, algorithm__parts_dir=parts)
    trained = run(copy.deepcopy(raw), out=tmp_path / "train", quiet=True)
    assert trained.ok, trained.error
    # each party saved only its own part, in its own folder
    saved = sorted(p.name for p in (tmp_path / "parts").glob("*/*.npz"))
    assert saved == ["master.npz", "member-0.npz", "member-1.npz"]
    with np.load(tmp_path / "parts" / "member-0" / "member-0.npz") as part:
        assert sorted(part.files) == ["mean", "scale", "weight"]
        assert part["weight"].shape == (10, 1)
    raw["algorithm"]["task"] = "predict"
    predicted = run(copy.deepcopy(raw), out=tmp_path / "predict", quiet=True)
    assert predicted.ok, predicted.error
    with np.load(tmp_path / "predict" / "model.npz") as out:
        rows, scores = out["rows"], out["scores"]
    # the new alignment covers every shared record; the scores are the trained model's
    pool = vfl.pooled(raw)
    assert len(rows) == len(pool.y)
    data = bind_data(parse_job(copy.deepcopy(raw)))
    assert np.all(np.isclose(scores.sum(axis=1), 1.0))
    accuracy = float(np.mean(scores.argmax(axis=1) == data["master"].y[rows]))
    assert predicted.metrics["accuracy"] == pytest.approx(accuracy)
    assert accuracy > 0.9


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"data__roles__member": {"split": "test", "columns": {}}}, r"data\.roles\.member\.split"),
        ({"data__roles__member": {"coverage": 0.5}}, r"data\.roles\.member\.columns"),
        ({"data__roles__arbiter": {}, "topology__roles__arbiter": {"count": 1}}, "arbiter holds"),
        ({"algorithm__solver": "exact"}, r"algorithm\.solver"),
        ({"algorithm__task": "predict"}, r"algorithm\.parts_dir"),
        ({"model": {"name": "forest"}}, r"model\.name"),
        ({"model": {"name": "splitnn", "args": {"bottom": {"name": "vgg"}}}}, r"bottom\.name"),
        ({"model": {"name": "splitnn", "args": {"combine": "max"}}}, r"model\.args\.combine"),
        ({"algorithm__lerning_rate": 0.1}, r"algorithm\.lerning_rate"),
    ],
)
def test_configuration_errors_name_the_field(vfl, changes, match):
    with pytest.raises(ConfigError, match=match):
        parse_job(vfl.example("vfl_logreg_breast_cancer", **changes))


def test_a_model_must_fit_the_task(vfl):
    job = parse_job(vfl.example("vfl_logreg_breast_cancer", model={"name": "linreg"}))
    with pytest.raises(ConfigError, match="does not fit the classification"):
        bind_data(job)


def test_strips_cut_an_image_into_columns(vfl):
    data = bind_data(parse_job(vfl.example("vfl_splitnn_mnist")))
    strips = [data[f"member-{i}"] for i in range(4)]
    assert [d.image_shape for d in strips] == [(8, 2)] * 4
    assert strips[1].columns[:4] == (2, 3, 10, 11)  # pixel columns 2-3 of rows 0 and 1
    assert sorted(c for d in strips for c in d.columns) == list(range(64))
    assert data["master"].x is None and data["master"].y is not None
    assert all(d.y is None for d in strips)


@pytest.mark.slow
def test_both_launchers_give_the_same_model(tmp_path, vfl):
    raw = vfl.example("vfl_logreg_breast_cancer", algorithm__rounds=3)
    raw["runtime"] = {"tls": {"insecure": True}}
    local = run(copy.deepcopy(raw), launcher="inproc", out=tmp_path / "inproc", quiet=True)
    remote = run(copy.deepcopy(raw), launcher="processes", out=tmp_path / "processes", quiet=True)
    assert local.ok and remote.ok, remote.error
    assert remote.rounds_completed == local.rounds_completed == 3
    with (
        np.load(tmp_path / "inproc" / "model.npz") as a,
        np.load(tmp_path / "processes" / "model.npz") as b,
    ):
        assert a.files == b.files
        for name in a.files:
            np.testing.assert_allclose(a[name], b[name], rtol=1e-12, atol=1e-12)
    assert remote.metrics["accuracy"] == pytest.approx(local.metrics["accuracy"], abs=1e-12)


def test_without_role_bindings_the_members_split_every_column(vfl):
    raw = vfl.example("vfl_logreg_breast_cancer")
    del raw["data"]["roles"]
    data = bind_data(parse_job(raw))
    assert data["master"].x is None
    assert data["member-0"].columns == tuple(range(15))
    assert data["member-1"].columns == tuple(range(15, 30))


class _LoggingMember(Member):
    """A member program of a user's own: what it holds follows its role."""


PROGRAMS.register("vertical/logging_member", _LoggingMember, force=True)


def test_a_member_running_its_own_program_holds_member_columns(tmp_path, vfl):
    raw = vfl.example("vfl_logreg_breast_cancer", algorithm__rounds=1)
    raw["topology"]["roles"]["member"]["program"] = "logging_member"
    data = bind_data(parse_job(copy.deepcopy(raw)))
    assert data["member-0"].x is not None and data["member-0"].x.shape[1] == 10
    assert data["member-0"].y is None and data["master"].y is not None
    result = run(raw, out=tmp_path / "run", quiet=True)
    assert result.ok, result.error
