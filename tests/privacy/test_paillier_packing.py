"""Packing several values per plaintext: round trips, sums, headroom and width overflow."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

gmpy2 = pytest.importorskip("gmpy2")

from consortium.privacy.paillier import (  # noqa: E402
    Encoding,
    InvalidCiphertext,
    PackedArray,
    Packing,
    PackingOverflow,
    PaillierKeypair,
    decrypt_packed,
    encrypt_packed,
    packed_from_array,
    packed_to_array,
)


@pytest.fixture(scope="module")
def keys():
    return PaillierKeypair.generate(512, allow_small=True)


PACK = Packing(precision=16, value_bits=48, headroom_bits=3)  # 51-bit slots: 10 per 512-bit key
values = st.floats(-1e9, 1e9, allow_nan=False)


def rounded(x):
    code = Encoding(PACK.precision)
    return code.decode(code.encode(x), PACK.precision)


def test_slot_layout(keys):
    assert PACK.slot_bits == 51 and PACK.max_summands == 8
    assert PACK.slots(keys.public_key) == 511 // 51 == 10
    packed = encrypt_packed(keys.public_key, np.zeros(25), PACK)
    assert len(packed.ciphertexts) == 3
    with pytest.raises(ValueError):
        Packing(value_bits=600).slots(keys.public_key)


@given(st.lists(values, min_size=1, max_size=23))
@settings(max_examples=25, deadline=None)
def test_round_trip(keys, xs):
    packed = encrypt_packed(keys.public_key, xs, PACK)
    np.testing.assert_array_equal(decrypt_packed(keys.private_key, packed), rounded(np.asarray(xs)))


@given(st.lists(st.lists(values, min_size=12, max_size=12), min_size=1, max_size=8))
@settings(max_examples=15, deadline=None)
def test_sums_equal_plaintext_sums(keys, vectors):
    arrays = [encrypt_packed(keys.public_key, np.asarray(v).reshape(3, 4), PACK) for v in vectors]
    total = sum(arrays)
    assert isinstance(total, PackedArray) and total.count == len(vectors)
    code = Encoding(PACK.precision)
    exact = sum(code.encode(np.asarray(v).reshape(3, 4)) for v in vectors)
    np.testing.assert_array_equal(
        decrypt_packed(keys.private_key, total), code.decode(exact, PACK.precision)
    )


def test_headroom_overflow_is_refused(keys):
    one = encrypt_packed(keys.public_key, [1.0, -1.0], PACK)
    total = one
    for _ in range(PACK.max_summands - 1):
        total = total + one
    assert decrypt_packed(keys.private_key, total).tolist() == [8.0, -8.0]
    with pytest.raises(PackingOverflow, match="headroom"):
        total + one


def test_values_wider_than_a_slot_are_refused(keys):
    limit = 2.0 ** (PACK.value_bits - 1 - PACK.precision)
    encrypt_packed(keys.public_key, [limit - 1.0, -(limit - 1.0)], PACK)
    with pytest.raises(PackingOverflow):
        encrypt_packed(keys.public_key, [limit], PACK)
    with pytest.raises(PackingOverflow):
        encrypt_packed(keys.public_key, [0.0, -limit], PACK)


def test_mismatched_packed_arrays_do_not_add(keys):
    a = encrypt_packed(keys.public_key, [1.0, 2.0], PACK)
    with pytest.raises(ValueError):
        a + encrypt_packed(keys.public_key, [1.0, 2.0, 3.0], PACK)
    with pytest.raises(ValueError):
        a + encrypt_packed(keys.public_key, [1.0, 2.0], Packing(precision=8))
    with pytest.raises(TypeError):
        a + 1.0


def test_serialised_round_trip_and_corrupt_slots(keys):
    a = encrypt_packed(keys.public_key, np.arange(12.0), PACK) + encrypt_packed(
        keys.public_key, np.ones(12), PACK
    )
    wire = packed_to_array(a)
    assert wire.dtype == np.uint8 and wire.shape == (2, keys.public_key.ciphertext_bytes)
    b = packed_from_array(keys.public_key, wire, packing=PACK, shape=(12,), count=2)
    np.testing.assert_array_equal(decrypt_packed(keys.private_key, b), np.arange(12.0) + 1)
    # The same ciphertexts claimed to be one summand: slots outside their range are caught.
    c = packed_from_array(keys.public_key, wire, packing=PACK, shape=(12,), count=1)
    with pytest.raises(InvalidCiphertext):
        decrypt_packed(keys.private_key, c)
    with pytest.raises(InvalidCiphertext):
        packed_from_array(keys.public_key, wire, packing=PACK, shape=(40,), count=2)
