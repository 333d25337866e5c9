"""Secure summation: exact fixed-point sums, masks that cancel only in the total, and keys
checked. The end-to-end audit of every message is in tests/analytics/test_privacy_audit.py."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from consortium.privacy.secure_sum import (
    DH_PRIME,
    FRACTION_BITS,
    LIMBS,
    MaskedSum,
    MaskingParty,
    SecureSumError,
    decode_fixed,
    encode_fixed,
    mask_stream,
)


def _probably_prime(n: int) -> bool:
    """Miller-Rabin with fixed bases (an independent check of the published constant)."""
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for a in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37):
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def test_the_group_is_a_2048_bit_safe_prime():
    assert DH_PRIME.bit_length() == 2048
    assert _probably_prime(DH_PRIME)
    assert _probably_prime((DH_PRIME - 1) // 2)
    assert not _probably_prime(DH_PRIME + 2)  # the test can tell a composite


def test_fixed_point_round_trip_is_exact_to_its_resolution():
    values = np.array([0.0, -0.0, 1.0, -1.0, 0.1, -123456.789, 2.0**80, -(2.0**-60), 1e-25])
    decoded = decode_fixed(encode_fixed(values))
    assert np.all(np.abs(decoded - values) <= 2.0**-FRACTION_BITS)
    assert decoded[5] == -123456.789 and decoded[6] == 2.0**80


def test_sum_of_encodings_is_the_exact_sum():
    rng = np.random.default_rng(0)
    parts = [rng.normal(scale=10.0 ** rng.integers(-3, 6), size=20) for _ in range(7)]
    limbs = sum(encode_fixed(p) for p in parts)
    exact = [sum(Fraction(float(p[i])) for p in parts) for i in range(20)]
    for got, want in zip(decode_fixed(limbs), exact, strict=True):
        assert abs(Fraction(float(got)) - want) <= Fraction(7, 2**FRACTION_BITS) + abs(
            want
        ) * Fraction(1, 2**52)


def test_encoding_refuses_what_it_cannot_hold():
    with pytest.raises(ValueError, match="finite"):
        encode_fixed(np.array([np.nan]))
    with pytest.raises(ValueError, match="range"):
        encode_fixed(np.array([2.0**100]))


def _parties(n: int) -> list[MaskingParty]:
    parties = [MaskingParty(f"p{i}") for i in range(n)]
    keys = {p.name: p.public_key for p in parties}
    for p in parties:
        p.agree(keys)
    return parties


def test_masks_cancel_in_the_total_and_hide_each_vector():
    rng = np.random.default_rng(1)
    parties = _parties(4)
    names = [p.name for p in parties]
    vectors = [rng.normal(size=50) * 100 for _ in parties]
    total = MaskedSum(size=50)
    masked = []
    for p, v in zip(parties, vectors, strict=True):
        m = p.mask(v, nonce=7, parties=names)
        masked.append(m)
        total.add(m)
        assert m.shape == (50, LIMBS) and m.dtype == np.uint64
        assert not np.any(m == encode_fixed(v))  # no lane of the clear encoding survives
        # masked lanes use all 64 bits (clear limbs are below 2**32)
        assert np.mean(m >= np.uint64(2**32)) > 0.99
    np.testing.assert_allclose(total.total(), np.sum(vectors, axis=0), rtol=1e-13, atol=1e-12)
    # without one party's vector, the rest decode to noise, not to a partial sum
    partial = MaskedSum(size=50)
    for m in masked[:3]:
        partial.add(m)
    assert not np.allclose(partial.total(), np.sum(vectors[:3], axis=0), atol=1e3)


def test_each_nonce_has_its_own_masks():
    a, _ = _parties(2)
    v = np.ones(4)
    assert not np.array_equal(
        a.mask(v, nonce=1, parties=["p0", "p1"]), a.mask(v, nonce=2, parties=["p0", "p1"])
    )
    assert np.array_equal(mask_stream(b"s", 3, (2, 5)), mask_stream(b"s", 3, (2, 5)))


def test_a_party_alone_sends_its_encoding():
    (a,) = _parties(1)
    v = np.array([1.5, -2.0])
    np.testing.assert_array_equal(a.mask(v, nonce=1, parties=["p0"]), encode_fixed(v))


def test_bad_keys_and_vectors_are_refused_opaquely():
    a = MaskingParty("a")
    for bad in (b"\x00" * 256, (DH_PRIME - 1).to_bytes(256, "big"), b"\x01" * 10):
        with pytest.raises(SecureSumError) as info:
            a.agree({"b": bad})
        assert str(info.value) == str(SecureSumError())
    with pytest.raises(SecureSumError):
        a.mask(np.ones(2), nonce=1, parties=["a", "stranger"])
    total = MaskedSum(size=2)
    with pytest.raises(SecureSumError):
        total.add(np.zeros((3, LIMBS), dtype=np.uint64))
    with pytest.raises(SecureSumError):
        total.add(np.zeros((2, LIMBS), dtype=np.int64))
