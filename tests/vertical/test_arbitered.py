"""The arbitered mode (Paillier, the arbiter holding the key) against the same training in
the clear: equal to the last fixed-point digit, on both launchers, and refused where it
cannot run. Small keys keep these fast; 2048-bit runs are benchmarks."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest

from consortium.errors import ConfigError
from consortium.jobs import parse_job, run
from consortium.testing import needs
from consortium.vertical import Kind
from consortium.vertical import arbitered as arbitered_module

SMALL_KEY = {"key_bits": 512, "precision": 32}

pytestmark = needs("gmpy2")  # Paillier


def arbitered(vfl, name: str, **changes):
    settings = {
        "topology__roles__arbiter": {"count": 1},
        "algorithm__mode": "arbitered",
        "algorithm__paillier": SMALL_KEY,
    }
    return vfl.example(name, **{**settings, **changes})


def _trained(tmp_path, vfl, raw):
    result = run(copy.deepcopy(raw), out=tmp_path / "run", quiet=True)
    assert result.ok, result.error
    pool = vfl.pooled(raw)
    return result, pool, vfl.load_parts(tmp_path / "run", tmp_path / "parts", pool, "master")


def _min_batch(pool) -> int:
    """The master's floor on a batch: one more row than the widest member's columns."""
    return max(block.shape[1] for block in pool.blocks[1:]) + 1


def test_linear_regression_equals_the_path_in_the_clear(tmp_path, vfl):
    raw = arbitered(
        vfl,
        "vfl_linreg_diabetes",
        algorithm__rounds=3,
        algorithm__l2=0.01,
        algorithm__parts_dir=str(tmp_path / "parts"),
    )
    result, pool, got = _trained(tmp_path, vfl, raw)
    plan = vfl.schedule(raw, pool.n_train, min_size=_min_batch(pool))
    w, b = vfl.central_gd(pool, plan, outputs=1, link="identity", lr=0.05, l2=0.01)
    # the only rounding is the 2^-32 fixed-point encoding of X, y and the partial outputs
    np.testing.assert_allclose(got["weight"], w, rtol=0, atol=1e-6)
    np.testing.assert_allclose(got["bias"], b, rtol=0, atol=1e-6)
    assert not np.allclose(w, 0)
    assert "train_loss" not in result.metrics  # the master never sees training outputs
    assert result.metrics["r2"] > 0.3


@pytest.mark.parametrize(
    ("dataset", "outputs", "master_columns"),
    [("breast_cancer", 1, True), ("wine", 3, False)],
    ids=["binary", "multiclass-labels-only-master"],
)
def test_logistic_regression_follows_the_linearised_link(
    tmp_path, vfl, dataset, outputs, master_columns
):
    changes = {} if master_columns else {"data__roles": {"member": {"columns": {}}}}
    raw = arbitered(
        vfl,
        "vfl_logreg_breast_cancer",
        data__dataset={"name": dataset},
        algorithm__rounds=4,
        algorithm__parts_dir=str(tmp_path / "parts"),
        **changes,
    )
    result, pool, got = _trained(tmp_path, vfl, raw)
    assert (pool.parties[0] == "master") == master_columns
    settings = raw["algorithm"]
    plan = vfl.schedule(raw, pool.n_train, min_size=_min_batch(pool))
    w, b = vfl.central_gd(
        pool, plan, outputs=outputs, link="taylor", lr=settings["lr"], l2=settings["l2"]
    )
    np.testing.assert_allclose(got["weight"], w, rtol=0, atol=1e-6)
    np.testing.assert_allclose(got["bias"], b, rtol=0, atol=1e-6)
    # trained on the linearised link, scored with the exact one: close to the clear model
    exact_w, exact_b = vfl.central_gd(
        pool,
        plan,
        outputs=outputs,
        link="logistic" if outputs == 1 else "softmax",
        lr=settings["lr"],
        l2=settings["l2"],
    )
    test = slice(pool.n_train, None)
    z = pool.x[test] @ exact_w + exact_b
    predicted = (z[:, 0] > 0).astype(int) if outputs == 1 else z.argmax(axis=1)
    clear_accuracy = float(np.mean(predicted == pool.y[test]))
    assert result.metrics["accuracy"] >= clear_accuracy - 0.03
    assert result.metrics["accuracy"] > 0.85


@pytest.mark.slow
def test_both_launchers_give_the_same_model(tmp_path, vfl):
    raw = arbitered(vfl, "vfl_logreg_breast_cancer", algorithm__rounds=1)
    raw["runtime"] = {"tls": {"insecure": True}}
    local = run(copy.deepcopy(raw), launcher="inproc", out=tmp_path / "inproc", quiet=True)
    remote = run(copy.deepcopy(raw), launcher="processes", out=tmp_path / "processes", quiet=True)
    assert local.ok and remote.ok, remote.error
    # every rounding is in the deterministic encoding: the same model to the bit
    with (
        np.load(tmp_path / "inproc" / "model.npz") as a,
        np.load(tmp_path / "processes" / "model.npz") as b,
    ):
        assert a.files == b.files
        for name in a.files:
            np.testing.assert_array_equal(a[name], b[name])
    assert remote.metrics == local.metrics


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"topology__roles": {"master": {"count": 1}, "member": {"count": 2}}}, "arbiter role"),
        ({"model": {"name": "splitnn"}}, r"algorithm\.mode.*not 'splitnn'"),
        ({"algorithm__paillier": {"key_bits": 256}}, r"algorithm\.paillier\.key_bits"),
        ({"algorithm__paillier": {"precision": 8}}, r"algorithm\.paillier\.precision"),
    ],
)
def test_configuration_errors_name_the_field(vfl, changes, match):
    with pytest.raises(ConfigError, match=match):
        parse_job(arbitered(vfl, "vfl_logreg_breast_cancer", **changes))


def test_a_batch_no_larger_than_a_members_columns_is_refused(tmp_path, vfl):
    raw = arbitered(vfl, "vfl_logreg_breast_cancer", algorithm__batch_size=10)
    result = run(raw, out=tmp_path / "run", quiet=True)
    assert not result.ok
    assert "algorithm.batch_size" in result.error and "member-0 has 10" in result.error


def test_linreg_exact_solver_is_for_honest_mode(vfl):
    raw = arbitered(vfl, "vfl_linreg_diabetes", algorithm__solver="exact")
    with pytest.raises(ConfigError, match=r"algorithm\.solver"):
        parse_job(raw)


def test_forged_ciphertexts_fail_the_run_naming_the_member(tmp_path, vfl):
    """member-0's encrypted outputs are replaced, on their way, by bytes that are no
    ciphertext under the arbiter's key (all ones: at least n^2)."""

    def forge(msg):
        if msg.sender != "member-0" or msg.kind != Kind.HE_FORWARD_REPLY:
            return msg
        garbage = np.full_like(msg.tensors["enc"], 0xFF)
        return dataclasses.replace(msg, tensors={"enc": garbage})

    raw = arbitered(vfl, "vfl_logreg_breast_cancer", algorithm__rounds=1)
    result = vfl.tapped_run(raw, tmp_path / "run", forge)
    assert not result.ok
    assert "member-0" in result.error and "invalid ciphertexts" in result.error
    assert "member-1" not in result.error
    assert (tmp_path / "run" / "summary.json").is_file()  # the failure is recorded


