"""The arbitered mode's state machines, driven without a network: a member's step through
ciphertexts and the arbiter's masked decryption equals the plain step with the same
gradient, and a whole run on the test's thread (the loopback) follows gradient descent on
the linearised link. Small keys keep these fast."""

from __future__ import annotations

import copy

import numpy as np
import pytest

pytest.importorskip("gmpy2")

from consortium.errors import RunFailed
from consortium.privacy.paillier import (
    PaillierKeypair,
    ciphertexts_from_array,
    ciphertexts_to_array,
    decrypt,
    encrypt,
    public_key_to_array,
)
from consortium.vertical import Kind, MemberStage, VerticalSettings
from consortium.vertical.arbitered import ArbiteredMember
from consortium.vertical.encrypted import decrypt_masked, residual_bound
from consortium.vertical.gradient import GradientMember
from consortium.vertical.local import MemberPart
from consortium.vertical.parts import LinearBottom

LR, L2, BITS = 0.1, 0.01, 512
SETTINGS = VerticalSettings(mode="arbitered", lr=LR, l2=L2, paillier={"key_bits": BITS})


@pytest.fixture(scope="module")
def keys():
    return PaillierKeypair.generate(BITS, allow_small=True)


def _part(x: np.ndarray, weight: np.ndarray) -> MemberPart:
    bottom = LinearBottom(n_features=x.shape[1], n_outputs=weight.shape[1], lr=LR, l2=L2)
    bottom.weight[...] = weight
    ones = np.ones(x.shape[1])
    return MemberPart(
        x=x, n_train=len(x), width=weight.shape[1], bottom=bottom, mean=0 * ones, scale=ones
    )


def _keyed(vfl, keys, part: MemberPart, out) -> ArbiteredMember:
    member = ArbiteredMember(settings=SETTINGS, hub="master", arbiter="arbiter")
    member.aligned(part)
    assert not member.ready  # aligned, but without the key it cannot train
    key = vfl.message(
        Kind.PUBLIC_KEY, sender="arbiter", tensors={"n": public_key_to_array(keys.public_key)}
    )
    assert member.handle(out, key, MemberStage.KEY) == MemberStage.KEY
    assert member.ready and not out.sent
    return member


def test_the_decrypted_step_equals_the_plain_step(vfl, keys):
    rng = np.random.default_rng(11)
    x, weight = rng.normal(size=(30, 4)), rng.normal(size=(4, 1)) / 4
    out = vfl.Recorder()
    member = _keyed(vfl, keys, _part(x.copy(), weight.copy()), out)
    rows = np.array([4, 9, 0, 17, 22, 5, 29])

    # 1. the output for the rows, encrypted: the master adds it without reading it
    forward = vfl.message(Kind.FORWARD, round=3, tensors={"rows": rows})
    assert member.handle(out, forward, MemberStage.READY) == MemberStage.READY
    (reply,) = out.sent
    assert reply.kind == Kind.HE_FORWARD_REPLY and reply.tensors["enc"].dtype == np.uint8
    enc = ciphertexts_from_array(
        keys.public_key, reply.tensors["enc"], exponent=reply.meta["exponent"]
    )
    np.testing.assert_allclose(decrypt(keys.private_key, enc), x[rows] @ weight, atol=1e-9)

    # 2. the master's scaled gradient [[s d]]; the member sends X^T [[s d]], masked
    d = rng.normal(size=(len(rows), 1)) / 10
    scale = 4 * len(rows)
    bits = residual_bound("classification", 1, 2, 32).bit_length()
    sd = encrypt(keys.public_key, d * scale)
    residual = vfl.message(
        Kind.RESIDUAL,
        round=3,
        meta={"exponent": sd.exponent, "scale": scale, "bound_bits": bits},
        tensors={"enc": ciphertexts_to_array(sd)},
    )
    assert member.handle(out, residual, MemberStage.READY) == MemberStage.DECRYPTING
    request = out.sent[-1]
    assert (request.kind, request.receiver, request.round) == (Kind.DECRYPT, "arbiter", 3)

    # 3. the arbiter decrypts what it cannot read; the member unmasks, steps, says so
    residues = decrypt_masked(keys.private_key, request.tensors["enc"])
    decrypted = vfl.message(
        Kind.DECRYPT_REPLY, sender="arbiter", round=3, tensors={"residues": residues}
    )
    assert member.handle(out, decrypted, MemberStage.DECRYPTING) == MemberStage.READY
    stepped = out.sent[-1]
    assert (stepped.kind, stepped.receiver, stepped.round) == (Kind.STEPPED, "master", 3)

    # the oracle: the plain member's step with the same gradient w.r.t. its output
    plain = GradientMember(settings=SETTINGS, hub="master", arbiter=None)
    plain.aligned(_part(x.copy(), weight.copy()))
    plain.handle(vfl.Recorder(), forward, MemberStage.READY)
    plain.handle(
        vfl.Recorder(), vfl.message(Kind.BACKWARD, round=3, tensors={"grad": d}), MemberStage.READY
    )
    expected = plain.part.bottom.state()["weight"]
    np.testing.assert_allclose(member.part.bottom.state()["weight"], expected, rtol=0, atol=1e-8)
    assert not np.allclose(expected, weight)


