"""Fixed-point encoding: round trips, the signed mapping around n/2, overflow detection."""

from __future__ import annotations

import math

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
    decrypt,
    decrypt_encoded,
    encrypt,
)
from consortium.privacy.paillier.encoding import from_residues, max_int, to_residues  # noqa: E402


@pytest.fixture(scope="module")
def keys():
    return PaillierKeypair.generate(512, allow_small=True)


finite = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False)


@given(st.lists(finite, min_size=1, max_size=8), st.integers(0, 60))
def test_encode_is_round_to_nearest_multiple(values, precision):
    enc = Encoding(precision)
    ints = enc.encode(values)
    for v, k in zip(values, ints.tolist(), strict=True):
        assert type(k) is int
        assert k == round(v * 2**precision)  # scaling by 2^p is exact; round is half-even
    back = Encoding.decode(ints, precision)
    assert np.all(
        np.abs(back - np.asarray(values)) <= 2.0 ** (-precision - 1) + 1e-16 * np.abs(values)
    )


@given(st.lists(st.integers(-(2**100), 2**100), min_size=1, max_size=8), st.integers(0, 40))
def test_integers_encode_exactly(values, precision):
    ints = Encoding(precision).encode(np.asarray(values, dtype=object))
    assert ints.tolist() == [v << precision for v in values]


@given(st.lists(st.integers(-(2**300), 2**300), min_size=1, max_size=8))
@settings(max_examples=50)
def test_signed_residues_round_trip(keys, values):
    n = keys.public_key.n
    residues = to_residues(values, n)
    assert all(0 <= r < n for r in residues)
    assert from_residues(residues, n) == values


def test_decrypted_values_equal_the_encoded_values(keys):
    x = np.array([[0.1, -0.2], [1e-9, -123456.789]])
    enc = encrypt(keys.public_key, x, encoding=Encoding(40))
    assert decrypt_encoded(keys.private_key, enc).tolist() == Encoding(40).encode(x).tolist()
    assert enc.exponent == 40 and enc.shape == (2, 2)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 1e308])
def test_non_finite_values_are_an_overflow(bad):
    with pytest.raises(EncodingOverflow):
        Encoding(32).encode([1.0, bad])


def test_value_beyond_the_key_range_is_refused_at_encryption(keys):
    limit = keys.public_key.max_int
    assert limit == int(keys.public_key.n) // 3 == max_int(keys.public_key.n)
    encrypt(keys.public_key, np.array([limit], dtype=object), encoding=Encoding(0))
    with pytest.raises(EncodingOverflow):
        encrypt(keys.public_key, np.array([limit + 1], dtype=object), encoding=Encoding(0))
    with pytest.raises(EncodingOverflow):
        encrypt(keys.public_key, [2.0**500])  # 532 bits at 32 fractional bits


def test_an_operation_that_may_overflow_raises_before_decryption(keys):
    enc = encrypt(keys.public_key, np.array([2**300], dtype=object), encoding=Encoding(0))
    assert enc.bound == 2**300
    with pytest.raises(EncodingOverflow, match="bits"):
        enc * (2**250)
    with pytest.raises(EncodingOverflow):
        enc * 2.0**215  # floats use the array encoding (0 fractional bits here): 515 bits


def test_an_overflowed_result_of_unknown_bound_is_caught_at_decryption(keys):
    limit = keys.public_key.max_int
    enc = encrypt(keys.public_key, np.array([limit, -limit], dtype=object), encoding=Encoding(0))
    loaded = ciphertexts_from_array(
        keys.public_key, ciphertexts_to_array(enc), exponent=0
    )  # the wire does not carry the bound
    assert loaded.bound is None
    assert decrypt_encoded(keys.private_key, loaded).tolist() == [limit, -limit]
    doubled = loaded + loaded  # 2 * max_int lies in the forbidden middle band
    with pytest.raises(EncodingOverflow, match="overflow"):
        decrypt(keys.private_key, doubled)
    with pytest.raises(EncodingOverflow):
        decrypt_encoded(keys.private_key, doubled[1:])


def test_precision_must_be_sane():
    with pytest.raises(ValueError):
        Encoding(-1)
    with pytest.raises(TypeError):
        Encoding().encode(np.array(["a"]))
