"""Ciphertexts, public keys and residues as numeric tensors for the wire.

The wire carries only numeric tensors (DESIGN rule 1), so every big integer travels as a
fixed-width big-endian row of bytes: a ciphertext array of shape ``s`` becomes a
``uint8`` array of shape ``s + (width,)`` with ``width = ceil(bits(n^2) / 8)`` (512 bytes
for a 2048-bit key); a public key is ``n`` in ``ceil(bits(n) / 8)`` bytes. Exponents,
shapes and counts travel as message metadata.

Loading is strict: dtype, shape and width are checked, every ciphertext must satisfy
``0 < c < n^2`` and ``gcd(c, n) = 1`` (a non-unit would make a decryption oracle leak the
factors), and any failure raises the one opaque
:class:`~consortium.privacy.paillier.InvalidCiphertext`. Public keys are checked for the
obvious flaws (size, parity, small factors, squares, primes) and raise
:class:`InvalidPublicKey`, which may say what is wrong: the key is public.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from consortium.privacy.paillier._gmp import gmpy2
from consortium.privacy.paillier.arrays import EncryptedArray
from consortium.privacy.paillier.encoding import Encoding, object_array
from consortium.privacy.paillier.errors import InvalidCiphertext, InvalidPublicKey
from consortium.privacy.paillier.keys import MIN_KEY_BITS, PublicKey
from consortium.privacy.paillier.obfuscators import ObfuscatorPool
from consortium.privacy.paillier.packing import PackedArray, Packing
from consortium.privacy.paillier.rows import join_rows, split_rows

__all__ = [
    "ciphertexts_from_array",
    "ciphertexts_to_array",
    "integers_from_array",
    "integers_to_array",
    "packed_from_array",
    "packed_to_array",
    "public_key_from_array",
    "public_key_to_array",
    "residues_from_array",
    "residues_to_array",
]

# Product of the odd primes below 1000: one gcd rejects moduli with a small factor (a
# real key's factors have 1024 bits; a tiny one means a forged or broken key).
_SMALL_PRIMES_PRODUCT = math.prod(
    p for p in range(3, 1000, 2) if all(p % d for d in range(3, math.isqrt(p) + 1, 2))
)


# ----- raw integers ------------------------------------------------------------------
def integers_to_array(values: Any, width: int) -> np.ndarray:
    """Non-negative integers (any shape) as big-endian ``uint8`` rows of ``width`` bytes."""
    arr = np.asarray(values, dtype=object)
    try:
        raw = join_rows(arr.ravel().tolist(), width)
    except OverflowError as exc:  # negative, or too wide
        raise ValueError(f"an integer does not fit {width} unsigned bytes") from exc
    return np.frombuffer(raw, dtype=np.uint8).reshape((*arr.shape, width)).copy()


def integers_from_array(arr: Any, width: int) -> np.ndarray:
    """The inverse of :func:`integers_to_array`, an object array of gmpy2 integers;
    :class:`InvalidCiphertext` for anything but a ``uint8`` array of ``width``-byte rows."""
    if not isinstance(arr, np.ndarray) or arr.dtype != np.uint8 or arr.ndim < 1:
        raise InvalidCiphertext()
    if arr.shape[-1] != width or width < 1:
        raise InvalidCiphertext()
    items = split_rows(np.ascontiguousarray(arr).tobytes(), width)
    return object_array(items, arr.shape[:-1])


# ----- ciphertexts -------------------------------------------------------------------
def ciphertexts_to_array(
    encrypted: EncryptedArray,
    *,
    rerandomize: bool | None = None,
    obfuscators: ObfuscatorPool | None = None,
) -> np.ndarray:
    """An encrypted array as ``uint8`` of shape ``encrypted.shape + (width,)``; send
    ``encrypted.exponent`` alongside. ``rerandomize`` defaults to ``encrypted.derived``:
    results computed from someone else's ciphertexts get fresh randomness before they leave
    (from ``obfuscators`` when given)."""
    if encrypted.derived if rerandomize is None else rerandomize:
        encrypted = encrypted.rerandomize(obfuscators)
    return integers_to_array(encrypted.ciphertexts, encrypted.public_key.ciphertext_bytes)


def _ciphertexts(public_key: PublicKey, arr: Any) -> np.ndarray:
    """The ciphertexts in ``arr``, each checked to be a unit of Z_{n^2}^*. One gcd for all
    of them: ``c`` is a unit mod n^2 exactly when ``c mod n`` is a unit mod n, and a product
    is a unit exactly when each factor is (a gcd costs ~10 products)."""
    cts = integers_from_array(arr, public_key.ciphertext_bytes)
    g = gmpy2()
    n, nsq = public_key.n, public_key.nsq
    product = g.mpz(1)
    for c in cts.ravel().tolist():
        if not 0 < c < nsq:
            raise InvalidCiphertext()
        product = product * c % n
    if g.gcd(product, n) != 1:
        raise InvalidCiphertext()
    return cts


def ciphertexts_from_array(
    public_key: PublicKey,
    arr: Any,
    *,
    exponent: int,
    encoding: Encoding | None = None,
    bound: int | None = None,
) -> EncryptedArray:
    """Load and validate ciphertexts serialised by :func:`ciphertexts_to_array`. ``bound``,
    when the protocol guarantees one, restores early overflow checks."""
    if not 0 <= exponent <= 65_536:  # a hostile exponent must not make decoding explode
        raise InvalidCiphertext()
    cts = _ciphertexts(public_key, arr)
    return EncryptedArray(public_key, cts, exponent=exponent, encoding=encoding, bound=bound)


def packed_to_array(packed: PackedArray) -> np.ndarray:
    """A packed array's ciphertexts as ``uint8`` of shape ``(ciphertexts, width)``."""
    return integers_to_array(packed.ciphertexts, packed.public_key.ciphertext_bytes)


