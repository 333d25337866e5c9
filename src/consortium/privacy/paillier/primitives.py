"""Raw Paillier primitives on integers: the lower tier, for code that knows what it does.

Paillier, "Public-Key Cryptosystems Based on Composite Degree Residuosity Classes",
EUROCRYPT 1999, with the generator g = n + 1 of Damgård and Jurik, "A Generalisation, a
Simplification and Some Applications of Paillier's Probabilistic Public-Key System",
PKC 2001, so that g^m = 1 + m*n (mod n^2) costs one multiplication. Decryption uses the
Chinese remainder theorem over p^2 and q^2 (Paillier, section 7).

Nothing here encodes, validates or checks for overflow: plaintexts are residues in
[0, n), ciphertexts are units below n^2, and the caller keeps them so. All randomness
comes from :mod:`secrets` (the operating system's CSPRNG).
"""

from __future__ import annotations

import secrets
from typing import Any, NamedTuple

from consortium.privacy.paillier._gmp import gmpy2

__all__ = [
    "PRIME_TEST_REPS",
    "CrtKey",
    "crt_key",
    "generate_primes",
    "obfuscator",
    "random_prime",
    "random_unit",
    "raw_add",
    "raw_decrypt",
    "raw_encrypt",
    "raw_mul",
    "raw_plain_add",
]

# Repetitions for gmpy2.is_prime. GMP (>= 6.2) runs a Baillie-PSW test, for which no
# composite is known, and then reps - 24 extra Miller-Rabin rounds with random bases: with
# 50, 26 more rounds, each passing a composite with probability at most 1/4, so a
# composite survives with probability below 2^-52 even if BPSW were broken (and far less
# for random candidates of 1024 bits: FIPS 186-5 asks for fewer rounds than this).
PRIME_TEST_REPS = 50


def random_prime(bits: int) -> Any:
    """A uniformly drawn probable prime of exactly ``bits`` bits with its two top bits set,
    so that the product of two is exactly ``2 * bits`` bits long. Candidates come from
    :func:`secrets.randbits` (gmpy2's Mersenne Twister is not a cryptographic generator)."""
    if bits < 16:
        raise ValueError(f"a prime of {bits} bits is too small for Paillier")
    g = gmpy2()
    top = 3 << (bits - 2)
    while True:
        candidate = g.mpz(secrets.randbits(bits) | top | 1)
        if g.is_prime(candidate, PRIME_TEST_REPS):
            return candidate


def generate_primes(bits: int) -> tuple[Any, Any]:
    """Two distinct primes p, q whose product n has exactly ``bits`` bits, with
    gcd(n, (p-1)(q-1)) = 1 (always true for primes of equal length, checked anyway)."""
    g = gmpy2()
    half = bits // 2
    while True:
        p = random_prime(half)
        q = random_prime(bits - half)
        n = p * q
        if p != q and n.bit_length() == bits and g.gcd(n, (p - 1) * (q - 1)) == 1:
            return p, q


def random_unit(n: Any) -> Any:
    """A uniform element of Z_n^* drawn from the CSPRNG."""
    g = gmpy2()
    while True:
        r = g.mpz(secrets.randbelow(int(n) - 1) + 1)
        if g.gcd(r, n) == 1:  # fails only if r is a multiple of p or q: never in practice
            return r


def obfuscator(n: Any, nsq: Any) -> Any:
    """A fresh ``r^n mod n^2`` for a uniform unit r: the costly part of an encryption. Use
    each for one encryption only: two ciphertexts sharing r reveal the difference of their
    plaintexts to anyone (their quotient is g^(m1 - m2))."""
    return gmpy2().powmod(random_unit(n), n, nsq)


def raw_encrypt(m: Any, n: Any, nsq: Any, obf: Any) -> Any:
    """``g^m * obf mod n^2`` for a residue ``0 <= m < n`` and an obfuscator ``r^n``."""
    return (1 + m * n) * obf % nsq


def raw_add(a: Any, b: Any, nsq: Any) -> Any:
    """The ciphertext of the sum of two plaintexts."""
    return a * b % nsq


def raw_plain_add(c: Any, m: Any, n: Any, nsq: Any) -> Any:
    """The ciphertext of ``plaintext(c) + m`` for a residue ``0 <= m < n``."""
    return c * (1 + m * n) % nsq


def raw_mul(c: Any, k: Any, nsq: Any) -> Any:
    """The ciphertext of ``k * plaintext(c)``; a negative ``k`` inverts ``c`` first."""
    return gmpy2().powmod(c, k, nsq)


class CrtKey(NamedTuple):
    """Precomputed values for CRT decryption (Paillier 1999, section 7)."""

    p: Any
    q: Any
    psq: Any
    qsq: Any
    hp: Any  # L_p(g^(p-1) mod p^2)^-1 mod p
    hq: Any  # L_q(g^(q-1) mod q^2)^-1 mod q
    q_inv: Any  # q^-1 mod p, to recombine


def crt_key(p: Any, q: Any) -> CrtKey:
    """The CRT decryption values for the primes ``p`` and ``q`` (g = n + 1)."""
    g = gmpy2()
    p, q = g.mpz(p), g.mpz(q)
    n = p * q
    psq, qsq = p * p, q * q
    hp = g.invert((g.powmod(n + 1, p - 1, psq) - 1) // p, p)
    hq = g.invert((g.powmod(n + 1, q - 1, qsq) - 1) // q, q)
    return CrtKey(p, q, psq, qsq, hp, hq, g.invert(q, p))


def raw_decrypt(c: Any, key: CrtKey) -> Any:
    """The residue ``m`` in [0, n) of a valid ciphertext ``c``."""
    powmod = gmpy2().powmod
    p, q = key.p, key.q
    mp = (powmod(c, p - 1, key.psq) - 1) // p * key.hp % p
    mq = (powmod(c, q - 1, key.qsq) - 1) // q * key.hq % q
    return mq + q * ((mp - mq) * key.q_inv % p)
