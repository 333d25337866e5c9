"""The frame format and the bounded send queue, without a network."""

from __future__ import annotations

import struct
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consortium.clock import FakeClock, SystemClock
from consortium.errors import DecodeError, TransportClosed, TransportTimeout
from consortium.transport.grpc_common import Outbox
from consortium.transport.grpc_framing import FIRST, FRAME_OVERHEAD, LAST, Assembler, iter_frames
from consortium.wire import Message, decode, encode, encode_parts


@settings(max_examples=300, deadline=None)
@given(
    parts=st.lists(st.binary(max_size=300), max_size=6),
    chunk=st.integers(min_value=1, max_value=400),
)
def test_frames_reassemble_to_the_parts(parts, chunk):
    whole = b"".join(parts)
    frames = list(iter_frames([memoryview(p) for p in parts], len(whole), chunk))
    assert len(frames) == max(1, -(-len(whole) // chunk))
    assert all(len(f) <= chunk + FRAME_OVERHEAD for f in frames)
    assert frames[0][0] & FIRST and frames[-1][0] & LAST
    assembler = Assembler(max_bytes=len(whole))
    out = [assembler.feed(f) for f in frames]
    assert out[:-1] == [None] * (len(frames) - 1)
    assert out[-1] == whole and not assembler.busy


def test_a_message_survives_framing_and_decodes_as_views_of_one_buffer():
    msg = Message(kind="m", sender="a", receiver="b", tensors={"w": np.arange(1000.0)})
    assembler = Assembler(max_bytes=2**20)
    for frame in iter_frames(*encode_parts(msg), 4096):
        buf = assembler.feed(frame)
    assert buf is not None and bytes(buf) == encode(msg)
    got = decode(buf)
    assert np.array_equal(got.tensors["w"], msg.tensors["w"])
    assert np.shares_memory(got.tensors["w"], np.frombuffer(buf, dtype=np.uint8))


def _first(total: int, payload: bytes = b"", last: bool = False) -> bytes:
    return bytes([FIRST | (LAST if last else 0)]) + struct.pack("<Q", total) + payload


@pytest.mark.parametrize(
    ("frames", "reason"),
    [
        ([b""], "empty frame"),
        ([b"\x04abc"], "unknown flag bits"),
        ([b"\x00abc"], "without a first frame"),
        ([b"\x01abc"], "too short"),
        ([_first(4, b"ab"), _first(4, b"cd")], "began before"),
        ([_first(4, b"ab"), b"\x02abc"], "more than the 4 bytes"),
        ([_first(4, b"ab"), b"\x02c"], "after 3 of its 4"),
        ([_first(4, b"ab"), b"\x00"], "without payload"),
        ([_first(2**62, b"x")], "exceeds the limit of 64"),
    ],
)
def test_bad_frames_are_decode_errors(frames, reason):
    assembler = Assembler(max_bytes=64)
    with pytest.raises(DecodeError, match=reason):
        for frame in frames:
            assembler.feed(frame)


def test_the_buffer_grows_with_the_bytes_that_arrive_not_with_the_declared_total():
    begun: list[int] = []
    assembler = Assembler(max_bytes=2**40, on_begin=begun.append)
    with pytest.raises(DecodeError):
        Assembler(max_bytes=100, on_begin=begun.append).feed(_first(101, b"x"))
    assert begun == []  # refused before anything is reserved or kept
    assert assembler.feed(_first(2**40, b"abc")) is None
    assert begun == [2**40] and assembler.busy and assembler.buffered == 3
    assert assembler.feed(b"\x00" + b"d" * 5) is None
    assert assembler.buffered == 8
    with pytest.raises(DecodeError, match="after 9 of its 1099511627776"):
        assembler.feed(b"\x02e")


def test_a_message_reassembled_from_many_frames_is_exact():
    payload = bytes(range(256)) * 40
    assembler = Assembler(max_bytes=len(payload))
    frames = list(iter_frames([memoryview(payload)], len(payload), 1000))
    *head, last = frames
    assert all(assembler.feed(f) is None for f in head)
    assert assembler.feed(last) == payload and assembler.buffered == 0


# -- the send queue ------------------------------------------------------------------------


def test_the_outbox_blocks_a_producer_while_full():
    box: Outbox[int] = Outbox(capacity=2, clock=SystemClock())
    box.put(1)
    box.put(2)
    entered, done = threading.Event(), threading.Event()

    def produce() -> None:
        entered.set()
        box.put(3)
        done.set()

    producer = threading.Thread(target=produce)
    producer.start()
    entered.wait(5)
    assert not done.wait(0.05)  # still blocked: the queue is full
    assert box.get() == 1
    producer.join(5)
    assert done.is_set()
    assert [box.get(), box.get()] == [2, 3]


def test_closing_the_outbox_wakes_a_blocked_producer():
    box: Outbox[int] = Outbox(capacity=1, clock=SystemClock())
    box.put(1)
    raised: list[BaseException] = []

    def produce() -> None:
        try:
            box.put(2)
        except BaseException as exc:
            raised.append(exc)

    producer = threading.Thread(target=produce)
    producer.start()
    box.close("peer gone")
    producer.join(5)
    assert len(raised) == 1 and isinstance(raised[0], TransportClosed)
    assert "peer gone" in str(raised[0])
    assert box.get() == 1  # a graceful close still hands out what was queued
    assert box.get() is None


def test_the_outbox_discards_on_abort_and_accepts_forced_items():
    box: Outbox[int] = Outbox(capacity=1, clock=SystemClock())
    box.put(1)
    box.put(2, force=True)  # control messages never wait
    box.close("gone", discard=True)
    assert box.get() is None
    with pytest.raises(TransportClosed):
        box.put(3, force=True)


def test_an_outbox_get_times_out_on_the_injected_clock():
    clock = FakeClock()
    box: Outbox[int] = Outbox(capacity=1, clock=clock)
    raised: list[BaseException] = []

    def consume() -> None:
        try:
            box.get(timeout=1.0)
        except BaseException as exc:
            raised.append(exc)

    consumer = threading.Thread(target=consume)
    consumer.start()
    assert clock.wait_for_waiters(1)
    clock.advance(2.0)
    consumer.join(5)
    assert len(raised) == 1 and isinstance(raised[0], TransportTimeout)
