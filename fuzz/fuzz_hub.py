"""Fuzzing a live gRPC hub with random and adversarial frames, in-process, over loopback.

Starts a :class:`~consortium.transport.GrpcHub` (plain text, small limits and deadlines)
and plays streams of frames at it from a few threads: random bytes, unknown flags, first
frames declaring huge or tiny sizes, continuations without a start, payloads past their
declared size, valid hellos followed by garbage or by messages that break the rules, and
streams that stop mid-message. The property: the hub turns each bad stream away with a
status (never INTERNAL, never an unexpected exception in its log), its memory stays
bounded, and a real spoke can still talk to it afterwards::

    python fuzz/fuzz_hub.py                    # 1,000,000 frames
    python fuzz/fuzz_hub.py --frames 20000 --seed 3

It prints the frames and streams played, how the streams ended, the hub's crashes and the
peak resident size of the process, and exits non-zero on any crash. CI runs a short
version, ``tests/transport/test_fuzz_hub.py`` (marked slow).
"""

from __future__ import annotations

import argparse
import logging
import random
import resource
import struct
import sys
import threading
from collections import Counter
from collections.abc import Iterator

import grpc
import numpy as np

from consortium.errors import TransportClosed
from consortium.transport import GrpcHub, GrpcSpoke
from consortium.transport.grpc_common import HELLO, METHOD, MIN_CHUNK_BYTES, roster_digest
from consortium.transport.grpc_framing import FIRST, LAST, iter_frames
from consortium.wire import Limits, Message, encode_parts

HUB, SPOKES = "hub", [f"spoke-{i}" for i in range(4)]
NAMES = [HUB, *SPOKES]
LIMITS = Limits(max_message_bytes=2**20)
FRAMES_PER_STREAM = 40
_TOTAL = struct.Struct("<Q")


class _Crashes(logging.Handler):
    """Counts what the hub logs with a traceback: a bug, not a refusal."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(record)


def _frames(msg: Message, chunk: int = MIN_CHUNK_BYTES) -> list[bytes]:
    return list(iter_frames(*encode_parts(msg), chunk))


def _hello(rng: random.Random) -> list[bytes]:
    name = rng.choice([*SPOKES, HUB, "mallory", ""])
    roster = roster_digest(NAMES) if rng.random() < 0.9 else "0" * 16
    meta = {"chunk_bytes": rng.choice([MIN_CHUNK_BYTES, 2**20, 0, -1]), "roster": roster}
    return _frames(Message(kind=HELLO, sender=name, receiver="", meta=meta))


def _adversarial(rng: random.Random, sender: str) -> list[bytes]:
    """One burst of hostile frames (a few frames at most)."""
    kind = rng.randrange(9)
    if kind == 0:
        return [rng.randbytes(rng.randint(0, 64))]
    if kind == 1:  # a declared size of any magnitude, then some or none of its bytes
        declared = rng.choice([0, 1, 2**20, 2**20 + 1, 2**31, 2**63, rng.getrandbits(64)])
        flags = FIRST | (LAST if rng.random() < 0.5 else 0)
        return [bytes([flags]) + _TOTAL.pack(declared) + rng.randbytes(rng.randint(0, 512))]
    if kind == 2:
        return [bytes([rng.choice([0, LAST])]) + rng.randbytes(rng.randint(0, 64))]
    if kind == 3:
        return [bytes([rng.randrange(4, 256)]) + rng.randbytes(8)]
    if kind == 4:  # more bytes than declared
        return [bytes([FIRST]) + _TOTAL.pack(8) + b"x" * 4, bytes([LAST]) + b"y" * 64]
    receiver = rng.choice([*NAMES, "nobody"])
    msg = Message(
        kind=rng.choice(["update", "transport.peer_lost", "transport.hello"]),
        sender=sender if rng.random() < 0.8 else rng.choice(NAMES),
        receiver=receiver,
        seq=rng.randrange(4),
        tensors={"w": np.zeros(rng.choice([0, 1, 5000]), "<f4")},
    )
    frames = _frames(msg)
    if kind == 5 and frames:  # a valid message with one byte flipped
        i = rng.randrange(len(frames))
        data = bytearray(frames[i])
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        frames[i] = bytes(data)
    if kind == 6:  # cut short
        frames = frames[: max(1, len(frames) // 2)]
    return frames


def _stream(rng: random.Random) -> list[bytes]:
    frames = _hello(rng) if rng.random() < 0.6 else []
    sender = rng.choice(SPOKES)
    while len(frames) < FRAMES_PER_STREAM:
        frames += _adversarial(rng, sender)
    return frames


def _play(channel: grpc.Channel, frames: list[bytes]) -> str:
    """Send ``frames`` on one stream; the status it ended with."""
    requests: Iterator[bytes] = iter(frames)
    call = channel.stream_stream(METHOD)(requests, timeout=30)
    try:
        for _ in call:
            pass
    except grpc.RpcError as exc:
        return exc.code().name if isinstance(exc, grpc.Call) else "RpcError"
    return "OK"


def run(frames: int, seed: int, workers: int = 4) -> tuple[int, Counter[str], int, int]:
    """Offer about ``frames`` frames (the hub stops reading a stream at its first fault);
    return (frames offered, how the streams ended, crashes, peak RSS in bytes)."""
    crashes = _Crashes()
    logging.getLogger("consortium").addHandler(crashes)
    logging.getLogger("consortium.transport").setLevel(logging.ERROR)  # refusals are expected
    hub = GrpcHub(
        party=HUB,
        peers=NAMES,
        limits=LIMITS,
        message_timeout=2.0,
        handshake_timeout=2.0,
    )
    statuses: Counter[str] = Counter()
    played = 0
    lock = threading.Lock()
    pinged = threading.Event()

    def drain() -> None:  # the hub's program: takes what arrives, as a real one would
        while True:
            try:
                msg = hub.recv()
            except TransportClosed:
                return
            if msg.kind == "ping" and msg.sender == SPOKES[0]:
                pinged.set()

    def worker(index: int) -> None:
        nonlocal played
        rng = random.Random(f"{seed}:{index}")
        with grpc.insecure_channel(hub.address) as channel:
            while True:
                with lock:
                    if played >= frames:
                        return
                batch = _stream(rng)
                status = _play(channel, batch)
                with lock:
                    played += len(batch)
                    statuses[status] += 1

    drainer = threading.Thread(target=drain, daemon=True)
    drainer.start()
    try:
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        spoke = GrpcSpoke(party=SPOKES[0], peers=NAMES, hub=hub.address, limits=LIMITS)
        try:  # the hub still serves a real party
            spoke.send(Message(kind="ping", sender=SPOKES[0], receiver=HUB))
            if not pinged.wait(60):
                raise AssertionError("a real spoke's message did not reach the hub")
        finally:
            spoke.close()
    finally:
        hub.close()
        drainer.join()
        logging.getLogger("consortium").removeHandler(crashes)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return played, statuses, len(crashes.records) + statuses["INTERNAL"], peak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="fuzz a live gRPC hub with hostile frames")
    parser.add_argument("--frames", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args(argv)
    played, statuses, crashes, peak = run(args.frames, args.seed, args.workers)
    ended = ", ".join(f"{code} {n}" for code, n in statuses.most_common())
    print(f"{played} frames offered on {sum(statuses.values())} streams; ended: {ended}")
    print(f"crashes: {crashes}; peak resident size: {peak / 2**20:.0f} MiB")
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
