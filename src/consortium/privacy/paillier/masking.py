"""Additive masks, so that the key holder can decrypt a value without learning it.

The vertical protocols send encrypted gradients to the arbiter, who holds the private key.
The owner of a gradient first adds a mask drawn uniformly from Z_n (a one-time pad over the
plaintext group): the arbiter decrypts ``value + mask mod n``, which is uniform and
independent of the value, returns it, and only the owner can subtract the mask. This is
the masking step of Hardy et al., "Private federated learning on vertically partitioned
data via entity resolution and additively homomorphic encryption", arXiv:1711.10677, 2017.

The masked array is re-randomised when serialised (it is ``derived``), so the arbiter
cannot link it to ciphertexts it saw before either.
"""

from __future__ import annotations

import secrets
from typing import Any

import numpy as np

from consortium.privacy.paillier.arrays import EncryptedArray
from consortium.privacy.paillier.encoding import Encoding, from_residues, object_array

__all__ = ["Mask", "mask"]


class Mask:
    """The secret half of a masking: stays with the party that drew it, never sent."""

    __slots__ = ("_residues", "exponent", "public_key", "shape")

    def __init__(self, encrypted: EncryptedArray, residues: list[int]) -> None:
        self.public_key = encrypted.public_key
        self.exponent = encrypted.exponent
        self.shape = encrypted.shape
        self._residues = residues

    def __repr__(self) -> str:
        return f"Mask(shape={self.shape}, key={self.public_key.fingerprint})"

    def unmask_encoded(self, decrypted: Any) -> np.ndarray:
        """The exact signed integers from the residues the key holder decrypted."""
        arr = np.asarray(decrypted, dtype=object)
        if arr.shape != self.shape:
            raise ValueError(f"expected decrypted residues of shape {self.shape}, got {arr.shape}")
        n = int(self.public_key.n)
        plain = [
            (int(d) - r) % n for d, r in zip(arr.ravel().tolist(), self._residues, strict=True)
        ]
        return object_array(from_residues(plain, n), self.shape)

    def unmask(self, decrypted: Any) -> np.ndarray:
        """The float64 values from the residues the key holder decrypted."""
        return Encoding.decode(self.unmask_encoded(decrypted), self.exponent)


def mask(encrypted: EncryptedArray) -> tuple[EncryptedArray, Mask]:
    """``(encrypted + mask, mask)`` with a fresh uniform mask in Z_n for every element.

    Send the first to the key holder, who returns ``decrypt_residues`` of it; keep the
    second and call ``unmask`` on what comes back.
    """
    n = int(encrypted.public_key.n)
    residues = [secrets.randbelow(n) for _ in range(encrypted.size)]
    nsq = encrypted.public_key.nsq
    cts = [
        c * (1 + r * n) % nsq for c, r in zip(encrypted.ciphertext_list(), residues, strict=True)
    ]
    masked = EncryptedArray(
        encrypted.public_key,
        object_array(cts, encrypted.shape),
        exponent=encrypted.exponent,
        encoding=encrypted.encoding,
        bound=None,  # uniform over Z_n: nothing to bound
        derived=True,
    )
    return masked, Mask(encrypted, residues)
