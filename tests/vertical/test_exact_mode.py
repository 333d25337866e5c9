"""The exact mode's state machines, driven without a network: a member's CGLS block
against the same formulas in numpy, and the whole solve on the test's thread (the
loopback) against numpy's least squares on the pooled columns."""

from __future__ import annotations

import numpy as np
import pytest

from consortium.errors import RunFailed
from consortium.vertical import Kind, MemberStage, VerticalSettings
from consortium.vertical.exact import ExactMember
from consortium.vertical.local import MemberPart
from consortium.vertical.parts import LinearBottom


def _member(x: np.ndarray, n_train: int, l2: float) -> ExactMember:
    member = ExactMember(
        settings=VerticalSettings(solver="exact", l2=l2), hub="master", arbiter=None
    )
    bottom = LinearBottom(n_features=x.shape[1], n_outputs=1, lr=0.1, l2=l2)
    ones = np.ones(x.shape[1])
    member.aligned(
        MemberPart(x=x, n_train=n_train, width=1, bottom=bottom, mean=0 * ones, scale=ones)
    )
    return member


def _ask(member, out, vfl, kind, round_, **tensors):
    tensors = {k: np.asarray(v) for k, v in tensors.items()}
    member.handle(out, vfl.message(kind, round=round_, tensors=tensors), MemberStage.READY)
    reply = out.sent[-1]
    assert (reply.receiver, reply.round) == ("master", round_)
    return reply


def test_a_members_block_answers_as_the_formulas_say(vfl):
    rng = np.random.default_rng(5)
    x, l2, n = rng.normal(size=(12, 3)), 0.1, 10
    lam = l2 * n
    member, out = _member(x, n, l2), vfl.Recorder()
    r = rng.normal(size=n)
    # the first residual: no step yet (w = 0), the gradient block s = X^T r
    reply = _ask(member, out, vfl, Kind.EXACT_RESIDUAL, 1, alpha=0.0, r=r)
    s = x[:n].T @ r
    assert reply.kind == Kind.EXACT_RESIDUAL_REPLY
    assert float(reply.tensors["gamma"]) == pytest.approx(s @ s, rel=1e-12)
    # the direction p = s + beta * 0: X p and lam |p|^2
    reply = _ask(member, out, vfl, Kind.EXACT_DIRECTION, 2, beta=0.7)
    np.testing.assert_allclose(reply.tensors["q"], x[:n] @ s, rtol=1e-12)
    assert float(reply.tensors["penalty"]) == pytest.approx(lam * s @ s, rel=1e-12)
    # a step along p moves the member's own weights, and the new gradient block follows
    alpha, r2 = 0.3, rng.normal(size=n)
    reply = _ask(member, out, vfl, Kind.EXACT_RESIDUAL, 3, alpha=alpha, r=r2)
    w = alpha * s
    np.testing.assert_allclose(member.part.bottom.state()["weight"][:, 0], w, rtol=1e-12)
    s2 = x[:n].T @ r2 - lam * w
    assert float(reply.tensors["gamma"]) == pytest.approx(s2 @ s2, rel=1e-12)


@pytest.mark.parametrize(
    ("tensors", "match"),
    [
        ({"alpha": 0.0, "r": np.ones(9)}, r"r has shape \(9,\)"),
        ({"alpha": np.nan, "r": np.ones(10)}, "alpha must be a finite number"),
        ({"r": np.ones(10)}, "alpha must be a finite number"),
    ],
)
def test_a_member_refuses_a_malformed_residual(vfl, tensors, match):
    member = _member(np.ones((12, 3)), 10, 0.0)
    msg = vfl.message(
        Kind.EXACT_RESIDUAL, round=1, tensors={k: np.asarray(v) for k, v in tensors.items()}
    )
    with pytest.raises(RunFailed, match=match):
        member.handle(vfl.Recorder(), msg, MemberStage.READY)


@pytest.mark.parametrize("l2", [0.0, 0.05], ids=["least-squares", "ridge"])
def test_the_solve_on_the_loopback_equals_numpys_least_squares(vfl, l2):
    raw = vfl.example("vfl_linreg_diabetes", algorithm__solver="exact", algorithm__l2=l2)
    loop = vfl.Loopback(raw)
    outcome = loop.conduct()
    pool = vfl.pooled(raw)
    n = pool.n_train
    aug = np.hstack([pool.x[:n], np.ones((n, 1))])
    y = pool.y[:n].astype(np.float64)
    if l2 == 0.0:
        solution = np.linalg.lstsq(aug, y, rcond=None)[0]
    else:  # the normal equations with the penalty on every weight, not the intercept
        penalty = l2 * n * np.eye(aug.shape[1])
        penalty[-1, -1] = 0.0
        solution = np.linalg.solve(aug.T @ aug + penalty, aug.T @ y)
    members = [loop.programs[p].part.bottom.state()["weight"][:, 0] for p in pool.parties[1:]]
    got = np.concatenate([outcome.model["bottom.weight"][:, 0], *members])
    np.testing.assert_allclose(got, solution[:-1], rtol=0, atol=1e-6)
    assert outcome.model["top.bias"][0] == pytest.approx(solution[-1], abs=1e-6)
    kinds = {m.kind for m in loop.sent if m.receiver.startswith("member")}
    assert Kind.EXACT_RESIDUAL in kinds and not kinds & {Kind.FORWARD, Kind.BACKWARD}
