"""Precomputed obfuscators: valid n-th residues, each handed out once, never reused."""

from __future__ import annotations

import numpy as np
import pytest

gmpy2 = pytest.importorskip("gmpy2")

from consortium.privacy.paillier import ObfuscatorPool, PaillierKeypair, decrypt, encrypt  # noqa: E402


@pytest.fixture(scope="module")
def keys():
    return PaillierKeypair.generate(512, allow_small=True)


def is_nth_residue(x, keys) -> bool:
    """r^n has order dividing phi(n) in Z_{n^2}^*; a random unit almost never does."""
    p, q = keys.private_key.primes
    return pow(int(x), (p - 1) * (q - 1), int(keys.public_key.nsq)) == 1


def test_pool_values_are_distinct_nth_residues_and_taken_once(keys):
    pool = ObfuscatorPool(keys.public_key, size=12)
    assert len(pool) == 12
    first = pool.take(5)
    assert len(pool) == 7
    rest = pool.take(7)
    assert len(pool) == 0
    seen = [int(v) for v in first + rest]
    assert len(set(seen)) == 12
    assert all(is_nth_residue(v, keys) for v in seen)
    assert not is_nth_residue(seen[0] + 1, keys)  # the check can fail


def test_an_empty_pool_computes_fresh_values(keys):
    pool = ObfuscatorPool(keys.public_key, size=2)
    got = pool.take(5)
    assert len(got) == 5 and len(pool) == 0
    assert len({int(v) for v in got}) == 5
    assert all(is_nth_residue(v, keys) for v in got)


def test_encryption_with_a_pool_decrypts_and_consumes_it(keys):
    pool = ObfuscatorPool(keys.public_key, size=10)
    x = np.array([0.5, -1.25, 3.0, 0.0])
    enc = encrypt(keys.public_key, x, obfuscators=pool)
    assert len(pool) == 6
    np.testing.assert_array_equal(decrypt(keys.private_key, enc), x)
    again = encrypt(keys.public_key, x, obfuscators=pool)
    assert set(map(int, enc.ciphertext_list())).isdisjoint(map(int, again.ciphertext_list()))
    assert len(pool) == 2
    rer = (enc * 2).rerandomize(pool)  # takes the last two, computes two more
    assert len(pool) == 0
    np.testing.assert_array_equal(decrypt(keys.private_key, rer), 2 * x)
    pool.fill(3)
    pool.clear()
    assert len(pool) == 0


def test_a_pool_serves_only_its_own_key(keys):
    other = PaillierKeypair.generate(512, allow_small=True)
    pool = ObfuscatorPool(other.public_key, size=1)
    with pytest.raises(ValueError, match="another public key"):
        encrypt(keys.public_key, [1.0], obfuscators=pool)
    with pytest.raises(ValueError):
        pool.fill(-1)


@pytest.mark.parametrize("method", ["fixed-base", "textbook"])
def test_both_methods_give_distinct_nth_residues_that_encrypt(keys, method):
    pool = ObfuscatorPool(keys.public_key, size=20, method=method)
    values = [int(v) for v in pool.take(20)]
    assert len(set(values)) == 20
    assert all(is_nth_residue(v, keys) for v in values)
    x = np.array([1.5, -2.0, 0.0])
    enc = encrypt(keys.public_key, x, obfuscators=pool)
    np.testing.assert_array_equal(decrypt(keys.private_key, enc), x)


def test_fixed_base_powers_match_the_exponent(keys, monkeypatch):
    """The table gives h_s^a = (h^n)^a for the drawn a, a below 2^ceil(|n|/2), top digits
    included: checked against Python's own powers for a known h."""
    from consortium.privacy.paillier import obfuscators, primitives
    from consortium.privacy.paillier.obfuscators import FixedBase

    n, nsq = int(keys.public_key.n), int(keys.public_key.nsq)
    h = 0x1234_5678_9ABC_DEF1 % n
    monkeypatch.setattr(primitives, "random_unit", lambda modulus: gmpy2.mpz(h))
    fixed = FixedBase(n, window=4)
    bits = (n.bit_length() + 1) // 2
    asked: list[int] = []
    for a in (1, 2**bits - 1, 0x1234567 << (bits - 40)):

        def drawn(k, a=a):
            asked.append(k)
            return a

        monkeypatch.setattr(obfuscators.secrets, "randbits", drawn)
        assert int(fixed.draw()) == pow(pow(h, n, nsq), a, nsq)
    assert asked == [bits] * 3


def test_an_unknown_method_is_refused(keys):
    with pytest.raises(ValueError, match="fixed-base"):
        ObfuscatorPool(keys.public_key, method="fast")  # type: ignore[arg-type]
