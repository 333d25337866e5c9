"""Frames: how one encoded message is cut into gRPC stream messages and put back together.

A message (the bytes :func:`consortium.wire.encode_parts` describes) travels as one or more
frames, each one gRPC stream message::

    flags:u8 | total:u64 (little-endian, first frame only) | payload (1 .. chunk_bytes bytes)

``flags`` has two bits: ``FIRST`` (0x01) opens a message and carries its total length,
``LAST`` (0x02) closes it; a message that fits one frame has both. Every other bit must be
zero. Frames of one stream never interleave messages.

The receiver checks the declared total against its limit, then appends each payload to a
buffer that grows as the bytes arrive: a declared size is a claim, never a reason to
allocate, so a peer makes the receiver hold only what it has actually sent. No frame may
carry the message past its declared total, and on ``LAST`` the payloads must have filled it
exactly. The finished buffer is decoded zero-copy. Anything else raises
:class:`~consortium.errors.DecodeError` naming what was wrong.

This module knows nothing about gRPC, so the format is tested without a network.
"""

from __future__ import annotations

import bisect
import itertools
import struct
from collections.abc import Callable, Iterator, Sequence

from consortium.errors import DecodeError

__all__ = ["FIRST", "FRAME_OVERHEAD", "LAST", "Assembler", "iter_frames"]

FIRST = 0x01
LAST = 0x02
_KNOWN_FLAGS = FIRST | LAST
_TOTAL = struct.Struct("<Q")
FRAME_OVERHEAD = 1 + _TOTAL.size
"""The most bytes a frame adds to its payload (flags, and the total on a first frame)."""


def iter_frames(parts: Sequence[memoryview], total: int, chunk_bytes: int) -> Iterator[bytes]:
    """Frames of the message made of ``parts`` (``total`` bytes), produced lazily.

    Each frame costs one copy of its payload (gRPC sends ``bytes``); ``parts`` are sliced,
    never joined.
    """
    starts = list(itertools.accumulate((len(p) for p in parts), initial=0))
    count = max(1, -(-total // chunk_bytes))
    for k in range(count):
        lo, hi = k * chunk_bytes, min((k + 1) * chunk_bytes, total)
        flags = (FIRST if k == 0 else 0) | (LAST if k == count - 1 else 0)
        pieces: list[bytes | memoryview] = [
            bytes((flags,)) + (_TOTAL.pack(total) if k == 0 else b"")
        ]
        i = bisect.bisect_right(starts, lo) - 1  # the part that holds byte ``lo``
        while i < len(parts) and starts[i] < hi:
            pieces.append(parts[i][max(lo - starts[i], 0) : hi - starts[i]])
            i += 1
        yield b"".join(pieces)


class Assembler:
    """Puts frames of one stream back into whole messages.

    ``max_bytes`` bounds the total a first frame may declare; it can be changed between
    messages (a hub raises it once a spoke has introduced itself). ``on_begin``, if given,
    is called with the declared total of each message once that total passed the check and
    before any of its bytes are kept (the hub reserves its per-party budget there).
    """

    def __init__(self, *, max_bytes: int, on_begin: Callable[[int], None] | None = None) -> None:
        self.max_bytes = max_bytes
        self._on_begin = on_begin
        self._buf: bytearray | None = None
        self._total = 0

    @property
    def busy(self) -> bool:
        """True while a message has begun and not ended."""
        return self._buf is not None

    @property
    def buffered(self) -> int:
        """The bytes of the unfinished message held so far (0 between messages)."""
        return 0 if self._buf is None else len(self._buf)

    def feed(self, frame: bytes) -> bytearray | None:
        """Take one frame; return the finished message buffer after its last frame."""
        if not frame:
            raise DecodeError("empty frame")
        flags = frame[0]
        if flags & ~_KNOWN_FLAGS:
            raise DecodeError(f"frame has unknown flag bits {flags:#04x}")
        body = memoryview(frame)[1:]
        if flags & FIRST:
            if self._buf is not None:
                raise DecodeError("a message began before the previous one ended")
            if len(body) < _TOTAL.size:
                raise DecodeError("first frame is too short to declare a length")
            (total,) = _TOTAL.unpack_from(body)
            if total > self.max_bytes:
                raise DecodeError(
                    f"declared message of {total} bytes exceeds the limit of {self.max_bytes}"
                )
            body = body[_TOTAL.size :]
            if self._on_begin is not None:
                self._on_begin(total)
            self._buf = bytearray()
            self._total = total
        elif self._buf is None:
            raise DecodeError("continuation frame without a first frame")
        elif not body:
            raise DecodeError("continuation frame without payload")
        assert self._buf is not None
        end = len(self._buf) + len(body)
        if end > self._total:
            raise DecodeError(
                f"frames carry more than the {self._total} bytes their message declared"
            )
        self._buf += body
        if not flags & LAST:
            return None
        buf, self._buf = self._buf, None
        if end != self._total:
            raise DecodeError(f"message ended after {end} of its {self._total} declared bytes")
        return buf
