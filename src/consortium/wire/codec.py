"""Binary codec for :class:`Message`: a typed, versioned header plus raw tensor buffers.

Layout (all integers little-endian)::

    b"CSM" | version:u8 | header_len:u32 | header (UTF-8 JSON) | padding | tensor buffers

The header is JSON *data* (never code): envelope fields, metadata scalars, and for each
tensor its name, dtype string (byte order explicit, from an allow-list), shape, offset and
length. Each tensor starts on a 64-byte boundary, so decoding is zero-copy
(``np.frombuffer`` over the received buffer). Every size is checked against
:class:`Limits` before anything is allocated. Any malformed input raises
:class:`~consortium.errors.DecodeError` and nothing else.

What the decoder refuses: a bad magic or version; a header over ``max_header_bytes`` or
past the end; a header that is not UTF-8 JSON, not an object, or has a repeated or unknown
key; envelope fields of the wrong type or over ``max_string_bytes``; metadata that is not
a bounded object of scalars; more than ``max_tensors`` tensors; a dtype not on
:data:`ALLOWED_DTYPES`; a shape with more than ``max_ndim`` dimensions or a negative or
non-integer one; a length that is not shape x item size; a tensor outside the payload or off
its alignment. ``tests/wire/test_decode_fuzz.py`` and ``fuzz/fuzz_decode.py`` fuzz it.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from consortium.errors import DecodeError
from consortium.wire.envelope import Message, MetaValue

__all__ = ["ALLOWED_DTYPES", "VERSION", "Limits", "decode", "encode", "encode_parts"]

MAGIC = b"CSM"
VERSION = 1
_PREFIX = struct.Struct("<3sBI")
_ALIGN = 64  # cache-line alignment of tensor buffers, also enough for any numpy dtype
_STRINGS = ("kind", "sender", "receiver", "job")  # the envelope's fields, as the header holds them
_INTEGERS = ("round", "seq")
_HEADER_KEYS = frozenset([*_STRINGS, *_INTEGERS, "meta", "tensors"])

# Plain numeric dtypes only: object, void and string dtypes could smuggle structure.
ALLOWED_DTYPES = frozenset(
    [f"|{c}1" for c in "iub"]
    + [f"{o}{c}{n}" for o in "<>" for c, n in [("f", 2), ("f", 4), ("f", 8)]]
    + [f"{o}{c}{n}" for o in "<>" for c in "iu" for n in (2, 4, 8)]
    + [f"{o}c{n}" for o in "<>" for n in (8, 16)]
)


@dataclass(frozen=True, slots=True)
class Limits:
    """Upper bounds enforced before allocation. Raise them for very large models."""

    max_message_bytes: int = 16 * 2**30  # models over 2 GiB must move; 16 GiB bounds memory
    max_header_bytes: int = 1 * 2**20  # JSON header: names, shapes and metadata only
    max_tensors: int = 65_536
    max_ndim: int = 32
    max_meta_items: int = 1_024
    max_string_bytes: int = 64 * 2**10


DEFAULT_LIMITS = Limits()


def _pad(n: int) -> int:
    return (-n) % _ALIGN


def encode_parts(msg: Message) -> tuple[list[memoryview], int]:
    """Encode ``msg`` as a list of buffers (no copy of tensor data) and the total length."""
    entries: list[list[Any]] = []
    payload: list[memoryview] = []
    offset = 0
    for name, tensor in msg.tensors.items():
        arr = np.asarray(tensor, order="C")  # ascontiguousarray would turn 0-d into 1-d
        if arr.dtype.str not in ALLOWED_DTYPES:
            raise TypeError(f"tensor {name!r} has dtype {arr.dtype}, which the wire does not carry")
        entries.append([name, arr.dtype.str, list(arr.shape), offset, arr.nbytes])
        if arr.nbytes:
            payload.append(memoryview(arr.reshape(-1).view(np.uint8)))  # type: ignore[arg-type]
        if _pad(arr.nbytes):
            payload.append(memoryview(bytes(_pad(arr.nbytes))))
        offset += arr.nbytes + _pad(arr.nbytes)
    fields = {key: getattr(msg, key) for key in (*_STRINGS, *_INTEGERS)}
    header = json.dumps(
        {**fields, "meta": dict(msg.meta), "tensors": entries},
        separators=(",", ":"),
        allow_nan=True,
    ).encode()
    head = _PREFIX.pack(MAGIC, VERSION, len(header)) + header
    head += bytes(_pad(len(head)))
    return [memoryview(head), *payload], len(head) + offset


def encode(msg: Message) -> bytes:
    """Encode ``msg`` into one contiguous ``bytes`` object."""
    parts, _ = encode_parts(msg)
    return b"".join(parts)


def decode(buf: bytes | bytearray | memoryview, *, limits: Limits = DEFAULT_LIMITS) -> Message:
    """Decode a buffer produced by :func:`encode`. Tensors are views into ``buf``."""
    try:
        view = memoryview(buf).cast("B")  # TypeError for a buffer that is not contiguous
        return _decode(view, limits)
    except DecodeError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, RecursionError) as exc:
        raise DecodeError(f"malformed message: {exc}") from None


def _decode(view: memoryview, limits: Limits) -> Message:
    total = len(view)
    if total > limits.max_message_bytes:
        raise DecodeError(
            f"message of {total} bytes exceeds the limit of {limits.max_message_bytes}"
        )
    if total < _PREFIX.size:
        raise DecodeError("message shorter than its fixed prefix")
    magic, version, header_len = _PREFIX.unpack_from(view, 0)
    if magic != MAGIC:
        raise DecodeError("not a Consortium message (bad magic)")
    if version != VERSION:
        raise DecodeError(f"unsupported wire version {version}; this build speaks {VERSION}")
    if header_len > limits.max_header_bytes:
        raise DecodeError(
            f"header of {header_len} bytes exceeds the limit of {limits.max_header_bytes}"
        )
    head_end = _PREFIX.size + header_len
    if head_end > total:
        raise DecodeError("header runs past the end of the message")
    try:
        header = json.loads(
            bytes(view[_PREFIX.size : head_end]).decode("utf-8"), object_pairs_hook=_unique
        )
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DecodeError(f"header is not valid UTF-8 JSON: {exc}") from None
    if not isinstance(header, dict):
        raise DecodeError("header is not an object")
    payload_start = head_end + _pad(head_end)
    fields = {key: _field(header, key, limits) for key in (*_STRINGS, *_INTEGERS)}
    meta = _meta(header.get("meta"), limits)
    tensors = _tensors(header.get("tensors"), view, payload_start, limits)
    if set(header) - _HEADER_KEYS:
        raise DecodeError(f"unknown header fields: {sorted(set(header) - _HEADER_KEYS)}")
    return Message(meta=meta, tensors=tensors, **fields)


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are all different: parsers disagree on which repeat wins,
    so a header with one could mean one thing to a relay and another to its receiver."""
    out = dict(pairs)
    if len(out) != len(pairs):
        raise DecodeError("header repeats a key in an object")
    return out