def packed_from_array(
    public_key: PublicKey, arr: Any, *, packing: Packing, shape: tuple[int, ...], count: int = 1
) -> PackedArray:
    """Load and validate a packed array serialised by :func:`packed_to_array`."""
    cts = _ciphertexts(public_key, arr)
    if cts.ndim != 1:
        raise InvalidCiphertext()
    try:
        return PackedArray(
            public_key, cts.tolist(), packing=packing, shape=tuple(shape), count=count
        )
    except ValueError as exc:
        raise InvalidCiphertext() from exc


# ----- decrypted residues (masked values) ---------------------------------------------
def residues_to_array(public_key: PublicKey, residues: Any) -> np.ndarray:
    """Residues in ``[0, n)`` (e.g. masked decryptions) as ``uint8`` rows of n's width."""
    return integers_to_array(residues, public_key.plaintext_bytes)


def residues_from_array(public_key: PublicKey, arr: Any) -> np.ndarray:
    """Load residues serialised by :func:`residues_to_array`, each checked below ``n``."""
    out = integers_from_array(arr, public_key.plaintext_bytes)
    n = public_key.n
    if any(not 0 <= v < n for v in out.ravel().tolist()):
        raise InvalidCiphertext()
    return out


# ----- public keys ---------------------------------------------------------------------
def public_key_to_array(public_key: PublicKey) -> np.ndarray:
    """``n`` as a 1-D ``uint8`` big-endian array of ``bits / 8`` bytes."""
    return integers_to_array([public_key.n], public_key.plaintext_bytes)[0]


def public_key_from_array(arr: Any, *, min_bits: int = MIN_KEY_BITS) -> PublicKey:
    """Load a public key and reject malformed or weak moduli (:class:`InvalidPublicKey`)."""
    if not isinstance(arr, np.ndarray) or arr.dtype != np.uint8 or arr.ndim != 1:
        raise InvalidPublicKey("a public key must be a 1-D uint8 array")
    g = gmpy2()
    n = g.mpz.from_bytes(np.ascontiguousarray(arr).tobytes(), "big")
    bits = int(n.bit_length())
    if bits < min_bits:
        raise InvalidPublicKey(f"the key has {bits} bits, fewer than the {min_bits} required")
    if (bits + 7) // 8 != arr.shape[0]:
        raise InvalidPublicKey("the key is not in its minimal width (leading zero bytes)")
    if n % 2 == 0 or g.gcd(n, _SMALL_PRIMES_PRODUCT) != 1:
        raise InvalidPublicKey("the modulus has a small factor")
    if g.is_square(n) or g.is_prime(n):
        raise InvalidPublicKey("the modulus is not a product of two distinct primes")
    return PublicKey(n)
