"""Fixed-point encoding of real values as Paillier plaintexts, with overflow detection.

A real ``x`` at exponent ``e`` is the integer ``round(x * 2^e)``: ``e`` fractional bits, a
resolution of ``2^-e``. Products add exponents (``x * y`` is stored at ``e_x + e_y``), sums
align them. Signed integers live in Z_n around n/2: ``v`` is stored as ``v mod n``, the
residues ``[0, max_int]`` read as non-negative, ``[n - max_int, n)`` as negative, with
``max_int = n // 3`` (see :func:`max_int`). The middle band between them is never a valid
result: a sum or product that leaves the representable range by less than a third of n
lands there and decrypts to :class:`~consortium.privacy.paillier.EncodingOverflow`
instead of a wrong number. Encrypted arrays also carry a proven bound on their values, so
most overflows are caught before any decryption (see ``EncryptedArray.bound``).
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from consortium.privacy.paillier.errors import EncodingOverflow

__all__ = ["Encoding", "from_residues", "max_abs", "max_int", "object_array", "to_residues"]

_INT64_SAFE = float(2**62)  # below this a float64 converts to int64 without overflow


def max_int(n: Any) -> int:
    """The largest magnitude of a signed value under modulus ``n``: ``n // 3``. A third, not
    a half: the band ``(n // 3, n - n // 3)`` stays free so that results which overflow by
    a moderate amount are detected instead of wrapping silently."""
    return int(n) // 3


def object_array(items: Sequence[Any], shape: tuple[int, ...]) -> np.ndarray:
    """A numpy object array of ``shape`` holding ``items`` in C order."""
    flat = np.empty(len(items), dtype=object)
    flat[:] = list(items)
    return flat.reshape(shape)


def max_abs(ints: Iterable[Any]) -> int:
    """The largest magnitude among integers (0 for none)."""
    return max((abs(int(v)) for v in ints), default=0)


def to_residues(ints: Iterable[Any], n: Any) -> list[Any]:
    """Signed integers as residues mod ``n``; EncodingOverflow if one exceeds ``max_int``."""
    limit = max_int(n)
    out = []
    for v in ints:
        if abs(v) > limit:
            raise EncodingOverflow(
                f"a value needs {int(abs(v)).bit_length()} bits but this key holds at most "
                f"{limit.bit_length() - 1}: lower the precision or use a larger key"
            )
        out.append(v % n)
    return out


def from_residues(residues: Iterable[Any], n: Any) -> list[int]:
    """Residues mod ``n`` as signed integers; EncodingOverflow for the middle band."""
    limit = max_int(n)
    nn = int(n)
    out = []
    for m in residues:
        m = int(m)
        if m <= limit:
            out.append(m)
        elif m >= nn - limit:
            out.append(m - nn)
        else:
            raise EncodingOverflow(
                "a decrypted result lies outside the representable range (it overflowed): "
                "lower the precision, scale the data down, or use a larger key"
            )
    return out


@dataclass(frozen=True, slots=True)
class Encoding:
    """Fixed-point encoding with ``precision`` fractional bits (resolution ``2^-precision``).
    32 bits keep about 9 decimal places of a value near 1 while keeping the exponents of
    ciphertext-times-plaintext products (whose cost grows with their length) short."""

    precision: int = 32

    def __post_init__(self) -> None:
        if not 0 <= self.precision <= 4096:
            raise ValueError(f"precision must be in [0, 4096] bits, got {self.precision}")

    def encode(self, values: Any, exponent: int | None = None) -> np.ndarray:
        """``round(values * 2^exponent)`` (``exponent`` defaults to ``precision``) as an
        object array of Python ints: integers exactly, floats to the nearest multiple of
        ``2^-exponent``; :class:`EncodingOverflow` for non-finite values."""
        e = self.precision if exponent is None else exponent
        if e < 0:
            raise ValueError(f"exponent must be non-negative, got {e}")
        arr = np.asarray(values)
        if arr.dtype.kind in "iub":
            ints = [int(v) << e for v in arr.ravel().tolist()]
        elif arr.dtype.kind == "f":
            ints = _encode_floats(arr.astype(np.float64, copy=False), e)
        elif arr.dtype.kind == "O":
            ints = [_encode_one(v, e) for v in arr.ravel().tolist()]
        else:
            raise TypeError(f"cannot encode values of dtype {arr.dtype}: pass numbers")
        return object_array(ints, arr.shape)

    @staticmethod
    def decode(ints: Any, exponent: int) -> np.ndarray:
        """Signed integers at ``exponent`` as float64, correctly rounded."""
        arr = np.asarray(ints, dtype=object)
        scale = 1 << exponent
        try:
            flat = [int(v) / scale for v in arr.ravel().tolist()]
        except OverflowError as exc:
            raise EncodingOverflow("a decrypted value is too large for a float64") from exc
        return np.asarray(flat, dtype=np.float64).reshape(arr.shape)


def _encode_floats(arr: np.ndarray, e: int) -> list[int]:
    with np.errstate(over="ignore", invalid="ignore"):
        scaled = np.rint(np.ldexp(arr, e))
    if not np.all(np.isfinite(scaled)):
        raise EncodingOverflow(
            "cannot encode a non-finite value (or one too large at this precision)"
        )
    if scaled.size == 0 or float(np.max(np.abs(scaled))) < _INT64_SAFE:
        return [int(v) for v in scaled.astype(np.int64).ravel().tolist()]
    return [int(v) for v in scaled.ravel().tolist()]


def _encode_one(v: Any, e: int) -> int:
    if isinstance(v, numbers.Integral):  # Python, numpy and gmpy2 integers: exact
        return int(v) << e
    return _encode_floats(np.asarray([float(v)]), e)[0]
