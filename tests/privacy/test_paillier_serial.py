"""Serialisation to uint8 tensors and the strict validation of what comes back."""

from __future__ import annotations

import numpy as np
import pytest

gmpy2 = pytest.importorskip("gmpy2")

from consortium.privacy.paillier import (  # noqa: E402
    InvalidCiphertext,
    InvalidPublicKey,
    PaillierKeypair,
    PublicKey,
    ciphertexts_from_array,
    ciphertexts_to_array,
    decrypt,
    encrypt,
    public_key_from_array,
    public_key_to_array,
    residues_from_array,
    residues_to_array,
)
from consortium.privacy.paillier.serial import integers_to_array  # noqa: E402


@pytest.fixture(scope="module")
def keys():
    return PaillierKeypair.generate(512, allow_small=True)


def test_ciphertexts_round_trip_as_fixed_width_big_endian(keys):
    e = encrypt(keys.public_key, np.array([[1.0, -2.0], [3.5, 0.0]]))
    wire = ciphertexts_to_array(e)
    assert wire.dtype == np.uint8 and wire.shape == (2, 2, 128)
    assert int.from_bytes(wire[0, 1].tobytes(), "big") == int(e.ciphertexts[0, 1])
    back = ciphertexts_from_array(keys.public_key, wire, exponent=e.exponent)
    assert back.ciphertext_list() == e.ciphertext_list()  # fresh arrays are sent as they are
    np.testing.assert_array_equal(decrypt(keys.private_key, back), [[1.0, -2.0], [3.5, 0.0]])


def test_derived_arrays_are_rerandomized_when_serialised(keys):
    e = encrypt(keys.public_key, [1.0, 2.0]) * 3
    wire = ciphertexts_to_array(e)
    sent = [int.from_bytes(row.tobytes(), "big") for row in wire]
    assert sent != [int(c) for c in e.ciphertext_list()]
    back = ciphertexts_from_array(keys.public_key, wire, exponent=e.exponent)
    assert decrypt(keys.private_key, back).tolist() == [3.0, 6.0]
    raw = ciphertexts_to_array(e, rerandomize=False)
    assert [int.from_bytes(row.tobytes(), "big") for row in raw] == [
        int(c) for c in e.ciphertext_list()
    ]


def _bad_arrays(keys):
    pk = keys.public_key
    w = pk.ciphertext_bytes
    p, _ = keys.private_key.primes
    good = ciphertexts_to_array(encrypt(pk, [1.0]))
    yield integers_to_array([0], w)  # zero
    yield integers_to_array([int(pk.nsq)], w)  # = n^2
    yield integers_to_array([int(pk.nsq) + 12345], w)  # > n^2, still fits the width
    yield integers_to_array([p], w)  # shares a factor with n
    yield integers_to_array([int(pk.n) * 7], w)  # a multiple of n
    yield np.full((1, w), 0xFF, dtype=np.uint8)  # garbage
    yield good.astype(np.int16)  # wrong dtype
    yield good[:, 1:]  # wrong width
    yield np.zeros((0,), dtype=np.uint8)[None][:, :0]  # empty rows
    yield good.tobytes()  # not an array


def test_invalid_ciphertexts_are_all_refused_with_one_opaque_message(keys):
    messages = set()
    for bad in _bad_arrays(keys):
        with pytest.raises(InvalidCiphertext) as info:
            ciphertexts_from_array(keys.public_key, bad, exponent=32)
        messages.add(str(info.value))
    good = ciphertexts_to_array(encrypt(keys.public_key, [1.0]))
    for exponent in (-1, 10**9):
        with pytest.raises(InvalidCiphertext) as info:
            ciphertexts_from_array(keys.public_key, good, exponent=exponent)
        messages.add(str(info.value))
    assert len(messages) == 1


def test_decryption_refuses_forged_ciphertexts(keys):
    p, _ = keys.private_key.primes
    with pytest.raises(InvalidCiphertext):
        keys.private_key.raw_decrypt([p])
    with pytest.raises(InvalidCiphertext):
        keys.private_key.raw_decrypt([0])


def test_public_keys_round_trip_and_weak_keys_are_refused(keys):
    wire = public_key_to_array(keys.public_key)
    assert wire.dtype == np.uint8 and wire.shape == (64,)
    assert public_key_from_array(wire, min_bits=512) == keys.public_key
    with pytest.raises(InvalidPublicKey, match="2048"):
        public_key_from_array(wire)  # the default minimum is 2048 bits

    def as_key(n: int, width: int = 64) -> np.ndarray:
        return np.frombuffer(n.to_bytes(width, "big"), dtype=np.uint8).copy()

    n = int(keys.public_key.n)
    p, _ = keys.private_key.primes
    bad = [
        (as_key(n + 1), "small factor"),  # even
        (as_key(2**512 - 1), "small factor"),  # divisible by 3
        (as_key(int(gmpy2.next_prime(2**511))), "not a product"),  # prime
        (as_key(p * p), "not a product"),  # a square
        (as_key(n, 65), "leading zero"),
        (wire.astype(np.uint16), "uint8"),
        (wire[None], "uint8"),
    ]
    for arr, reason in bad:
        with pytest.raises(InvalidPublicKey, match=reason):
            public_key_from_array(arr, min_bits=512)
    assert PublicKey(n).fingerprint == keys.public_key.fingerprint


def test_residues_round_trip_and_range_check(keys):
    n = int(keys.public_key.n)
    vals = np.array([0, 1, n - 1], dtype=object)
    wire = residues_to_array(keys.public_key, vals)
    assert wire.shape == (3, 64)
    assert residues_from_array(keys.public_key, wire).tolist() == [0, 1, n - 1]
    too_big = residues_to_array(keys.public_key, np.array([n], dtype=object))
    with pytest.raises(InvalidCiphertext):
        residues_from_array(keys.public_key, too_big)
    with pytest.raises(ValueError):
        residues_to_array(keys.public_key, np.array([-1], dtype=object))


def test_one_forged_ciphertext_among_valid_ones_is_refused_wherever_it_is(keys):
    """The units are checked all at once (one gcd of their product): a single non-unit
    anywhere in a long array still fails it."""
    pk = keys.public_key
    p, q = keys.private_key.primes
    valid = [int(c) for c in encrypt(pk, np.linspace(-1, 1, 20)).ciphertexts]
    for forged in (int(p), int(q) * 3, int(pk.n) * 5):
        for at in (0, 7, 19):
            items = [*valid[:at], forged, *valid[at + 1 :]]
            with pytest.raises(InvalidCiphertext):
                ciphertexts_from_array(
                    pk, integers_to_array(items, pk.ciphertext_bytes), exponent=0
                )
    loaded = ciphertexts_from_array(pk, integers_to_array(valid, pk.ciphertext_bytes), exponent=0)
    assert [int(c) for c in loaded.ciphertexts] == valid
