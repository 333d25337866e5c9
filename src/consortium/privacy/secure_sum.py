"""Secure summation with pairwise masks: the aggregator learns the sum of the parties'
vectors and nothing about any one of them.

Each pair of parties ``(i, j)`` agrees on a secret seed by Diffie-Hellman; for every sum
(identified by a *nonce* that is never reused) both expand the seed into the same uniformly
random mask vector, which ``i`` adds and ``j`` subtracts. The masks cancel in the sum and
nowhere else: each masked vector on its own is uniformly distributed. This is the
"pairwise additive masking" of Bonawitz et al. (2017), "Practical Secure Aggregation for
Privacy-Preserving Machine Learning", ACM CCS, without its secret-sharing of seeds: a party
that drops out in the middle of a sum makes that sum fail (it is reported, never waited for).

Values are encoded exactly in fixed point: a float ``x`` becomes the integer
``round(x * 2**FRACTION_BITS)`` in two's complement modulo ``2**(32 * LIMBS)``, written as
``LIMBS`` limbs of 32 bits, each held in a ``uint64`` lane. Masks are uniform in ``Z_2^64``
per lane. The sum of up to ``2**32`` parties' limbs fits a lane without wrapping, so the
aggregator recovers the exact integer sum and decodes it once: a sum of floats is exact to
``2**-FRACTION_BITS`` and a count is exact.

What each role sees (semi-honest parties that follow the protocol): the aggregator sees the
parties' Diffie-Hellman public keys, uniformly random masked vectors, and the total. A party
sees the other parties' public keys. A coalition of the aggregator and all but one party can
of course subtract its own inputs from the total; any smaller coalition learns nothing about
the others' individual vectors. The aggregator relays the public keys; an aggregator that
*replaces* them (an active attack) is outside this model.

Two tiers: :class:`MaskingParty` (a party's side) and :class:`MaskedSum` (the aggregator's)
over the raw primitives (fixed-point limbs, mask streams, Diffie-Hellman). Every failure on
another party's data raises :class:`SecureSumError`.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping, Sequence

import numpy as np

from consortium.errors import ConsortiumError

__all__ = [
    "DH_GENERATOR",
    "DH_PRIME",
    "FRACTION_BITS",
    "LIMBS",
    "PUBLIC_KEY_BYTES",
    "MaskedSum",
    "MaskingParty",
    "SecureSumError",
    "decode_fixed",
    "dh_public_key",
    "dh_shared_seed",
    "encode_fixed",
    "mask_stream",
]

# The 2048-bit MODP group of RFC 3526 (group 14): a safe prime p = 2q + 1 with generator 2.
# 2048 bits give about 112 bits of security, the floor NIST SP 800-57 sets for use past 2030.
DH_PRIME = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD1"
    "29024E088A67CC74020BBEA63B139B22514A08798E3404DD"
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245"
    "E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3D"
    "C2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F"
    "83655D23DCA3AD961C62F356208552BB9ED529077096966D"
    "670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9"
    "DE2BCBF6955817183995497CEA956AE515D2261898FA0510"
    "15728E5A8AACAA68FFFFFFFFFFFFFFFF",
    16,
)
DH_GENERATOR = 2
PUBLIC_KEY_BYTES = 256
# Private exponents of 256 bits: twice the group's 112-bit security level (RFC 3526, sec. 8).
_EXPONENT_BITS = 256

LIMBS = 5  # 160-bit integers: |values| below 2**95 with 64 fraction bits
FRACTION_BITS = 64  # resolution 2**-64 (5.4e-20): far below a float64 sum's own rounding
_LIMB_BITS = 32
_RING = 1 << (_LIMB_BITS * LIMBS)
_LIMB_MASK = (1 << _LIMB_BITS) - 1
_DOMAIN = b"consortium/secure-sum/v1"


class SecureSumError(ConsortiumError):
    """A key or masked vector from another party is not valid (one opaque error)."""

    def __init__(self) -> None:
        super().__init__("secure summation failed: a key or masked vector was not valid")


def encode_fixed(values: np.ndarray) -> np.ndarray:
    """Floats as fixed-point limbs: shape ``(len(values), LIMBS)``, ``uint64``, each < 2**32.
    ValueError for a value that is not finite or too large to encode."""
    flat = np.asarray(values, dtype=np.float64).ravel()
    out = np.zeros((flat.size, LIMBS), dtype=np.uint64)
    bound = 1 << (_LIMB_BITS * LIMBS - 1)
    for i, x in enumerate(flat.tolist()):
        if not np.isfinite(x):
            raise ValueError(f"cannot encode {x!r}: secure sums take finite numbers only")
        n = round(x * 2.0**FRACTION_BITS)
        if not -bound <= n < bound:
            raise ValueError(f"cannot encode {x!r}: beyond the fixed-point range")
        n %= _RING
        out[i] = [(n >> (_LIMB_BITS * j)) & _LIMB_MASK for j in range(LIMBS)]
    return out


def decode_fixed(limbs: np.ndarray) -> np.ndarray:
    """The floats whose limbs (summed over any number of parties below 2**32) are given."""
    arr = np.asarray(limbs, dtype=np.uint64)
    if arr.ndim != 2 or arr.shape[1] != LIMBS:
        raise ValueError(f"expected limbs of shape (n, {LIMBS}), got {arr.shape}")
    out = np.empty(arr.shape[0], dtype=np.float64)
    for i, row in enumerate(arr.tolist()):
        n = sum(int(v) << (_LIMB_BITS * j) for j, v in enumerate(row)) % _RING
        if n >= _RING // 2:
            n -= _RING
        out[i] = n / 2**FRACTION_BITS  # int / int is correctly rounded
    return out


def mask_stream(seed: bytes, nonce: int, shape: tuple[int, ...]) -> np.ndarray:
    """Uniform ``uint64`` masks expanded from ``seed`` for sum ``nonce`` (SHAKE-256, an
    extendable-output function, as the pseudo-random generator)."""
    count = int(np.prod(shape, dtype=np.int64))
    xof = hashlib.shake_256(_DOMAIN + seed + int(nonce).to_bytes(16, "little", signed=True))
    return np.frombuffer(xof.digest(8 * count), dtype="<u8").astype(np.uint64).reshape(shape)


def dh_public_key(private: int) -> bytes:
    """``g**private mod p`` as big-endian bytes."""
    return pow(DH_GENERATOR, private, DH_PRIME).to_bytes(PUBLIC_KEY_BYTES, "big")


def dh_shared_seed(private: int, peer_public: bytes, pair: tuple[str, str]) -> bytes:
    """The seed two parties share: SHA-256 of their Diffie-Hellman secret and their names
    (in sorted order, so both compute the same). Refuses a public key outside the
    prime-order subgroup (a small-subgroup attack)."""
    if len(peer_public) != PUBLIC_KEY_BYTES:
        raise SecureSumError()
    y = int.from_bytes(peer_public, "big")
    if not 1 < y < DH_PRIME - 1 or pow(y, (DH_PRIME - 1) // 2, DH_PRIME) != 1:
        raise SecureSumError()
    secret = pow(y, private, DH_PRIME).to_bytes(PUBLIC_KEY_BYTES, "big")
    first, second = sorted(pair)
    names = f"{len(first)}:{first}|{len(second)}:{second}".encode()
    return hashlib.sha256(_DOMAIN + secret + names).digest()


class MaskingParty:
    """A party's side of secure summation: after :meth:`agree` with the other parties'
    public keys, :meth:`mask` turns a vector into its masked limbs for one sum. ``private``
    defaults to a fresh secret from the operating system; pass one only in tests."""

    def __init__(self, name: str, *, private: int | None = None) -> None:
        self.name = name
        self._private = private if private is not None else secrets.randbits(_EXPONENT_BITS) | 2
        self.public_key = dh_public_key(self._private)
        self._seeds: dict[str, bytes] = {}

    def agree(self, public_keys: Mapping[str, bytes]) -> None:
        """Derive a seed with every other party named in ``public_keys``."""
        for peer, key in public_keys.items():
            if peer != self.name:
                self._seeds[peer] = dh_shared_seed(self._private, bytes(key), (self.name, peer))

    def mask(self, values: np.ndarray, *, nonce: int, parties: Sequence[str]) -> np.ndarray:
        """``values`` encoded, plus the masks shared with every other party in ``parties``
        (added towards parties named after this one, subtracted towards those before)."""
        limbs = encode_fixed(values)
        for peer in parties:
            if peer == self.name:
                continue
            seed = self._seeds.get(peer)
            if seed is None:
                raise SecureSumError()
            noise = mask_stream(seed, nonce, limbs.shape)
            limbs = limbs + noise if self.name < peer else limbs - noise
        return limbs


class MaskedSum:
    """The aggregator's side: adds masked vectors (modulo 2**64 per lane) and decodes the
    total once every party in the sum has contributed."""

    def __init__(self, *, size: int) -> None:
        self.size = size
        self._total = np.zeros((size, LIMBS), dtype=np.uint64)
        self.count = 0

    def add(self, masked: np.ndarray) -> None:
        arr = np.asarray(masked)
        if arr.dtype != np.uint64 or arr.shape != (self.size, LIMBS):
            raise SecureSumError()
        self._total += arr
        self.count += 1

    def total(self) -> np.ndarray:
        return decode_fixed(self._total)
