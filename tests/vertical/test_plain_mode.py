"""The plain mode's state machines, driven without a network: a member's forward and
backward against the same step computed in one place, and whole runs on the test's thread
(the loopback) against centralised gradient descent and the central split network."""

from __future__ import annotations

import numpy as np
import pytest

from consortium.errors import RunFailed
from consortium.vertical import Kind, MemberStage, VerticalSettings
from consortium.vertical.gradient import GradientMember
from consortium.vertical.local import MemberPart
from consortium.vertical.parts import LinearBottom

LR, L2 = 0.1, 0.01


def _member(x: np.ndarray, weight: np.ndarray, n_train: int) -> GradientMember:
    bottom = LinearBottom(n_features=x.shape[1], n_outputs=weight.shape[1], lr=LR, l2=L2)
    bottom.weight[...] = weight
    member = GradientMember(settings=VerticalSettings(lr=LR, l2=L2), hub="master", arbiter=None)
    member.aligned(
        MemberPart(
            x=x,
            n_train=n_train,
            width=weight.shape[1],
            bottom=bottom,
            mean=np.zeros(x.shape[1]),
            scale=np.ones(x.shape[1]),
        )
    )
    return member


def test_a_members_step_equals_the_centralised_step_on_the_same_rows(vfl):
    rng = np.random.default_rng(3)
    x, weight = rng.normal(size=(20, 4)), rng.normal(size=(4, 2))
    member, out = _member(x, weight, n_train=15), vfl.Recorder()
    rows = np.array([3, 14, 0, 7])
    forward = vfl.message(Kind.FORWARD, round=5, tensors={"rows": rows})
    assert member.handle(out, forward, MemberStage.READY) == MemberStage.READY
    (reply,) = out.sent
    assert (reply.kind, reply.receiver, reply.round) == (Kind.FORWARD_REPLY, "master", 5)
    np.testing.assert_allclose(reply.tensors["out"], x[rows] @ weight, rtol=1e-12)

    grad = rng.normal(size=(4, 2))
    backward = vfl.message(Kind.BACKWARD, round=5, tensors={"grad": grad})
    member.handle(out, backward, MemberStage.READY)
    expected = weight - LR * (x[rows].T @ grad + L2 * weight)
    np.testing.assert_allclose(member.part.bottom.state()["weight"], expected, rtol=1e-12)
    assert len(out.sent) == 1  # a backward has no reply


@pytest.mark.parametrize(
    ("request_", "match"),
    [
        ((Kind.BACKWARD, 6, {"grad": np.ones((2, 1))}), "for a step this member did not run"),
        ((Kind.FORWARD, 6, {"rows": np.array([0, 15])}), "outside the 15 rows allowed"),
        ((Kind.FORWARD, 6, {"rows": np.array([0.5])}), "1-D integer array"),
    ],
    ids=["backward-for-another-step", "test-rows-to-train", "rows-not-integers"],
)
def test_a_member_refuses_what_does_not_fit(vfl, request_, match):
    kind, round_, tensors = request_
    member = _member(np.ones((20, 3)), np.zeros((3, 1)), n_train=15)
    member.handle(
        vfl.Recorder(),
        vfl.message(Kind.FORWARD, round=5, tensors={"rows": np.array([1, 2])}),
        MemberStage.READY,
    )
    with pytest.raises(RunFailed, match=match):
        member.handle(
            vfl.Recorder(), vfl.message(kind, round=round_, tensors=tensors), MemberStage.READY
        )


def test_a_gradient_of_the_wrong_shape_is_refused_naming_the_sender(vfl):
    member = _member(np.ones((20, 3)), np.zeros((3, 1)), n_train=15)
    out = vfl.Recorder()
    member.handle(
        out, vfl.message(Kind.FORWARD, round=1, tensors={"rows": np.arange(4)}), MemberStage.READY
    )
    bad = vfl.message(Kind.BACKWARD, round=1, tensors={"grad": np.ones((3, 1))})
    with pytest.raises(RunFailed, match=r"vfl.backward from master: grad has shape \(3, 1\)"):
        member.handle(out, bad, MemberStage.READY)


