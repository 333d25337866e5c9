"""What every mode's member does, driven by hand: the intersection and the alignment, the
stages (a request that does not fit is an error naming the member), and the mode the job's
settings choose."""

from __future__ import annotations

import numpy as np
import pytest

from consortium.errors import RunFailed
from consortium.privacy.paillier import PaillierKeypair, public_key_to_array
from consortium.privacy.psi import PsiReceiver, intersect
from consortium.testing import needs
from consortium.vertical import Kind, MemberStage, VerticalSettings
from consortium.vertical.modes import mode_name


def _align(vfl, member, out, *, shared: int = 40, n_train: int = 30) -> np.ndarray:
    """The master's side of the alignment with one member, by hand: the master holds two
    records the member does not and the member's first ``shared`` ones, which align in the
    master's order; the first ``n_train`` of them train. The master's aligned rows."""
    ids = ["not-held-1", *member.data.ids[:shared], "not-held-2"]
    receiver = PsiReceiver(ids, domain="loopback")
    member.receive(out, vfl.message(Kind.PSI_OFFER, tensors={"points": receiver.offer()}))
    reply = out.sent[-1]
    assert reply.kind == Kind.PSI_REPLY and member.stage == MemberStage.ALIGN
    rows, (positions,) = intersect([receiver.match(reply.tensors["ids"], reply.tensors["points"])])
    meta = {"train": n_train, "width": 1}
    member.receive(out, vfl.message(Kind.ALIGN, meta=meta, tensors={"positions": positions}))
    return rows


@pytest.mark.parametrize(
    ("name", "changes"),
    [("vfl_logreg_breast_cancer", {}), ("vfl_linreg_diabetes", {"algorithm__solver": "exact"})],
    ids=["plain", "exact"],
)
def test_a_member_aligns_and_standardises_its_own_columns(vfl, name, changes):
    member, out = vfl.Loopback(vfl.example(name, **changes)).programs["member-0"], vfl.Recorder()
    rows = _align(vfl, member, out)
    np.testing.assert_array_equal(rows, np.arange(1, 41))
    ready = out.sent[-1]
    assert (ready.kind, ready.meta["features"]) == (Kind.READY, member.data.n_features)
    assert member.stage == MemberStage.READY
    # its own first 40 rows, standardised with the mean and scale of the 30 that train
    held = member.data.x[:40].astype(np.float64)
    expected = (held - held[:30].mean(axis=0)) / held[:30].std(axis=0)
    np.testing.assert_allclose(member.part.x, expected, rtol=1e-12, atol=1e-12)


@needs("gmpy2")
def test_an_arbitered_member_says_it_is_ready_once_it_holds_the_key(vfl):
    raw = vfl.example("vfl_logreg_breast_cancer_arbitered", algorithm__paillier={"key_bits": 512})
    member, out = vfl.Loopback(raw).programs["member-0"], vfl.Recorder()
    _align(vfl, member, out)
    assert member.stage == MemberStage.KEY and out.sent[-1].kind == Kind.PSI_REPLY
    with pytest.raises(RunFailed, match="member-0 got vfl.forward while aligned, waiting"):
        member.receive(out, vfl.message(Kind.FORWARD, tensors={"rows": np.arange(3)}))
    key = public_key_to_array(PaillierKeypair.generate(512, allow_small=True).public_key)
    member.receive(out, vfl.message(Kind.PUBLIC_KEY, sender="arbiter", tensors={"n": key}))
    assert out.sent[-1].kind == Kind.READY and member.stage == MemberStage.READY


@pytest.mark.parametrize(
    ("changes", "kind", "stage"),
    [
        ({}, Kind.FORWARD, "waiting for the master's intersection offer"),
        ({}, Kind.EXACT_RESIDUAL, "aligned: training"),
        ({"algorithm__solver": "exact"}, Kind.BACKWARD, "aligned: training"),
    ],
    ids=["before-the-offer", "exact-request-in-plain-mode", "gradient-request-in-exact-mode"],
)
def test_a_request_that_does_not_fit_the_stage_fails_naming_the_member(vfl, changes, kind, stage):
    member, out = (
        vfl.Loopback(vfl.example("vfl_linreg_diabetes", **changes)).programs["member-1"],
        vfl.Recorder("member-1"),
    )
    if stage.startswith("aligned"):
        _align(vfl, member, out)
    request = vfl.message(kind, receiver="member-1", tensors={"rows": np.arange(3)})
    with pytest.raises(RunFailed, match=f"member-1 got {kind} while {stage}"):
        member.receive(out, request)


def test_requests_from_anyone_but_the_master_are_ignored(vfl):
    member, out = (
        vfl.Loopback(vfl.example("vfl_logreg_breast_cancer")).programs["member-0"],
        vfl.Recorder(),
    )
    offer = vfl.message(Kind.PSI_OFFER, sender="member-1", tensors={"points": np.zeros(0)})
    assert member.receive(out, offer) is True
    assert not out.sent and member.stage == MemberStage.OFFER


def test_the_member_saves_its_part_and_then_takes_nothing_more(vfl, tmp_path):
    raw = vfl.example("vfl_logreg_breast_cancer", algorithm__parts_dir=str(tmp_path / "{party}"))
    member, out = vfl.Loopback(raw).programs["member-0"], vfl.Recorder()
    _align(vfl, member, out)
    member.receive(out, vfl.message(Kind.FINISH, round=9))
    done = out.sent[-1]
    path = tmp_path / "member-0" / "member-0.npz"
    assert (done.kind, done.round, done.meta["saved"]) == (Kind.FINISH_REPLY, 9, str(path))
    with np.load(path) as saved:
        assert sorted(saved.files) == ["mean", "scale", "weight"]
        np.testing.assert_array_equal(saved["mean"], member.part.mean)
    with pytest.raises(RunFailed, match="while part saved"):
        member.receive(out, vfl.message(Kind.PREDICT, tensors={"rows": np.arange(3)}))


@pytest.mark.parametrize(
    ("settings", "mode"),
    [
        ({}, "plain"),
        ({"solver": "exact"}, "exact"),
        ({"mode": "arbitered"}, "arbitered"),
    ],
)
def test_the_settings_choose_the_mode_once(settings, mode):
    assert mode_name(VerticalSettings(**settings)) == mode
