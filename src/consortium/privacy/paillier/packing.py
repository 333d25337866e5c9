"""Several fixed-point values per Paillier plaintext, for encrypted sums.

A 2048-bit plaintext has room for far more than one 64-bit value. Packing places values
side by side in slots of ``value_bits + headroom_bits`` bits; adding two packed ciphertexts
adds every slot at once, so encrypting, sending, adding and decrypting a vector cost
``slots`` times less (about 27 for 64-bit values with 12 bits of headroom under a
2048-bit key). The idea is the batching of Ge and Zdonik, "Answering Aggregation Queries
in a Secure System Model", VLDB 2007, also used for gradient aggregation by Zhang et al.,
"BatchCrypt", USENIX ATC 2020.

Each value ``v = round(x * 2^precision)`` with ``|v| < 2^(value_bits-1)`` is stored as
``v + 2^(value_bits-1)`` (non-negative). A slot holding the sum of ``count`` such values
stays below ``count * 2^value_bits``, so up to ``2^headroom_bits`` packed arrays can be
added before a slot could carry into its neighbour; :class:`PackedArray` counts its
summands and raises :class:`~consortium.privacy.paillier.PackingOverflow` before that.
Only additions of packed arrays are allowed: a plaintext multiplication would scale every
slot's offset and overflow the headroom unnoticed.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass
from math import prod
from typing import TYPE_CHECKING, Any

import numpy as np

from consortium.privacy.paillier import primitives
from consortium.privacy.paillier.encoding import Encoding
from consortium.privacy.paillier.errors import InvalidCiphertext, PackingOverflow
from consortium.privacy.paillier.obfuscators import ObfuscatorPool, fresh_obfuscators

if TYPE_CHECKING:
    from consortium.privacy.paillier.keys import PrivateKey, PublicKey

__all__ = ["PackedArray", "Packing", "decrypt_packed", "encrypt_packed"]


@dataclass(frozen=True, slots=True)
class Packing:
    """Slot layout: ``precision`` fractional bits, values of ``value_bits`` bits (sign
    included), ``headroom_bits`` to absorb up to ``2^headroom_bits`` summands."""

    precision: int = 32
    value_bits: int = 64
    headroom_bits: int = 12

    def __post_init__(self) -> None:
        if self.value_bits < 2 or self.headroom_bits < 0 or self.precision < 0:
            raise ValueError("packing needs value_bits >= 2, headroom_bits >= 0 and precision >= 0")

    @property
    def slot_bits(self) -> int:
        return self.value_bits + self.headroom_bits

    @property
    def max_summands(self) -> int:
        """How many packed arrays may be added together."""
        return 1 << self.headroom_bits

    def slots(self, public_key: PublicKey) -> int:
        """Values per ciphertext under ``public_key`` (all slots stay below n)."""
        k = (public_key.bits - 1) // self.slot_bits
        if k < 1:
            raise ValueError(
                f"a {self.slot_bits}-bit slot does not fit a {public_key.bits}-bit key"
            )
        return k


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class PackedArray:
    """Ciphertexts each holding ``packing.slots(key)`` values; the sum of ``count``
    packed vectors of ``shape``. Supports ``+`` with another packed array only."""

    public_key: PublicKey
    ciphertexts: list[Any]
    _: KW_ONLY
    packing: Packing
    shape: tuple[int, ...]
    count: int = 1

    def __post_init__(self) -> None:
        packing, count = self.packing, self.count
        if not 1 <= count <= packing.max_summands:
            raise PackingOverflow(
                f"{count} summands exceed the {packing.headroom_bits} bits of headroom "
                f"({packing.max_summands} at most): give the packing more headroom_bits"
            )
        expected = -(-prod(self.shape) // packing.slots(self.public_key))
        if len(self.ciphertexts) != expected:
            raise ValueError(f"{prod(self.shape)} values need {expected} packed ciphertexts")

    def __repr__(self) -> str:
        return (
            f"PackedArray(shape={self.shape}, ciphertexts={len(self.ciphertexts)}, "
            f"count={self.count}, key={self.public_key.fingerprint})"
        )

    def __add__(self, other: Any) -> PackedArray:
        if not isinstance(other, PackedArray):
            return NotImplemented
        if other.public_key != self.public_key:
            raise ValueError("cannot add packed arrays under different public keys")
        if other.packing != self.packing or other.shape != self.shape:
            raise ValueError("packed arrays must share their packing and shape to be added")
        nsq = self.public_key.nsq
        cts = [
            primitives.raw_add(a, b, nsq)
            for a, b in zip(self.ciphertexts, other.ciphertexts, strict=True)
        ]
        count = self.count + other.count
        return PackedArray(
            self.public_key, cts, packing=self.packing, shape=self.shape, count=count
        )

    def __radd__(self, other: Any) -> PackedArray:
        if isinstance(other, int) and other == 0:  # so that sum(arrays) works
            return self
        return self.__add__(other)

    def unpack(self, residues: list[Any]) -> np.ndarray:
        """The float64 sums held by decrypted ``residues`` (one per ciphertext)."""
        pk, slot = self.packing, self.packing.slot_bits
        k = pk.slots(self.public_key)
        mask = (1 << slot) - 1
        offset = self.count << (pk.value_bits - 1)
        largest = self.count * ((1 << pk.value_bits) - 1)
        total = prod(self.shape)
        sums: list[int] = []
        for m in residues:
            m = int(m)
            if m >> (k * slot):
                raise InvalidCiphertext()
            for i in range(k):
                s = (m >> (i * slot)) & mask
                if len(sums) < total and not self.count <= s <= largest:
                    raise InvalidCiphertext()
                sums.append(s - offset)
        values = np.asarray(sums[:total], dtype=object)
        return Encoding.decode(values, pk.precision).reshape(self.shape)


def encrypt_packed(
    public_key: PublicKey,
    values: Any,
    packing: Packing,
    *,
    obfuscators: ObfuscatorPool | None = None,
) -> PackedArray:
    """Encrypt ``values`` (any shape) packed several per ciphertext, for sums only."""
    ints = Encoding(packing.precision).encode(values)
    limit = 1 << (packing.value_bits - 1)
    flat = ints.ravel().tolist()
    if any(not -limit < v < limit for v in flat):
        raise PackingOverflow(
            f"a value does not fit {packing.value_bits} bits at precision {packing.precision}: "
            "raise value_bits or lower the precision"
        )
    k, slot = packing.slots(public_key), packing.slot_bits
    plains = []
    for start in range(0, len(flat), k):
        m = 0
        for i, v in enumerate(flat[start : start + k]):
            m |= (v + limit) << (i * slot)
        plains.append(m)
    n, nsq = public_key.n, public_key.nsq
    obfs = fresh_obfuscators(public_key, len(plains), obfuscators)
    cts = [primitives.raw_encrypt(m, n, nsq, r) for m, r in zip(plains, obfs, strict=True)]
    return PackedArray(public_key, cts, packing=packing, shape=ints.shape, count=1)


def decrypt_packed(private_key: PrivateKey, packed: PackedArray) -> np.ndarray:
    """The float64 values of ``packed`` (the sums of the packed vectors)."""
    if packed.public_key != private_key.public_key:
        raise InvalidCiphertext()
    return packed.unpack(private_key.raw_decrypt(packed.ciphertexts))
