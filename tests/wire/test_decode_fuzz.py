"""The decoder under fuzzing: for any bytes, ``decode`` returns a Message or raises our
DecodeError, never anything else; what it accepts is sane and survives a round trip.

10,000 cases in CI (the ``decode-fuzz`` profile below; ``CONSORTIUM_FUZZ_EXAMPLES`` changes
the count). Inputs come from four sources, so both the framing and the deep header checks
are reached: valid messages with bytes flipped, inserted, cut or overwritten; headers
assembled from valid and hostile values; raw bytes behind a valid prefix; raw bytes. For hours of coverage-guided fuzzing, see ``fuzz/fuzz_decode.py``.
"""

from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from consortium.errors import DecodeError
from consortium.wire import ALLOWED_DTYPES, Limits, Message, decode, encode

settings.register_profile(
    "decode-fuzz",
    max_examples=int(os.environ.get("CONSORTIUM_FUZZ_EXAMPLES", "10000")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FUZZ = settings.get_profile("decode-fuzz")

_PREFIX = struct.Struct("<3sBI")
_TIGHT = Limits(
    max_message_bytes=8192,
    max_header_bytes=2048,
    max_tensors=4,
    max_ndim=4,
    max_meta_items=4,
    max_string_bytes=32,
)
LIMITS = st.sampled_from([Limits(), _TIGHT])

# -- sources of input ----------------------------------------------------------------------
# Drawing is kept cheap (10,000 cases must run in CI): valid messages and hostile values come
# from pools built once; Hypothesis picks from them and decides how to break them.


def _pool_of_messages() -> list[bytes]:
    rng = np.random.default_rng(0)
    dtypes = sorted(ALLOWED_DTYPES)
    pool = []
    for i in range(64):
        tensors = {}
        for j in range(i % 4):
            dt = np.dtype(dtypes[(i + j) % len(dtypes)])
            shape = tuple(int(d) for d in rng.integers(0, 4, size=(i + j) % 4))
            raw = rng.integers(0, 256, size=dt.itemsize * int(np.prod(shape)), dtype=np.uint8)
            tensors[f"t{j}" if i % 5 else ""] = raw.view(dt).reshape(shape)
        meta = {"m": "v" * (i % 40), "n": i, "f": i / 7, "b": bool(i % 2)}
        msg = Message(
            kind="fit" * (i % 3),
            sender=f"party-{i}",
            receiver="hub",
            job="job:0123" if i % 2 else "",
            round=i,
            seq=2**62 if i == 7 else i,
            meta=dict(list(meta.items())[: i % 5]),
            tensors=tensors,
        )
        pool.append(encode(msg))
    return pool


MESSAGES = _pool_of_messages()
HOSTILE: list[object] = [
    None,
    True,
    -1,
    1.5,
    float("nan"),
    2**63,
    2**64,
    10**30,
    "",
    "x" * 40,
    "é\ud800",
    [],
    [1, [2, [3, [4]]]],
    {},
    {"a": {"b": 1}},
    {"a": [1]},
    {"a": None},
    [[]],
    [None],
    ["t", "<f4", [1], 0, 4],
    [["t", "<f4", [1], 0, 4]],
    [["t", "<f4", [2**62, 2**62], 0, 0]],
    [["t", "O", [1], 0, 8]],
    [["t", "<f4", [1] * 40, 0, 4]],
    [["t", "<f4", [-1], 0, 4]],
    [["t", "<f4", [1], 63, 4]],
    [["t", "<f4", [1], 2**40, 4]],
    [["t", "<f4", [0, 2**70], 0, 0]],
    [["t", "<f4", [1], 0, 4], ["t", "<f4", [1], 0, 4]],
]
VALID = {
    "kind": "fit",
    "sender": "a",
    "receiver": "b",
    "job": "j",
    "round": 1,
    "seq": 2,
    "meta": {"k": 1},
    "tensors": [["t", "<f8", [2], 0, 16]],
}
HOSTILE_BODIES = [
    b"[" * 5_000 + b"]" * 5_000,
    b'{"meta":' + b'{"a":' * 3_000 + b"1" + b"}" * 3_001,
    b'{"round":' + b"1" * 5_000 + b"}",
    b'{"round": 1e400}',
    b'{"kind": "a", "kind": "b"}',
    b"\xff\xfe{}",
    b"",
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid encoding with bytes flipped, inserted, cut off or overwritten."""
    buf = bytearray(draw(st.sampled_from(MESSAGES)))
    for _ in range(draw(st.sampled_from([0, 1, 1, 2, 3, 6]))):
        op = draw(st.integers(0, 4))
        pos = draw(st.integers(0, max(len(buf) - 1, 0)))
        if op == 0 and buf:
            buf[pos] ^= draw(st.integers(1, 255))
        elif op == 1:
            buf[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == 2:
            del buf[pos : pos + draw(st.integers(1, 8))]
        elif op == 3:
            del buf[pos:]
        else:
            value = draw(st.sampled_from([0, 1, 63, 64, 2**31, 2**32 - 1]))
            buf[pos : pos + 4] = struct.pack("<I", value)
    return bytes(buf)


@st.composite
def assembled(draw: st.DrawFn) -> bytes:
    """A header built field by field: each valid, hostile or missing; then a payload."""
    header: dict[str, object] = {}
    for key, good in VALID.items():
        choice = draw(st.integers(0, 19))
        if choice < 16:
            header[key] = good
        elif choice < 19:
            header[key] = draw(st.sampled_from(HOSTILE))
    if draw(st.integers(0, 9)) == 0:
        header["extra"] = 1  # an unknown field
    body = json.dumps(header).encode()
    if draw(st.integers(0, 19)) == 0:
        body = draw(st.sampled_from(HOSTILE_BODIES))
    declared = len(body) if draw(st.integers(0, 3)) else draw(st.integers(0, 2**32 - 1))
    head = _PREFIX.pack(b"CSM", 1, declared) + body
    payload = draw(st.sampled_from([b"", bytes(16), bytes(64)])) + draw(st.binary(max_size=16))
    return head + bytes(-len(head) % 64) + payload


prefixed = st.builds(
    lambda n, rest: _PREFIX.pack(b"CSM", 1, n) + rest,
    st.integers(0, 2**32 - 1),
    st.binary(max_size=128),
)
inputs = st.one_of(mutated(), assembled(), prefixed, st.binary(max_size=128))


# -- the property ------------------------------------------------------------------------


@pytest.mark.slow
@FUZZ
@given(inputs, LIMITS, st.booleans())
def test_decode_returns_a_message_or_raises_decode_error(buf, limits, writable):
    data = bytearray(buf) if writable else buf
    try:
        msg = decode(data, limits=limits)
    except DecodeError:
        event("refused")
        return
    event("decoded")
    assert isinstance(msg, Message)
    for value in (msg.kind, msg.sender, msg.receiver, msg.job):
        assert isinstance(value, str) and len(value) <= limits.max_string_bytes
    assert 0 <= msg.round < 2**63 and 0 <= msg.seq < 2**63
    assert len(msg.meta) <= limits.max_meta_items
    assert len(msg.tensors) <= limits.max_tensors
    whole = np.frombuffer(data, dtype=np.uint8)
    for arr in msg.tensors.values():
        assert arr.dtype.str in ALLOWED_DTYPES and arr.ndim <= limits.max_ndim
        if arr.nbytes:
            assert np.shares_memory(arr, whole)  # a view of what arrived, never a copy
    again = decode(encode(msg), limits=Limits())  # what is accepted can be sent on unchanged
    assert (again.kind, again.sender, again.receiver, again.job) == (
        msg.kind,
        msg.sender,
        msg.receiver,
        msg.job,
    )
    assert (again.round, again.seq) == (msg.round, msg.seq)
    for name, arr in msg.tensors.items():
        assert again.tensors[name].tobytes() == arr.tobytes()
