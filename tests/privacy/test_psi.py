"""ECDH private set intersection: each side learns what the module says, and no more."""

from __future__ import annotations

import numpy as np
import pytest

from consortium.privacy.psi import (
    PsiError,
    PsiReceiver,
    PsiSender,
    blind,
    edwards_to_montgomery,
    hash_ids,
    intersect,
    random_scalar,
)

DOMAIN = "job:test"


def _ids(numbers):
    return [f"cust-{n:05d}" for n in numbers]


def _run(receiver_ids, sender_ids):
    receiver = PsiReceiver(receiver_ids, domain=DOMAIN)
    sender = PsiSender(sender_ids, domain=DOMAIN)
    offer = receiver.offer()
    match = receiver.match(sender.blinded(), sender.reblind(offer))
    return receiver, sender, offer, match


def test_partly_overlapping_ids_give_exactly_the_intersection():
    rng = np.random.default_rng(0)
    mine = _ids(rng.choice(1000, 120, replace=False))
    theirs = _ids(rng.choice(1000, 150, replace=False))
    expected = sorted(set(mine) & set(theirs))
    assert 0 < len(expected) < 50  # a genuine partial overlap
    _, sender, _, match = _run(mine, theirs)
    rows, (positions,) = intersect([match])
    assert sorted(mine[r] for r in rows) == expected
    assert list(rows) == sorted(rows)  # in the receiver's row order
    their_rows = sender.rows(positions)
    assert [theirs[r] for r in their_rows] == [mine[r] for r in rows]


def test_several_senders_intersect_all():
    a, b, c = _ids(range(0, 60)), _ids(range(20, 90)), _ids(range(40, 120))
    receiver = PsiReceiver(a, domain=DOMAIN)
    matches, senders = [], []
    for ids in (b, c):
        sender = PsiSender(ids, domain=DOMAIN)
        matches.append(receiver.match(sender.blinded(), sender.reblind(receiver.offer())))
        senders.append((sender, ids))
    rows, positions = intersect(matches)
    assert [a[r] for r in rows] == _ids(range(40, 60))
    for (sender, ids), pos in zip(senders, positions, strict=True):
        assert [ids[r] for r in sender.rows(pos)] == _ids(range(40, 60))


def test_disjoint_sets_intersect_to_nothing():
    _, _, _, match = _run(_ids(range(10)), _ids(range(10, 20)))
    rows, _ = intersect([match])
    assert len(rows) == 0


def test_the_sender_cannot_find_the_receivers_other_ids_by_guessing():
    """A curious sender that knows every candidate id and its own key matches nothing of
    what it received against any candidate (the offer is under a key it never sees)."""
    universe = _ids(range(300))
    mine, theirs = universe[:100], universe[80:200]
    key = random_scalar()
    receiver = PsiReceiver(theirs, domain=DOMAIN)
    sender = PsiSender(mine, domain=DOMAIN, key=key)
    offer = receiver.offer()
    hashed = hash_ids(universe, domain=DOMAIN)
    candidates = {bytes(p) for p in hashed} | {bytes(p) for p in blind(hashed, key)}
    seen = {bytes(p) for p in offer} | {bytes(p) for p in sender.reblind(offer)}
    assert not candidates & seen


def test_the_sender_sees_its_ids_in_a_secret_order():
    ids = _ids(range(200))
    key = random_scalar()
    sender = PsiSender(ids, domain=DOMAIN, key=key)
    in_order = blind(hash_ids(ids, domain=DOMAIN), key)
    assert sorted(map(bytes, sender.blinded())) == sorted(map(bytes, in_order))
    assert not np.array_equal(sender.blinded(), in_order)


FIELD = 2**255 - 19
SMALL_ORDER_U = [  # u-coordinates of the points of order 1, 2, 4 and 8 (curve and twist)
    0,
    1,
    325606250916557431795983626356110631294008115727848805560023387167927233504,
    39382357235489614581723060781553021112529911719440698176882885853963445705823,
    FIELD - 1,
]


def _rows(*values):
    return np.frombuffer(b"".join(v.to_bytes(32, "little") for v in values), np.uint8).reshape(
        -1, 32
    )


@pytest.mark.parametrize(
    "torsion",
    [
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",  # order 8
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # order 2
    ],
)
def test_a_small_order_component_is_multiplied_away(torsion):
    """A point with a small-order part would leak the key modulo its order (the
    small-subgroup attack); a clamped key is a multiple of 8, so the part vanishes."""
    import nacl.bindings as nb

    key = random_scalar()
    rng = np.random.default_rng(3)
    for _ in range(3):
        clean_ed = nb.crypto_core_ed25519_from_uniform(rng.bytes(32))  # prime order
        dirty_ed = nb.crypto_core_ed25519_add(clean_ed, bytes.fromhex(torsion))
        clean = np.frombuffer(edwards_to_montgomery(clean_ed), np.uint8).reshape(1, 32)
        dirty = np.frombuffer(edwards_to_montgomery(dirty_ed), np.uint8).reshape(1, 32)
        # the batched Edwards-to-Montgomery map agrees with libsodium's
        assert nb.crypto_sign_ed25519_pk_to_curve25519(clean_ed) == clean.tobytes()
        assert not np.array_equal(clean, dirty)
        np.testing.assert_array_equal(blind(dirty, key), blind(clean, key))


