"""Paillier keys: generation, the public key (``n``) and the private key (its primes).

Paillier, "Public-Key Cryptosystems Based on Composite Degree Residuosity Classes",
EUROCRYPT 1999; g = n + 1 after Damgård and Jurik, PKC 2001. Decryption works modulo p^2
and q^2 and recombines with the Chinese remainder theorem (Paillier, section 7), about
four times faster than the textbook formula.

Who holds what in the vertical protocols: the arbiter generates the keypair and keeps the
private key; the public key travels to the other parties (``serial.public_key_to_array``),
who encrypt and compute on ciphertexts but can never decrypt.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from consortium.privacy.paillier import primitives
from consortium.privacy.paillier._gmp import gmpy2
from consortium.privacy.paillier.encoding import max_int
from consortium.privacy.paillier.errors import InvalidCiphertext

__all__ = ["DEFAULT_KEY_BITS", "MIN_KEY_BITS", "PaillierKeypair", "PrivateKey", "PublicKey"]

# 2048-bit moduli give about 112 bits of security against factoring (NIST SP 800-57 part 1,
# table 2), acceptable until 2030; use 3072 for data that must stay secret longer.
DEFAULT_KEY_BITS = 2048
# Smaller keys are refused unless a caller says it wants a test key: 1024-bit moduli have
# been within reach of well-funded attackers for years.
MIN_KEY_BITS = 2048


@dataclass(frozen=True, slots=True, repr=False)
class PublicKey:
    """A Paillier public key: the modulus ``n`` (and ``g = n + 1``). Keys from the network
    must come through ``serial.public_key_from_array``, which validates them."""

    n: Any  # the modulus, a gmpy2 mpz
    nsq: Any = field(init=False, compare=False)  # n^2: ciphertexts are units below it
    max_int: int = field(init=False, compare=False)  # the largest signed encoded magnitude

    def __post_init__(self) -> None:
        n = gmpy2().mpz(self.n)
        object.__setattr__(self, "n", n)
        object.__setattr__(self, "nsq", n * n)
        object.__setattr__(self, "max_int", max_int(n))

    @property
    def bits(self) -> int:
        return int(self.n.bit_length())

    @property
    def plaintext_bytes(self) -> int:
        """Bytes of a serialised residue or of ``n``: ``ceil(bits / 8)``."""
        return (self.bits + 7) // 8

    @property
    def ciphertext_bytes(self) -> int:
        """Bytes of a serialised ciphertext: ``ceil(bits(n^2) / 8)``."""
        return (int(self.nsq.bit_length()) + 7) // 8

    @property
    def fingerprint(self) -> str:
        """A short SHA-256 digest of ``n``, to name the key in logs and match keys."""
        return hashlib.sha256(int(self.n).to_bytes(self.plaintext_bytes, "big")).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"PublicKey(bits={self.bits}, fingerprint={self.fingerprint})"


class PrivateKey:
    """A Paillier private key: the primes ``p`` and ``q``, decrypting with CRT. Never
    serialised by this library and never shown by ``repr``."""

    __slots__ = ("_crt", "_public_key")

    def __init__(self, public_key: PublicKey, p: int, q: int) -> None:
        g = gmpy2()
        p, q = g.mpz(p), g.mpz(q)
        if p * q != public_key.n or p == q:
            raise ValueError("p and q are not the two prime factors of this public key")
        self._public_key = public_key
        self._crt = primitives.crt_key(p, q)

    @property
    def public_key(self) -> PublicKey:
        return self._public_key

    @property
    def primes(self) -> tuple[int, int]:
        """``(p, q)`` as Python ints: for handing to worker processes of the key holder."""
        return int(self._crt.p), int(self._crt.q)

    def __repr__(self) -> str:
        return (
            f"PrivateKey(bits={self._public_key.bits}, fingerprint={self._public_key.fingerprint})"
        )

    def raw_decrypt(self, ciphertexts: list[Any]) -> list[Any]:
        """Residues of raw ciphertexts, each checked to be a unit below ``n^2``."""
        g = gmpy2()
        nsq, n = self._public_key.nsq, self._public_key.n
        out = []
        for c in ciphertexts:
            c = g.mpz(c)
            if not 0 < c < nsq or g.gcd(c, n) != 1:
                raise InvalidCiphertext()
            out.append(primitives.raw_decrypt(c, self._crt))
        return out


@dataclass(frozen=True, slots=True)
class PaillierKeypair:
    """A public key and its private key."""

    public_key: PublicKey
    private_key: PrivateKey

    @classmethod
    def generate(
        cls, bits: int = DEFAULT_KEY_BITS, *, allow_small: bool = False
    ) -> PaillierKeypair:
        """A fresh keypair with an ``n`` of exactly ``bits`` bits; keys under
        :data:`MIN_KEY_BITS` are refused unless ``allow_small`` (tests only)."""
        if bits % 2 or bits < 128:
            raise ValueError(f"key size must be an even number of bits >= 128, got {bits}")
        if bits < MIN_KEY_BITS and not allow_small:
            raise ValueError(
                f"a {bits}-bit key is too weak: use at least {MIN_KEY_BITS} bits "
                "(allow_small=True is for tests only)"
            )
        p, q = primitives.generate_primes(bits)
        public = PublicKey(p * q)
        return cls(public_key=public, private_key=PrivateKey(public, p, q))