def test_training_on_the_loopback_equals_centralised_gradient_descent(vfl):
    raw = vfl.example("vfl_logreg_breast_cancer", algorithm__rounds=3, algorithm__l2=0.01)
    loop = vfl.Loopback(raw)
    outcome = loop.conduct()
    pool = vfl.pooled(raw)
    plan = vfl.schedule(raw, pool.n_train)
    w, b = vfl.central_gd(
        pool, plan, outputs=1, link="logistic", lr=raw["algorithm"]["lr"], l2=0.01
    )
    parts = [loop.programs[p].part.bottom.state()["weight"] for p in pool.parties if p != "master"]
    got = np.vstack([outcome.model["bottom.weight"], *parts])
    np.testing.assert_allclose(got, w, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(outcome.model["top.bias"], b, rtol=1e-8, atol=1e-10)
    assert outcome.rounds_completed == 3
    # every request the members got is one the plain mode accepts once aligned
    kinds = {m.kind for m in loop.sent if m.receiver.startswith("member")}
    assert kinds == {
        Kind.PSI_OFFER,
        Kind.ALIGN,
        Kind.FORWARD,
        Kind.BACKWARD,
        Kind.PREDICT,
        Kind.FINISH,
    }


@pytest.mark.parametrize(("eval_every", "scored"), [(1, 5), (2, 3), (9, 1)])
def test_the_held_out_records_are_scored_every_eval_every_epochs_and_after_the_last(
    vfl, eval_every, scored
):
    raw = vfl.example("vfl_logreg_breast_cancer", algorithm__rounds=5)
    raw["algorithm"]["eval_every"] = eval_every
    loop = vfl.Loopback(raw)
    outcome = loop.conduct()
    member = next(p for p in loop.programs if p.startswith("member"))
    predicts = [m for m in loop.sent if m.kind == Kind.PREDICT and m.receiver == member]
    assert len(predicts) == scored
    assert "accuracy" in outcome.metrics  # the last epoch is always scored


def test_a_split_network_step_on_the_loopback_equals_the_central_networks(vfl):
    """The same network in one place, one SGD step on every training row: the parties'
    parts after the split step are its parts."""
    torch = pytest.importorskip("torch")
    from threadpoolctl import threadpool_limits

    from consortium.runtime import derive_seed
    from consortium.vertical import NET_KEY, TOP_KEY, build_net, central_network

    bottom, top_args = {"name": "mlp", "args": {"hidden": [8]}}, {"hidden": [16]}
    raw = vfl.example(
        "vfl_splitnn_mnist",
        topology__roles__member={"count": 2},
        model__args={"bottom": bottom, "embedding": 4, "top": {"name": "mlp", "args": top_args}},
        algorithm__rounds=1,
        algorithm__batch_size=None,  # one step on every training row
    )
    pool = vfl.pooled(raw)
    with threadpool_limits(limits=1):  # reductions in the same order as the parties'
        loop = vfl.Loopback(raw)
        outcome = loop.conduct()
        seed, topology = loop.job.spec.seed, loop.job.topology
        bottoms = [
            build_net(
                "mlp",
                bottom["args"],
                in_features=32,
                out_features=4,
                image_shape=(8, 4),
                seed=derive_seed(seed, NET_KEY, topology.party(name).rank),
            )
            for name in pool.parties
        ]
        top = build_net(
            "mlp",
            top_args,
            in_features=8,
            out_features=10,
            image_shape=None,
            seed=derive_seed(seed, TOP_KEY),
        )
        net = central_network(bottoms, top, combine="concat")
        opt = torch.optim.SGD(net.parameters(), lr=loop.job.algorithm.lr)
        train = torch.from_numpy(np.arange(pool.n_train))
        blocks = [torch.from_numpy(b.astype(np.float32))[train] for b in pool.blocks]
        loss = torch.nn.functional.cross_entropy(net(*blocks), torch.from_numpy(pool.y)[train])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert outcome.metrics["train_loss"] == pytest.approx(float(loss.detach()), rel=1e-6)
    for key, value in top.state_dict().items():
        np.testing.assert_allclose(outcome.model[f"top.{key}"], value.numpy(), rtol=1e-5, atol=1e-6)
    for name, module in zip(pool.parties, bottoms, strict=True):
        state = loop.programs[name].part.bottom.state()
        for key, value in module.state_dict().items():
            np.testing.assert_allclose(state[key], value.numpy(), rtol=1e-5, atol=1e-6)