def _show(value: object) -> str:
    """``repr(value)`` cut short: error messages quote what arrived, never all of it."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _field(header: Mapping[str, Any], key: str, limits: Limits) -> Any:
    value = header.get(key)  # JSON gives plain types: ``type(value) is int`` leaves out bool
    if key in _INTEGERS:
        if type(value) is not int or not 0 <= value < 2**63:
            raise DecodeError(f"header field {key!r} must be a non-negative integer")
    elif type(value) is not str or len(value) > limits.max_string_bytes:
        raise DecodeError(f"header field {key!r} must be a string of bounded length")
    return value


def _meta(raw: object, limits: Limits) -> dict[str, MetaValue]:
    if not isinstance(raw, dict) or len(raw) > limits.max_meta_items:
        raise DecodeError("metadata must be an object of bounded size")
    for key, value in raw.items():
        if len(key) > limits.max_string_bytes:
            raise DecodeError(f"a metadata key is longer than {limits.max_string_bytes}")
        if not isinstance(value, str | int | float | bool):
            raise DecodeError(f"metadata {_show(key)} must be a scalar or a string")
        if isinstance(value, str) and len(value) > limits.max_string_bytes:
            raise DecodeError(f"metadata {_show(key)} is longer than {limits.max_string_bytes}")
    return raw


def _tensors(raw: object, view: memoryview, start: int, limits: Limits) -> dict[str, np.ndarray]:
    if not isinstance(raw, list) or len(raw) > limits.max_tensors:
        raise DecodeError("tensor table must be a list of bounded length")
    out: dict[str, np.ndarray] = {}
    available = len(view) - start
    for entry in raw:
        if not isinstance(entry, list) or len(entry) != 5:
            raise DecodeError("tensor entry must be [name, dtype, shape, offset, nbytes]")
        name, dtype, shape, offset, nbytes = entry
        if not isinstance(name, str) or name in out or len(name) > limits.max_string_bytes:
            raise DecodeError("a tensor name is not a string, is repeated or is too long")
        if dtype not in ALLOWED_DTYPES:
            raise DecodeError(
                f"tensor {_show(name)} has a dtype not on the allow-list: {_show(dtype)}"
            )
        if (
            not isinstance(shape, list)
            or len(shape) > limits.max_ndim
            or not all(type(d) is int and d >= 0 for d in shape)
        ):
            raise DecodeError(f"tensor {_show(name)} has an invalid shape")
        if not all(type(v) is int and v >= 0 for v in (offset, nbytes)):
            raise DecodeError(f"tensor {_show(name)} has an invalid offset or length")
        dt = np.dtype(dtype)
        count = math.prod(shape)
        if count * dt.itemsize != nbytes:
            raise DecodeError(
                f"tensor {_show(name)}: shape {_show(shape)} x {dt} is not {nbytes} bytes"
            )
        if offset % _ALIGN or offset + nbytes > available:
            raise DecodeError(f"tensor {_show(name)} lies outside the message")
        arr = np.frombuffer(view, dtype=dt, count=count, offset=start + offset)
        out[name] = arr.reshape(shape)
    return out