@pytest.mark.parametrize("u", SMALL_ORDER_U)
def test_points_of_small_order_are_refused(u):
    with pytest.raises(PsiError):
        blind(_rows(u), random_scalar())


@pytest.mark.parametrize("u", [FIELD, FIELD + 1, 2**255 + 9, 2**256 - 1])
def test_encodings_that_are_not_canonical_are_refused(u):
    with pytest.raises(PsiError):
        blind(_rows(u), random_scalar())
    blind(_rows(9), random_scalar())  # the base point's u is fine


def test_points_on_the_twist_are_blinded_like_points_on_the_curve():
    """X25519 works on the u-line: a u whose point lies on the quadratic twist is blinded
    too (twist security), and blinding still commutes; so is a u just below the field
    prime (``FIELD - 1`` itself is a point of small order, refused above)."""

    def on_twist(u):  # u^3 + A u^2 + u is not a square modulo the field prime
        return pow((u**3 + 486662 * u * u + u) % FIELD, (FIELD - 1) // 2, FIELD) == FIELD - 1

    twist = [u for u in range(2, 40) if on_twist(u)][:3]
    assert twist  # about half of all u are on the twist
    points = _rows(*twist, FIELD - 2)
    a, b = random_scalar(), random_scalar()
    once = blind(points, a)  # raises if any of them were refused
    assert len({bytes(p) for p in once}) == len(points)
    np.testing.assert_array_equal(blind(once, b), blind(blind(points, b), a))


def test_scalars_are_clamped():
    for _ in range(20):
        k = random_scalar()
        assert k % 8 == 0 and 2**254 <= k < 2**255
    with pytest.raises(ValueError, match="clamped"):
        blind(hash_ids(["x"], domain=DOMAIN), 12345)


def test_blinding_commutes_and_a_fresh_key_changes_every_point():
    points = hash_ids(_ids(range(20)), domain=DOMAIN)
    a, b = random_scalar(), random_scalar()
    np.testing.assert_array_equal(blind(blind(points, a), b), blind(blind(points, b), a))
    assert not {bytes(p) for p in blind(points, a)} & {bytes(p) for p in points}


def test_the_domain_separates_runs():
    one = hash_ids(["x", "y"], domain="run-1")
    two = hash_ids(["x", "y"], domain="run-2")
    assert not {bytes(p) for p in one} & {bytes(p) for p in two}
    np.testing.assert_array_equal(one, hash_ids(["x", "y"], domain="run-1"))


def test_bad_data_from_the_other_party_is_one_opaque_error():
    receiver = PsiReceiver(_ids(range(5)), domain=DOMAIN)
    sender = PsiSender(_ids(range(5)), domain=DOMAIN)
    offer = receiver.offer()
    garbage = np.full((5, 32), 0xFF, dtype=np.uint8)  # not a canonical point
    with pytest.raises(PsiError):
        sender.reblind(garbage)
    with pytest.raises(PsiError):
        sender.reblind(offer[:, :16])
    with pytest.raises(PsiError):
        receiver.match(sender.blinded(), sender.reblind(offer)[:3])  # wrong count
    with pytest.raises(PsiError):
        receiver.match(np.repeat(sender.blinded()[:1], 5, axis=0), sender.reblind(offer))
    with pytest.raises(PsiError):
        sender.rows(np.array([0, 5]))
    with pytest.raises(PsiError):
        sender.rows(np.array([1, 1]))
    assert str(PsiError()) == "invalid private-set-intersection data from the other party"


def test_ids_must_be_unique():
    with pytest.raises(ValueError, match="unique"):
        PsiSender(["a", "a"], domain=DOMAIN)


def test_the_batched_montgomery_map_agrees_with_libsodium():
    import nacl.bindings as nb

    rng = np.random.default_rng(5)
    edwards = [nb.crypto_core_ed25519_from_uniform(rng.bytes(32)) for _ in range(40)]
    expected = b"".join(nb.crypto_sign_ed25519_pk_to_curve25519(e) for e in edwards)
    assert edwards_to_montgomery(b"".join(edwards)) == expected
    assert edwards_to_montgomery(b"") == b""


def test_a_given_key_must_be_a_clamped_scalar():
    with pytest.raises(ValueError, match="clamped"):
        PsiSender(["a"], domain=DOMAIN, key=12345)
