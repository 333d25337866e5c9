"""Masked decryption: the key holder sees uniform residues, the owner recovers the values."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

gmpy2 = pytest.importorskip("gmpy2")

from consortium.privacy.paillier import (  # noqa: E402
    Encoding,
    EncryptedArray,
    PaillierKeypair,
    ciphertexts_from_array,
    ciphertexts_to_array,
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
    wire_d = ciphertexts_to_array(pk.encrypt(d))
    enc_d = ciphertexts_from_array(pk, wire_d, exponent=32)
    # member: gradient and mask
    grad = enc_d @ X
    masked, secret = mask(grad)
    wire_masked = ciphertexts_to_array(masked)
    # arbiter: decrypt residues only
    at_arbiter = ciphertexts_from_array(pk, wire_masked, exponent=masked.exponent)
    seen = sk.decrypt_residues(at_arbiter)
    honest = sk.decrypt_residues(grad)
    assert all(a != b for a, b in zip(seen.tolist(), honest.tolist(), strict=True))
    back = residues_from_array(pk, residues_to_array(pk, seen))
    # member
    np.testing.assert_allclose(secret.unmask(back), X.T @ d, atol=1e-7)
    assert secret.unmask_encoded(back).tolist() == sk.decrypt_encoded(grad).tolist()


def test_masks_are_fresh_each_time(keys):
    pk, sk = keys.public_key, keys.private_key
    enc = ciphertexts_from_array(pk, ciphertexts_to_array(pk.encrypt([1.0, 1.0])), exponent=32)
    assert enc.bound is None  # unbounded: masked one by one
    a, secret = mask(enc)
    b, _ = mask(enc)
    ra = sk.decrypt_residues(a).tolist()
    rb = sk.decrypt_residues(b).tolist()
    assert ra[0] != ra[1] and ra != rb
    assert a.derived and a.bound is None
    assert secret.wire_shape == secret.shape == (2,)


def test_bounded_values_are_packed_before_masking(keys):
    pk, sk = keys.public_key, keys.private_key
    x = np.linspace(-3, 3, 7).reshape(7, 1)
    enc = pk.encrypt(x)
    masked, secret = mask(enc)
    # slots of (2 * 3 * 2^32).bit_length() = 35 bits: 14 to a 512-bit key's plaintext
    assert masked.shape == (1,) and secret.wire_shape == (1,) and secret.shape == (7, 1)
    residues = sk.decrypt_residues(masked)
    np.testing.assert_array_equal(secret.unmask(residues), x)
    assert secret.unmask_encoded(residues).tolist() == sk.decrypt_encoded(enc).tolist()
    assert mask(enc)[0].ciphertext_list() != masked.ciphertext_list()


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(st.integers(-(2**90), 2**90), min_size=0, max_size=40),
    slack=st.integers(0, 2**100),
)
def test_packed_masks_round_trip_exactly(keys, values, slack):
    """Any bound at or above the values' magnitudes, any count: the packed layout (slots
    per residue, a last residue partly filled) gives the exact integers back."""
    pk, sk = keys.public_key, keys.private_key
    ints = np.array(values, dtype=object)
    exact = pk.encrypt(ints, encoding=Encoding(precision=0))
    bound = max((abs(v) for v in values), default=0) + slack
    enc = EncryptedArray(pk, exact.ciphertexts, exponent=0, encoding=exact.encoding, bound=bound)
    masked, secret = mask(enc)
    if len(values) > 1 and (2 * bound).bit_length() * 2 < pk.bits:
        assert masked.size < len(values)
    got = secret.unmask_encoded(sk.decrypt_residues(masked))
    assert got.tolist() == values


def test_unmask_checks_the_shape(keys):
    _, secret = mask(keys.public_key.encrypt([1.0, 2.0]))
    with pytest.raises(ValueError, match="shape"):
        secret.unmask(np.zeros(3, dtype=object))