def test_a_member_refuses_a_bound_the_keys_plaintexts_cannot_hold(vfl, keys):
    out = vfl.Recorder()
    member = _keyed(vfl, keys, _part(np.ones((12, 3)), np.zeros((3, 1))), out)
    member.handle(
        out, vfl.message(Kind.FORWARD, round=1, tensors={"rows": np.arange(6)}), MemberStage.READY
    )
    sd = encrypt(keys.public_key, np.zeros((6, 1)))
    wide = vfl.message(
        Kind.RESIDUAL,
        round=1,
        meta={"exponent": sd.exponent, "scale": 24, "bound_bits": 450},
        tensors={"enc": ciphertexts_to_array(sd)},
    )
    with pytest.raises(RunFailed, match="bound_bits must be a positive integer small enough"):
        member.handle(out, wide, MemberStage.READY)


def test_a_second_key_and_a_lost_arbiter_fail_the_member(vfl, keys):
    out = vfl.Recorder()
    member = _keyed(vfl, keys, _part(np.ones((12, 3)), np.zeros((3, 1))), out)
    again = vfl.message(
        Kind.PUBLIC_KEY, sender="arbiter", tensors={"n": public_key_to_array(keys.public_key)}
    )
    with pytest.raises(RunFailed, match="member-0 got a second public key from arbiter"):
        member.handle(out, again, MemberStage.READY)
    member.lost(out, "member-1")  # another member: nothing this member needs
    with pytest.raises(RunFailed, match="member-0 lost the arbiter arbiter"):
        member.lost(out, "arbiter")


def test_training_on_the_loopback_follows_the_linearised_link(vfl):
    raw = vfl.example(
        "vfl_logreg_breast_cancer_arbitered",
        algorithm__rounds=2,
        algorithm__paillier={"key_bits": BITS},
    )
    loop = vfl.Loopback(copy.deepcopy(raw))
    outcome = loop.conduct()
    pool = vfl.pooled(raw)
    widest = max(block.shape[1] for block in pool.blocks[1:])
    plan = vfl.schedule(raw, pool.n_train, min_size=widest + 1)
    settings = raw["algorithm"]
    w, b = vfl.central_gd(
        pool, plan, outputs=1, link="taylor", lr=settings["lr"], l2=settings.get("l2", 0.0)
    )
    members = [loop.programs[p].part.bottom.state()["weight"] for p in pool.parties[1:]]
    got = np.vstack([outcome.model["bottom.weight"], *members])
    np.testing.assert_allclose(got, w, rtol=0, atol=1e-6)
    np.testing.assert_allclose(outcome.model["top.bias"], b, rtol=0, atol=1e-6)
    assert "train_loss" not in outcome.metrics  # the master never sees training outputs
    # the arbiter got nothing but the request for keys and ciphertexts to decrypt
    assert {m.kind for m in loop.sent if m.receiver == "arbiter"} == {Kind.KEYS, Kind.DECRYPT}
