"""Masked decryption: the key holder sees uniform residues, the owner recovers the values."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

gmpy2 = pytest.importorskip("gmpy2")

from consortium.privacy.paillier import (  # noqa: E402
    Encoding,
    EncodingOverflow,
    PaillierKeypair,
    ciphertexts_from_array,
    ciphertexts_to_array,
    decrypt_encoded,
    decrypt_residues,
    encrypt,
    mask,
    residues_from_array,
    residues_to_array,
)


@pytest.fixture(scope="module")
def keys():
    return PaillierKeypair.generate(512, allow_small=True)


def test_the_vertical_gradient_round_trip(keys):
    """Master encrypts residuals, a member computes X^T [[d]] and masks it, the arbiter
    decrypts the masked values, the member unmasks: the result is the plaintext gradient."""
    pk, sk = keys.public_key, keys.private_key
    rng = np.random.default_rng(7)
    X = rng.normal(size=(25, 3))
    d = rng.normal(size=25)
    # master -> member
    wire_d = ciphertexts_to_array(encrypt(pk, d))
    enc_d = ciphertexts_from_array(pk, wire_d, exponent=32)
    # member: gradient and mask
    grad = enc_d @ X
    masked, secret = mask(grad)
    wire_masked = ciphertexts_to_array(masked)
    # arbiter: decrypt residues only
    at_arbiter = ciphertexts_from_array(pk, wire_masked, exponent=masked.exponent)
    seen = decrypt_residues(sk, at_arbiter)
    honest = decrypt_residues(sk, grad)
    assert all(a != b for a, b in zip(seen.tolist(), honest.tolist(), strict=True))
    back = residues_from_array(pk, residues_to_array(pk, seen))
    # member
    np.testing.assert_allclose(secret.unmask(back), X.T @ d, atol=1e-7)
    assert secret.unmask_encoded(back).tolist() == decrypt_encoded(sk, grad).tolist()


def test_masks_are_fresh_each_time(keys):
    pk, sk = keys.public_key, keys.private_key
    enc = encrypt(pk, [1.0, 1.0])
    a, secret = mask(enc)  # no public bound: masked one by one
    b, _ = mask(enc)
    ra = decrypt_residues(sk, a).tolist()
    rb = decrypt_residues(sk, b).tolist()
    assert ra[0] != ra[1] and ra != rb
    assert a.derived and a.bound is None
    assert secret.wire_shape == secret.shape == (2,)


def test_packing_is_laid_out_by_the_public_bound_alone(keys):
    """Values of very different sizes under one public bound: the same number of
    ciphertexts, each decrypting to a fresh uniform residue, and the exact values back."""
    pk, sk = keys.public_key, keys.private_key
    bound = 1 << 60  # in encoded units (2^-32): |x| < 2^28
    counts = set()
    for scale in (1e-6, 1.0, 1e6):
        x = np.linspace(-3, 3, 7).reshape(7, 1) * scale
        enc = encrypt(pk, x)
        masked, secret = mask(enc, bound=bound)
        counts.add(masked.size)
        assert secret.shape == (7, 1) and secret.wire_shape == masked.shape
        residues = decrypt_residues(sk, masked)
        assert secret.unmask_encoded(residues).tolist() == decrypt_encoded(sk, enc).tolist()
        assert mask(enc, bound=bound)[0].ciphertext_list() != masked.ciphertext_list()
    # slots of (2 * 2^60).bit_length() = 62 bits: 8 to a 512-bit key's plaintext
    assert counts == {1}


def test_values_beyond_the_public_bound_are_refused(keys):
    pk = keys.public_key
    enc = encrypt(pk, [1.0, -2.0])  # proven bound 2^33
    with pytest.raises(EncodingOverflow, match="exceeds the public bound"):
        mask(enc, bound=1 << 32)
    unbounded = ciphertexts_from_array(pk, ciphertexts_to_array(enc), exponent=32)
    with pytest.raises(EncodingOverflow, match="unknown"):
        mask(unbounded, bound=1 << 40)
    with pytest.raises(ValueError, match="non-negative"):
        mask(enc, bound=-1)


@pytest.mark.parametrize(
    "width",
    [7, 73, 255, 8, 64, 256, 300],
    ids=["7x73=511", "73x7=511", "255x2=510", "8-divides-512", "64-divides-512", "256", "300"],
)
def test_every_slot_at_either_end_of_the_bound(keys, width):
    """Slot widths at the edges of a 512-bit key's layout (``per * width`` equal to, or one
    short of, the 511 bits below n, and widths dividing 512, where one more slot would
    pass n), with every value at +-bound: exact."""
    pk, sk = keys.public_key, keys.private_key
    assert pk.bits == 512
    bound = (1 << (width - 1)) - 1  # (2 * bound).bit_length() == width
    count = 2 * (511 // width) + 1  # two full ciphertexts and one value more
    values = [bound if j % 5 else -bound for j in range(count)]
    enc = encrypt(pk, np.array(values, dtype=object), encoding=Encoding(precision=0))
    masked, secret = mask(enc, bound=bound)
    assert masked.size == (3 if 511 // width >= 2 else count)
    assert secret.unmask_encoded(decrypt_residues(sk, masked)).tolist() == values


def test_a_slot_that_overflowed_raises_on_unmasking(keys):
    pk, sk = keys.public_key, keys.private_key
    enc = encrypt(pk, np.array([5, -5, 5], dtype=object), encoding=Encoding(precision=0))
    masked, secret = mask(enc, bound=5)  # width 4: slots hold 0..10
    residues = decrypt_residues(sk, masked).tolist()
    n = int(pk.n)
    above = np.array([(residues[0] + (1 << 12)) % n], dtype=object)  # past the last slot
    with pytest.raises(EncodingOverflow, match="overflowed its slot"):
        secret.unmask_encoded(above)
    wide = np.array([(residues[0] + 3) % n], dtype=object)  # slot 0: 10 + 3, over 2 * 5
    with pytest.raises(EncodingOverflow, match="overflowed its slot"):
        secret.unmask_encoded(wide)


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(st.integers(-(2**90), 2**90), min_size=0, max_size=40),
    slack=st.integers(0, 2**100),
)
def test_packed_masks_round_trip_exactly(keys, values, slack):
    """Any public bound at or above the values' magnitudes, any count: the packed layout
    (slots per residue, a last residue partly filled) gives the exact integers back."""
    pk, sk = keys.public_key, keys.private_key
    ints = np.array(values, dtype=object)
    enc = encrypt(pk, ints, encoding=Encoding(precision=0))
    bound = max((abs(v) for v in values), default=0) + slack
    masked, secret = mask(enc, bound=bound)
    if len(values) > 1 and (2 * bound).bit_length() * 2 < pk.bits:
        assert masked.size < len(values)
    got = secret.unmask_encoded(decrypt_residues(sk, masked))
    assert got.tolist() == values


def test_unmask_checks_the_shape(keys):
    _, secret = mask(encrypt(keys.public_key, [1.0, 2.0]))
    with pytest.raises(ValueError, match="shape"):
        secret.unmask(np.zeros(3, dtype=object))
