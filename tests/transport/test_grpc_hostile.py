"""The gRPC hub against hostile peers: declared sizes, unfinished messages, idle handshakes,
floods of refused streams. Real gRPC on loopback throughout."""

from __future__ import annotations

import logging
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from consortium.clock import FakeClock
from consortium.transport import PEER_BACK, PEER_LOST, GrpcHub, GrpcSpoke
from consortium.transport.grpc_common import (
    HELLO,
    METHOD,
    MIN_CHUNK_BYTES,
    Deadlines,
    ThrottledLog,
    limits_for_model,
    roster_digest,
)
from consortium.transport.grpc_framing import FIRST, iter_frames
from consortium.wire import Limits, Message, encode_parts

HUB, S1, S2 = "hub", "spoke-1", "spoke-2"
NAMES = [HUB, S1, S2]
WAIT_S = 30.0
GIB = 2**30


def hello(name: str) -> list[bytes]:
    meta = {"chunk_bytes": MIN_CHUNK_BYTES, "roster": roster_digest(NAMES)}
    msg = Message(kind=HELLO, sender=name, receiver="", meta=meta)
    return list(iter_frames(*encode_parts(msg), MIN_CHUNK_BYTES))


def assert_round_trip(hub: GrpcHub, spoke: GrpcSpoke) -> None:
    spoke.send(Message(kind="ping", sender=spoke.party, receiver=HUB))
    assert hub.recv(timeout=WAIT_S).kind == "ping"
    hub.send(Message(kind="pong", sender=HUB, receiver=spoke.party))
    assert spoke.recv(timeout=WAIT_S).kind == "pong"


def held_open(frames: list[bytes], release: threading.Event) -> Iterator[bytes]:
    """Send ``frames``, then keep the stream open (sending nothing) until ``release``."""
    yield from frames
    release.wait()


def play(
    channel: grpc.Channel, frames: list[bytes], release: threading.Event
) -> grpc.RpcError | None:
    """Play ``frames`` on a stream kept open until the hub ends it; how it ended."""
    call = channel.stream_stream(METHOD)(held_open(frames, release))
    try:
        for _ in call:
            pass
    except grpc.RpcError as exc:
        return exc
    return None


