"""Masked decryption: the key holder sees uniform residues, the owner recovers the values."""

from __future__ import annotations

import numpy as np
import pytest

gmpy2 = pytest.importorskip("gmpy2")

from consortium.privacy.paillier import (  # noqa: E402
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
    enc = keys.public_key.encrypt([1.0, 1.0])
    a, _ = mask(enc)
    b, _ = mask(enc)
    ra = keys.private_key.decrypt_residues(a).tolist()
    rb = keys.private_key.decrypt_residues(b).tolist()
    assert ra[0] != ra[1] and ra != rb
    assert a.derived and a.bound is None


def test_unmask_checks_the_shape(keys):
    _, secret = mask(keys.public_key.encrypt([1.0, 2.0]))
    with pytest.raises(ValueError, match="shape"):
        secret.unmask(np.zeros(3, dtype=object))
