"""The errors Paillier raises on purpose.

Validation and decryption failures share one opaque error, :class:`InvalidCiphertext`, whose
message never says which check failed: a party probing another's key with crafted
ciphertexts learns nothing from the kind of refusal. Range problems of the fixed-point
encoding are not secret (they depend only on values the caller holds) and get their own
typed errors, so a caller can widen the encoding or lower the precision.
"""

from __future__ import annotations

from consortium.errors import ConsortiumError

__all__ = [
    "EncodingOverflow",
    "InvalidCiphertext",
    "InvalidPublicKey",
    "PackingOverflow",
    "PaillierError",
]


class PaillierError(ConsortiumError):
    """Base of the errors raised by :mod:`consortium.privacy.paillier`."""


class InvalidCiphertext(PaillierError):
    """A ciphertext, key or serialised buffer was rejected, or could not be decrypted: the
    same message for every cause, on purpose."""

    def __init__(self) -> None:
        super().__init__(
            "ciphertext rejected: it is malformed, out of range, or not under this key"
        )


class InvalidPublicKey(PaillierError):
    """A public key received from elsewhere is malformed or unsafe. The message says why:
    the key is public, so there is nothing to hide."""


class EncodingOverflow(PaillierError, OverflowError):
    """A value or a result leaves the range the fixed-point encoding can represent: lower
    the precision (fewer fractional bits), scale the data down, or use a larger key."""


class PackingOverflow(EncodingOverflow):
    """A packed slot would overflow: a value is too wide or too many sums were taken. Give
    the packing more ``headroom_bits`` or more ``value_bits``."""