def peak_rss_reset() -> bool:
    """Reset this process's peak resident size (VmHWM); False where Linux does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/self/status")


def first_frame(declared: int, payload: bytes) -> bytes:
    return bytes([FIRST]) + struct.pack("<Q", declared) + payload


# -- memory ------------------------------------------------------------------------------


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc/self/status")
def test_a_frame_declaring_2_gib_costs_only_the_bytes_that_arrived():
    hub = GrpcHub(
        party=HUB, peers=NAMES, limits=Limits(max_message_bytes=4 * GIB), message_timeout=0.5
    )
    release = threading.Event()
    try:
        if not peak_rss_reset():
            pytest.skip("cannot reset the peak resident size here")
        before = peak_rss()
        with grpc.insecure_channel(hub.address) as channel:
            # The deadline runs only once the hub has taken the first frame, so the cut
            # proves that the frame declaring 2 GiB was read.
            error = play(channel, [*hello(S1), first_frame(2 * GIB, b"x" * 4000)], release)
        grown = peak_rss() - before
        assert error is not None and error.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        assert "not finished within 0.5 s" in error.details()
        assert grown < 200 * 2**20, f"the hub's peak resident size grew {grown / 2**20:.0f} MiB"
        lost = hub.recv(timeout=WAIT_S)
        assert (lost.kind, lost.sender) == (PEER_LOST, S1)
        assert hub.buffered_bytes == 0 and hub.budget_used == {S1: 0}
    finally:
        release.set()
        hub.close()


def test_a_party_cannot_make_the_hub_hold_more_than_its_budget():
    limits = Limits(max_message_bytes=2**17)
    hub = GrpcHub(party=HUB, peers=NAMES, limits=limits, party_bytes=2**17)
    spoke = GrpcSpoke(party=S1, peers=NAMES, hub=hub.address, limits=limits)
    try:
        sent = [np.full(2**14, i, dtype="<f4") for i in range(6)]  # 64 KiB each
        for i, w in enumerate(sent):
            spoke.send(Message(kind="w", sender=S1, receiver=HUB, seq=i, tensors={"w": w}))
        for w in sent:
            assert hub.budget_used[S1] <= 2**17
            got = hub.recv(timeout=WAIT_S)
            assert np.array_equal(got.tensors["w"], w)
        assert hub.budget_used == {S1: 0}
    finally:
        spoke.close()
        hub.close()


def test_party_bytes_must_hold_one_message_and_limits_follow_the_model():
    with pytest.raises(ValueError, match="at least one message"):
        GrpcHub(party=HUB, peers=NAMES, limits=Limits(max_message_bytes=2**20), party_bytes=2**19)
    assert limits_for_model(100 * 2**20).max_message_bytes == 200 * 2**20 + 2**20
    assert limits_for_model(0).max_message_bytes == 2**20


# -- time --------------------------------------------------------------------------------


def test_an_unfinished_message_is_cut_after_its_deadline_and_the_others_go_on():
    hub = GrpcHub(party=HUB, peers=NAMES, message_timeout=0.3)
    good = GrpcSpoke(party=S2, peers=NAMES, hub=hub.address)
    release = threading.Event()
    try:
        with grpc.insecure_channel(hub.address) as channel:
            error = play(channel, [*hello(S1), first_frame(10_000, b"x" * 100)], release)
        assert error is not None and error.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        assert "a message was not finished within 0.3 s" in error.details()
        lost = hub.recv(timeout=WAIT_S)
        assert (lost.kind, lost.sender) == (PEER_LOST, S1)
        assert_round_trip(hub, good)
        again = GrpcSpoke(party=S1, peers=NAMES, hub=hub.address)  # its slot came free
        assert hub.recv(timeout=WAIT_S).kind == PEER_BACK
        assert_round_trip(hub, again)
        again.close()
    finally:
        release.set()
        good.close()
        hub.close()


def test_a_stream_that_never_says_hello_is_cut():
    hub = GrpcHub(party=HUB, peers=NAMES, handshake_timeout=0.3)
    release = threading.Event()
    try:
        with grpc.insecure_channel(hub.address) as channel:
            error = play(channel, [], release)
        assert error is not None and error.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        assert "no valid hello within 0.3 s" in error.details()
    finally:
        release.set()
        hub.close()


def test_deadlines_run_on_the_injected_clock_unless_cancelled():
    clock = FakeClock()
    deadlines = Deadlines(clock=clock, name="test-deadlines")
    fired: list[str] = []
    done = threading.Event()
    try:
        deadlines.arm("a", 5.0, lambda: fired.append("a"))
        deadlines.arm("b", 1.0, lambda: fired.append("b"))
        deadlines.arm("c", 2.0, lambda: (fired.append("c"), done.set()))
        deadlines.cancel("b")
        assert clock.wait_for_waiters(1)
        clock.advance(3.0)
        assert done.wait(WAIT_S)
        assert fired == ["c"]
    finally:
        deadlines.close()


# -- slots -------------------------------------------------------------------------------


def test_idle_handshakes_do_not_lock_a_trainer_out():
    hub = GrpcHub(party=HUB, peers=NAMES, handshake_slots=4, handshake_timeout=0.5)
    release = threading.Event()
    errors: list[grpc.RpcError | None] = []
    channel = grpc.insecure_channel(hub.address)

    def idle() -> None:
        errors.append(play(channel, [], release))

    idlers = [threading.Thread(target=idle) for _ in range(8)]
    try:
        for thread in idlers:
            thread.start()
        for thread in idlers:  # four are turned away at once, four are cut at the deadline
            thread.join(WAIT_S)
        codes = sorted(e.code().name for e in errors if e is not None)
        assert codes == ["DEADLINE_EXCEEDED"] * 4 + ["RESOURCE_EXHAUSTED"] * 4
        # Now with idle streams holding every handshake slot as the trainer arrives:
        more = [threading.Thread(target=idle) for _ in range(7)]
        for thread in more:
            thread.start()
        spoke = GrpcSpoke(party=S1, peers=NAMES, hub=hub.address, connect_timeout=WAIT_S)
        try:
            assert_round_trip(hub, spoke)
        finally:
            spoke.close()
        for thread in more:
            thread.join(WAIT_S)
    finally:
        release.set()
        channel.close()
        hub.close()


# -- the log -----------------------------------------------------------------------------


def test_a_flood_of_refused_streams_logs_a_bounded_number_of_lines(caplog):
    caplog.set_level(logging.WARNING, logger="consortium.transport")
    hub = GrpcHub(party=HUB, peers=NAMES)
    flood = 200
    try:
        caplog.clear()
        with grpc.insecure_channel(hub.address) as channel:
            for _ in range(flood):
                call = channel.stream_stream(METHOD)(iter([b"\x80 not a frame"]))
                with pytest.raises(grpc.RpcError):
                    list(call)
        good = GrpcSpoke(party=S1, peers=NAMES, hub=hub.address)
        assert_round_trip(hub, good)
        good.close()
    finally:
        hub.close()
    lines = [r.getMessage() for r in caplog.records if "stream" in r.getMessage()]
    assert 5 <= len(lines) <= 10, lines
    assert sum("unknown flag bits" in line for line in lines) == 5
    assert any(f"{flood - 5} refused stream (INVALID_ARGUMENT) warnings" in x for x in lines)


def test_throttled_warnings_summarise_on_the_clock(caplog):
    caplog.set_level(logging.WARNING, logger="test.throttle")
    clock = FakeClock()
    throttled = ThrottledLog(logging.getLogger("test.throttle"), clock=clock, burst=2, every=60)
    for i in range(10):
        throttled.warning("refusal", "refused %d", i)
        clock.advance(10.0)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[:3] == ["refused 0", "refused 1", "further refusal warnings are summarised"]
    assert lines[3:] == ["7 refusal warnings in the last 60 s; the latest: refused 8"]
    throttled.flush()
    assert caplog.records[-1].getMessage() == "1 refusal warnings in the last 20 s"


def test_a_spoke_gives_up_at_once_on_a_refusal_that_waiting_cannot_fix():
    hub = GrpcHub(party=HUB, peers=NAMES)
    first = GrpcSpoke(party=S2, peers=NAMES, hub=hub.address)
    try:
        with pytest.raises(Exception, match="already connected"):
            GrpcSpoke(party=S2, peers=NAMES, hub=hub.address, connect_timeout=WAIT_S)
        assert_round_trip(hub, first)
    finally:
        first.close()
        hub.close()