def test_outputs_beyond_the_public_limit_fail_the_run_naming_the_member(tmp_path, vfl):
    """Every party's partial output is at most 2^62 (the public limit the packed masking
    relies on): member-0's saved weights, scaled past it, make outputs that fail the run
    before they are encrypted."""
    parts = tmp_path / "parts"
    raw = arbitered(
        vfl, "vfl_logreg_breast_cancer", algorithm__rounds=1, algorithm__parts_dir=str(parts)
    )
    trained = run(copy.deepcopy(raw), out=tmp_path / "train", quiet=True)
    assert trained.ok, trained.error
    with np.load(parts / "member-0.npz") as saved:
        state = {k: saved[k] for k in saved.files}
    assert np.abs(state["weight"]).max() > 1e-3
    state["weight"] = state["weight"] * 2.0**80
    np.savez(parts / "member-0.npz", **state)
    raw["algorithm"]["task"] = "predict"
    result = run(raw, out=tmp_path / "predict", quiet=True)
    assert not result.ok
    assert "member-0" in result.error and "exceeds 2^62" in result.error


@pytest.mark.parametrize(
    ("bound", "match"),
    [
        (lambda *a: 1, "master's partial outputs (with the intercept) or targets exceed 2^62"),
        (lambda *a: 1 << 450, "bound_bits must be a positive integer small enough for the key"),
    ],
    ids=["master-beyond-its-bound", "member-refuses-a-bound-wider-than-the-key"],
)
def test_residual_bounds_are_checked(tmp_path, vfl, monkeypatch, bound, match):
    """The master checks its own [[s d]] against the public bound it announces; a member
    refuses an announced bound that cannot fit a plaintext."""
    monkeypatch.setattr(arbitered_module, "residual_bound", bound)
    result = run(arbitered(vfl, "vfl_logreg_breast_cancer", algorithm__rounds=1), out=tmp_path)
    assert not result.ok
    assert match in result.error
