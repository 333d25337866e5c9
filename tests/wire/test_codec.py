"""Property tests of the codec: exact round trips, decoding without copies, and a bounded
fuzz showing that ``decode`` returns a Message or raises DecodeError, for any input."""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from consortium.errors import DecodeError
from consortium.wire import ALLOWED_DTYPES, Limits, Message, decode, encode, encode_parts

names = st.text(max_size=12)
meta_values = st.one_of(
    st.text(max_size=24),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
)
dtypes = st.sampled_from(sorted(ALLOWED_DTYPES)).map(np.dtype)
shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)


@st.composite
def tensors(draw: st.DrawFn) -> np.ndarray:
    arr = draw(hnp.arrays(dtype=dtypes, shape=shapes))
    if arr.ndim and draw(st.booleans()):  # a strided view: the encoder must compact it
        arr = arr[::2]
    return arr


messages = st.builds(
    Message,
    kind=names,
    sender=names,
    receiver=names,
    job=names,
    round=st.integers(min_value=0, max_value=2**63 - 1),
    seq=st.integers(min_value=0, max_value=2**63 - 1),
    meta=st.dictionaries(names, meta_values, max_size=5),
    tensors=st.dictionaries(names, tensors(), max_size=3),
)


def same_scalar(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return type(a) is type(b) and a == b


def assert_same(got: Message, sent: Message) -> None:
    for field in ("kind", "sender", "receiver", "job", "round", "seq"):
        assert getattr(got, field) == getattr(sent, field), field
    assert got.meta.keys() == sent.meta.keys()
    for key, value in sent.meta.items():
        assert same_scalar(got.meta[key], value), key
    assert got.tensors.keys() == sent.tensors.keys()
    for key, want in sent.tensors.items():
        have = got.tensors[key]
        assert (have.dtype, have.shape) == (want.dtype, want.shape), key
        assert have.tobytes() == np.ascontiguousarray(want).tobytes(), key


# -- round trips ----------------------------------------------------------------------


@settings(max_examples=250, deadline=None)
@given(messages)
def test_every_message_round_trips_exactly(msg):
    assert_same(decode(encode(msg)), msg)


@settings(max_examples=100, deadline=None)
@given(messages)
def test_the_parts_are_the_encoding(msg):
    parts, total = encode_parts(msg)
    assert b"".join(parts) == encode(msg)
    assert sum(len(p) for p in parts) == total


@settings(max_examples=100, deadline=None)
@given(messages)
def test_decoded_tensors_are_views_of_the_buffer(msg):
    buf = bytearray(encode(msg))
    whole = np.frombuffer(buf, dtype=np.uint8)
    got = decode(buf)
    for name, arr in got.tensors.items():
        if arr.nbytes:
            assert np.shares_memory(arr, whole), name
            assert arr.flags.writeable  # a bytearray is the receiver's to change
    frozen = decode(bytes(buf))
    assert all(not arr.flags.writeable for arr in frozen.tensors.values())


@settings(max_examples=100, deadline=None)
@given(tensors())
def test_encoding_does_not_copy_contiguous_tensors(arr):
    msg = Message(kind="k", sender="a", receiver="b", tensors={"t": arr})
    parts, _ = encode_parts(msg)
    shared = any(np.shares_memory(np.frombuffer(p, dtype=np.uint8), arr) for p in parts)
    assert shared == (arr.flags.c_contiguous and arr.nbytes > 0)


def test_a_zero_dimensional_tensor_stays_zero_dimensional():
    msg = Message(kind="k", sender="a", receiver="b", tensors={"t": np.array(2.5, dtype=">f8")})
    got = decode(encode(msg)).tensors["t"]
    assert got.shape == () and got.dtype == np.dtype(">f8") and got[()] == 2.5


# -- fuzz: decode returns a Message or raises DecodeError, nothing else -----------------

_PREFIX = struct.Struct("<3sBI")
_TIGHT = Limits(
    max_message_bytes=4096,
    max_header_bytes=1024,
    max_tensors=3,
    max_ndim=3,
    max_meta_items=3,
    max_string_bytes=16,
)
_DEFAULT = Limits()
limits = st.sampled_from([_DEFAULT, _TIGHT])


def decodes_or_refuses(buf: bytes, limits: Limits = _DEFAULT) -> None:
    try:
        msg = decode(buf, limits=limits)
    except DecodeError as exc:
        event("refused: " + re.sub(r"'.*?'|\d+|\[.*?\]", "_", str(exc))[:48])
        return
    event("decoded")
    assert isinstance(msg, Message)
    for arr in msg.tensors.values():
        assert isinstance(arr, np.ndarray) and arr.dtype.str in ALLOWED_DTYPES
    encode(msg)  # whatever is accepted can be sent on


def split(buf: bytes) -> tuple[dict, bytes]:
    _, _, n = _PREFIX.unpack_from(buf)
    start = _PREFIX.size + n
    return json.loads(buf[_PREFIX.size : start]), buf[start + (-start) % 64 :]


def build(header: object, payload: bytes, header_len: int | None = None) -> bytes:
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    head = _PREFIX.pack(b"CSM", 1, len(text) if header_len is None else header_len) + text
    return head + bytes(-len(head) % 64) + payload


@settings(max_examples=600, deadline=None)
@given(st.binary(max_size=512), limits)
def test_fuzz_random_bytes(buf, limits):
    decodes_or_refuses(buf, limits)


@settings(max_examples=400, deadline=None)
@given(st.integers(min_value=0, max_value=2**32 - 1), st.binary(max_size=512), limits)
def test_fuzz_random_bytes_behind_a_valid_prefix(header_len, rest, limits):
    decodes_or_refuses(_PREFIX.pack(b"CSM", 1, header_len) + rest, limits)


@settings(max_examples=600, deadline=None)
@given(
    messages,
    st.lists(st.tuples(st.integers(min_value=0), st.integers(1, 255)), max_size=8),
    st.one_of(st.none(), st.integers(min_value=0)),
    st.binary(max_size=64),
    limits,
)
def test_fuzz_mutated_messages(msg, flips, cut, tail, limits):
    buf = bytearray(encode(msg))
    for pos, xor in flips:
        buf[pos % len(buf)] ^= xor
    if cut is not None:
        del buf[cut % (len(buf) + 1) :]
    decodes_or_refuses(bytes(buf) + tail, limits)


def _deep(depth: int, opener: str, closer: str, leaf: str = "") -> str:
    return opener * depth + leaf + closer * depth


def _nest_in(header: dict, key: str, raw: str) -> bytes:
    """The header's JSON text with ``key``'s value replaced by the raw text ``raw``."""
    return json.dumps({**header, key: "@@"}).replace('"@@"', raw).encode()


# Each edit turns a valid header (a dict) into a hostile one: a dict to dump, or raw bytes.
Edit = Callable[[dict], object]
HUGE = [2**62, 2**62]
BAD_INTS = [-1, 2**63, 2**64, 1.0, True, "1", None, float("nan")]
BAD_VALUES: dict[int, list[object]] = {  # per field of a tensor entry
    0: [None, 1, ["a"]],
    1: ["O", "|V8", "<U4", "object", "<f16", "=f4", "float32", 5, None, ["<f4"], "|b1 "],
    2: [[-1], [1.5], [True], ["3"], None, "3", [1] * 40, HUGE, [0, 2**70], [2**64], [10**30]],
    3: [-64, 1, 63, 2**40, *BAD_INTS],
    4: [2**62, *BAD_INTS],
}


def _tensor_edit(field: int, value: object) -> Edit:
    def edit(header: dict) -> object:
        header["tensors"] = header["tensors"] or [["t", "<f4", [1], 0, 4]]
        header["tensors"][-1][field] = value
        return header

    return edit


def _field_edit(key: str, value: object) -> Edit:
    def edit(header: dict) -> object:
        header[key] = value
        return header

    return edit


def _nudge_nbytes(delta: int) -> Edit:
    def edit(header: dict) -> object:
        for entry in header["tensors"]:
            entry[4] = max(0, entry[4] + delta)
        return header

    return edit


def _overlap(header: dict) -> object:
    for entry in header["tensors"]:
        entry[3] = 0  # every tensor at the same place: allowed, as long as each one fits
    return header


def _duplicate(header: dict) -> object:
    header["tensors"] = header["tensors"] * 2
    return header


def _reshape_entries(shape: object) -> Edit:
    def edit(header: dict) -> object:
        header["tensors"] = [
            shape(e) if callable(shape) else shape for e in header["tensors"] or [["t"]]
        ]
        return header

    return edit


def _drop(key: str) -> Edit:
    def edit(header: dict) -> object:
        del header[key]
        return header

    return edit


def _raw(key: str | None, text: str) -> Edit:
    def edit(header: dict) -> object:
        return text.encode() if key is None else _nest_in(header, key, text)

    return edit


def _truncated(fraction: float, junk: bytes = b"") -> Edit:
    def edit(header: dict) -> object:
        text = json.dumps(header).encode()
        cut = int(len(text) * fraction)
        return text[:cut] + junk + (text[cut:] if junk else b"")

    return edit


EDITS: list[Edit] = [
    *(_tensor_edit(f, v) for f, values in BAD_VALUES.items() for v in values),
    *(_field_edit(k, v) for k in ("kind", "round") for v in [*BAD_INTS, "x" * 70_000, [], {}]),
    *(_field_edit("meta", v) for v in [[], None, "m", {"a": {"b": 1}}, {"a": [1]}, {"a": None}]),
    *(_field_edit("tensors", v) for v in [{}, "t", None, [[]], [None]]),
    *(_field_edit("extra", v) for v in [1, None]),
    *(_drop(k) for k in ("kind", "seq", "meta", "tensors")),
    _nudge_nbytes(1),
    _nudge_nbytes(-1),
    _nudge_nbytes(64),
    _overlap,
    _duplicate,
    _reshape_entries(lambda e: e[:4]),
    _reshape_entries(lambda e: [*e, 1]),
    _reshape_entries({}),
    *(_raw(None, text) for text in ["[]", "3", '"s"', "null", "{}", ""]),
    *(_raw(None, _deep(d, "[", "]")) for d in (100, 5_000, 200_000)),
    *(_raw(k, _deep(d, '{"a":', "}", "1")) for k in ("meta", "tensors") for d in (50, 100_000)),
    *(_raw(k, _deep(d, "[", "]")) for k in ("meta", "tensors", "kind") for d in (50, 100_000)),
    *(_raw("round", n) for n in ["1e400", "-1e400", "NaN", "Infinity", "1" * 5_000, "-0"]),
    *(_raw("meta", '{"a":' + n + "}") for n in ["1e400", "NaN", "1" * 5_000]),
    *(_raw("tensors", '[["t","<f4",[' + n + "],0,4]]") for n in ["1e400", "NaN", "1" * 5_000]),
    _truncated(0.5),
    _truncated(0.99),
    _truncated(0.3, b"\xff\xfe"),
    _truncated(0.7, b"\x00"),
]


@settings(max_examples=150, deadline=None)
@given(
    messages,
    st.one_of(st.sampled_from([0, 1, 2**20, 2**32 - 1]), st.integers(0, 4096)),
    limits,
)
def test_fuzz_edited_headers(msg, wrong_len, limits):
    # Every edit on every example (Hypothesis would favour the first of a sampled list);
    # each also with a header length that does not match the header.
    buf = encode(msg)
    for edit in EDITS:
        header, payload = split(buf)
        edited = edit(header)
        decodes_or_refuses(build(edited, payload), limits)
        decodes_or_refuses(build(edited, payload, wrong_len), limits)


@pytest.mark.parametrize("shape", [HUGE, [0, 2**70], [2**64], [10**30], [3] * 33], ids=str)
def test_absurd_shapes_are_refused(shape):
    msg = Message(kind="k", sender="a", receiver="b", tensors={"t": np.zeros(4, "<f4")})
    header, payload = split(encode(msg))
    header["tensors"][0][2] = shape
    with pytest.raises(DecodeError):
        decode(build(header, payload))
