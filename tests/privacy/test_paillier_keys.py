"""Key generation and CRT decryption, checked against the textbook formulas of Paillier 1999."""

from __future__ import annotations

import math

import numpy as np
import pytest

gmpy2 = pytest.importorskip("gmpy2")

from consortium.privacy.paillier import (  # noqa: E402
    MIN_KEY_BITS,
    InvalidCiphertext,
    PaillierKeypair,
    PrivateKey,
    decrypt,
    encrypt,
    primitives,
)


@pytest.fixture(scope="module")
def keys():
    return PaillierKeypair.generate(512, allow_small=True)


def textbook_decrypt(c: int, p: int, q: int) -> int:
    """m = L(c^lambda mod n^2) * mu mod n, with g = n + 1 (no CRT)."""
    n = p * q
    lam = math.lcm(p - 1, q - 1)
    mu = pow((pow(n + 1, lam, n * n) - 1) // n, -1, n)
    return (pow(c, lam, n * n) - 1) // n * mu % n


def textbook_encrypt(m: int, r: int, n: int) -> int:
    return pow(n + 1, m, n * n) * pow(r, n, n * n) % (n * n)


def test_generated_key_has_the_requested_size_and_two_distinct_primes(keys):
    p, q = keys.private_key.primes
    n = int(keys.public_key.n)
    assert p * q == n and p != q
    assert keys.public_key.bits == 512
    assert gmpy2.is_prime(p) and gmpy2.is_prime(q)
    assert math.gcd(n, (p - 1) * (q - 1)) == 1


def test_small_keys_are_refused_unless_asked_for():
    with pytest.raises(ValueError, match="too weak"):
        PaillierKeypair.generate(1024)
    with pytest.raises(ValueError):
        PaillierKeypair.generate(511, allow_small=True)
    assert MIN_KEY_BITS >= 2048


def test_crt_decryption_matches_the_textbook_formula(keys):
    p, q = keys.private_key.primes
    n = p * q
    rng = np.random.default_rng(3)
    for _ in range(20):
        m = int(rng.integers(0, 2**62)) * int(rng.integers(1, 2**62)) % n
        r = int(rng.integers(1, 2**62))
        c = textbook_encrypt(m, r, n)
        assert keys.private_key.raw_decrypt([c]) == [m]
        assert textbook_decrypt(c, p, q) == m


def test_raw_primitives_match_textbook_arithmetic(keys):
    p, q = keys.private_key.primes
    n, nsq = p * q, (p * q) ** 2
    obf = primitives.obfuscator(n, nsq)
    c1 = primitives.raw_encrypt(11, n, nsq, obf)
    c2 = primitives.raw_encrypt(n - 4, n, nsq, primitives.obfuscator(n, nsq))  # -4
    assert textbook_decrypt(int(c1), p, q) == 11
    assert textbook_decrypt(int(primitives.raw_add(c1, c2, nsq)), p, q) == 7
    assert textbook_decrypt(int(primitives.raw_plain_add(c1, 5, n, nsq)), p, q) == 16
    assert textbook_decrypt(int(primitives.raw_mul(c1, -3, nsq)), p, q) == n - 33


def test_private_key_checks_its_primes_and_hides_them(keys):
    p, q = keys.private_key.primes
    with pytest.raises(ValueError):
        PrivateKey(keys.public_key, p, p)
    with pytest.raises(ValueError):
        PrivateKey(keys.public_key, p + 2, q)
    assert str(p) not in repr(keys.private_key)


def test_decrypting_under_another_key_is_rejected(keys):
    other = PaillierKeypair.generate(512, allow_small=True)
    enc = encrypt(other.public_key, [1.0, 2.0])
    with pytest.raises(InvalidCiphertext):
        decrypt(keys.private_key, enc)


def test_default_2048_bit_round_trip():
    keys = PaillierKeypair.generate()
    assert keys.public_key.bits == 2048
    x = np.array([0.125, -3.5, 1e6])
    enc = encrypt(keys.public_key, x)
    assert decrypt(keys.private_key, enc).tolist() == x.tolist()
    X = np.array([[1.0, 2.0], [-0.5, 4.0], [0.25, 0.0]])
    np.testing.assert_allclose(decrypt(keys.private_key, enc @ X), X.T @ x, rtol=1e-12)
    p, q = keys.private_key.primes
    assert textbook_decrypt(int(enc.ciphertext_list()[1]), p, q) == p * q - (7 << 31)
