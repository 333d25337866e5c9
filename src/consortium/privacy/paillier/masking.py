"""Additive masks, so that the key holder can decrypt a value without learning it.

The vertical protocols send encrypted gradients to the arbiter, who holds the private key.
The owner of a gradient first adds a mask drawn uniformly from Z_n (a one-time pad over the
plaintext group): the arbiter decrypts ``value + mask mod n``, which is uniform and
independent of the value, returns it, and only the owner can subtract the mask. This is
the masking step of Hardy et al., "Private federated learning on vertically partitioned
data via entity resolution and additively homomorphic encryption", arXiv:1711.10677, 2017.

Packed before masking: given a public bound ``B`` on the encoded values (one that whoever
sees the ciphertexts could compute too, and that the array's own proven bound,
``EncryptedArray.bound``, must not exceed), the owner first packs its ciphertexts several
to one by Horner's rule (``[[P]] = [[v_0 + B]] * ([[v_1 + B]] * ...^(2^W))^(2^W)``, slots of
``W`` bits with ``2B < 2^W``, so no slot carries into the next and ``P < n``), then masks
each packed ciphertext with its own uniform element of Z_n. The key holder still sees only
uniform residues, fewer of them: one decryption, the costly part, per ``floor((|n| - 1) /
W)`` values, against ``W`` squarings per value to pack. The layout comes from ``B`` and the
number of values alone, so the count of ciphertexts reveals nothing about the values (a
bound derived from the values would: their magnitude moves ``W``). Without ``B`` every
value is masked on its own. The bound is proven, so no slot should overflow; unmasking
still checks each slot against ``[0, 2B]`` and the bits above the last one, which catches
most values that would have broken it.

The masked array is re-randomised when serialised (it is ``derived``), so the arbiter
cannot link it to ciphertexts it saw before either.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from consortium.privacy.paillier._gmp import gmpy2
from consortium.privacy.paillier.arrays import EncryptedArray
from consortium.privacy.paillier.encoding import Encoding, from_residues, object_array
from consortium.privacy.paillier.errors import EncodingOverflow

if TYPE_CHECKING:
    from consortium.privacy.paillier.keys import PublicKey

__all__ = ["Mask", "mask"]


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class Mask:
    """The secret half of a masking: stays with the party that drew it, never sent.
    ``wire_shape`` is the shape of the residues the key holder returns: ``(count,)`` packed
    ciphertexts, or ``shape`` (the values') when not packed."""

    public_key: PublicKey
    exponent: int
    shape: tuple[int, ...]
    wire_shape: tuple[int, ...]
    masks: list[int]  # one uniform element of Z_n per residue
    width: int = 0  # bits per slot; 0: one value per residue
    per: int = 1  # values per residue
    offset: int = 0  # the bound B added to every packed value

    def __repr__(self) -> str:
        return f"Mask(shape={self.shape}, key={self.public_key.fingerprint})"

    def unmask_encoded(self, decrypted: Any) -> np.ndarray:
        """The exact signed integers from the residues the key holder decrypted."""
        arr = np.asarray(decrypted, dtype=object)
        if arr.shape != self.wire_shape:
            raise ValueError(
                f"expected decrypted residues of shape {self.wire_shape}, got {arr.shape}"
            )
        n = int(self.public_key.n)
        plain = [(int(d) - r) % n for d, r in zip(arr.ravel().tolist(), self.masks, strict=True)]
        if not self.width:
            return object_array(from_residues(plain, n), self.shape)
        size, width, per, offset = math.prod(self.shape), self.width, self.per, self.offset
        slot, values = (1 << width) - 1, []
        for k, p in enumerate(plain):
            count = min(per, size - k * per)
            if p >> (width * count):
                raise EncodingOverflow("a packed value overflowed its slot")
            for j in range(count):
                v = (p >> (width * j)) & slot
                if v > 2 * offset:
                    raise EncodingOverflow("a packed value overflowed its slot")
                values.append(v - offset)
        return object_array(values, self.shape)

    def unmask(self, decrypted: Any) -> np.ndarray:
        """The float64 values from the residues the key holder decrypted."""
        return Encoding.decode(self.unmask_encoded(decrypted), self.exponent)


def mask(encrypted: EncryptedArray, *, bound: int | None = None) -> tuple[EncryptedArray, Mask]:
    """``(encrypted + mask, mask)``: the values, packed by the public ``bound`` when given
    (at least the array's proven bound, :class:`EncodingOverflow` otherwise), each
    ciphertext with a fresh uniform mask in Z_n. Send the first to the key holder, who
    returns ``decrypt_residues`` of it; keep the second to ``unmask`` what comes back."""
    public = encrypted.public_key
    n, nsq = int(public.n), public.nsq
    cts = encrypted.ciphertext_list()
    width, per, offset = 0, 1, 0
    if bound is not None:
        if bound < 0:
            raise ValueError(f"bound must be non-negative, got {bound}")
        if encrypted.bound is None or encrypted.bound > bound:
            have = "unknown" if encrypted.bound is None else f"{encrypted.bound.bit_length()} bits"
            raise EncodingOverflow(
                f"the values' proven bound ({have}) exceeds the public bound they are packed "
                f"by ({int(bound).bit_length()} bits)"
            )
        width, per = _layout(bound, public.bits, len(cts))
        offset = bound if width else 0
    cts, offsets = _pack(cts, width, per, offset, nsq)  # unpacked: (0, 1), as they are
    residues = [secrets.randbelow(n) for _ in cts]
    hidden = [
        c * (1 + (r + o) % n * n) % nsq for c, r, o in zip(cts, residues, offsets, strict=True)
    ]
    wire = (len(hidden),) if width else encrypted.shape
    masked = EncryptedArray(
        public,
        object_array(hidden, wire),
        exponent=encrypted.exponent,
        encoding=encrypted.encoding,
        bound=None,  # uniform over Z_n: nothing to bound
        derived=True,
    )
    secret = Mask(public, encrypted.exponent, encrypted.shape, wire, residues, width, per, offset)
    return masked, secret


def _layout(bound: int, key_bits: int, size: int) -> tuple[int, int]:
    """(bits per slot, values per packed ciphertext) for values of magnitude at most
    ``bound``, or (0, 1) where packing would not save a ciphertext."""
    width = max(1, (2 * bound).bit_length())  # v + B in [0, 2B] fits
    per = (key_bits - 1) // width  # P < 2^(W per) <= 2^(bits - 1) <= n
    return (width, per) if size >= 2 and per >= 2 else (0, 1)


def _pack(
    cts: list[Any], width: int, per: int, offset: int, nsq: Any
) -> tuple[list[Any], list[int]]:
    """Groups of ``per`` ciphertexts packed into one (slot ``j`` shifted by ``j * width``
    bits), with the plaintext each must still have added: ``offset`` in every slot."""
    powmod = gmpy2().powmod
    shift = 1 << width
    packed, offsets = [], []
    for start in range(0, len(cts), per):
        group = cts[start : start + per]
        acc = group[-1]
        for c in reversed(group[:-1]):
            acc = powmod(acc, shift, nsq) * c % nsq
        packed.append(acc)
        offsets.append(offset * sum(1 << (width * j) for j in range(len(group))))
    return packed, offsets
