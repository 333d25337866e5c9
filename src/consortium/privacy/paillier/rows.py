"""Big integers as fixed-width big-endian byte rows (``width`` bytes, most significant
first), laid end to end in a blob: the form in which ciphertexts, residues and obfuscators
cross the boundary to worker processes (see :mod:`.pool`) and go on the wire (``serial``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from consortium.privacy.paillier._gmp import gmpy2

__all__ = ["join_rows", "split_rows"]


def split_rows(blob: bytes, width: int) -> list[Any]:
    """The gmpy2 integers held by ``blob``, one per ``width``-byte row."""
    from_bytes = gmpy2().mpz.from_bytes
    return [from_bytes(blob[i : i + width], "big") for i in range(0, len(blob), width)]


def join_rows(values: Iterable[Any], width: int) -> bytes:
    """``values`` as ``width``-byte rows, laid end to end; OverflowError for one too wide."""
    return b"".join(int(v).to_bytes(width, "big") for v in values)
