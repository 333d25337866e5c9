"""What the gRPC hub and spoke share: the method, the handshake, options, the send queue.

The handshake is two ordinary wire messages. A spoke opens the stream with a *hello*
(``sender`` = its party name; ``meta``: the largest frame payload it accepts and a digest of
the roster it was given). The hub answers with a *welcome* (``sender`` = the hub's party
name; ``meta``: its own frame size) or ends the stream with a gRPC status whose details say
why it refused. Kinds under ``transport.`` are reserved for the transport: a spoke that
sends one after its hello is disconnected.
"""

from __future__ import annotations

import hashlib
import threading
from collections import deque
from collections.abc import Collection
from typing import Any, Generic, TypeVar

from consortium.clock import Clock
from consortium.errors import TransportClosed, TransportTimeout
from consortium.transport.grpc_framing import FRAME_OVERHEAD

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "HELLO",
    "HELLO_MAX_BYTES",
    "METHOD",
    "MIN_CHUNK_BYTES",
    "RESERVED_PREFIX",
    "WELCOME",
    "Outbox",
    "check_chunk_bytes",
    "grpc_options",
    "roster_digest",
]

METHOD = "/consortium.transport.v1.Hub/Connect"
RESERVED_PREFIX = "transport."
HELLO = "transport.hello"
WELCOME = "transport.welcome"

DEFAULT_CHUNK_BYTES = 4 * 2**20
MIN_CHUNK_BYTES = 4096  # a hello (name up to 64 KiB) goes out in frames of this size
HELLO_MAX_BYTES = 2**20  # what a stream may declare before it has introduced itself
QUEUE_MESSAGES = 4  # messages queued per stream before ``send`` blocks (flow control)
_FRAME_MARGIN = FRAME_OVERHEAD + 55  # room for the frame prefix on top of a payload

# Keepalive: notice a peer whose host vanished (no FIN/RST) within about 40 s. The hub
# accepts client pings every 10 s, below the 30 s the spokes use, so it never sends GOAWAY.
_KEEPALIVE = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
]
_SERVER_ONLY = [
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    # gRPC binds with SO_REUSEPORT by default: a second hub on a busy port would "start"
    # and silently take half the connections. Fail loudly instead.
    ("grpc.so_reuseport", 0),
]


def check_chunk_bytes(chunk_bytes: int) -> int:
    if not isinstance(chunk_bytes, int) or chunk_bytes < MIN_CHUNK_BYTES:
        raise ValueError(f"chunk_bytes must be an integer of at least {MIN_CHUNK_BYTES}")
    return chunk_bytes


def grpc_options(chunk_bytes: int, *, server: bool) -> list[tuple[str, Any]]:
    """Channel or server options: frame-sized message limits (not unlimited) and keepalive."""
    limit = chunk_bytes + _FRAME_MARGIN
    options: list[tuple[str, Any]] = [
        ("grpc.max_send_message_length", limit),
        ("grpc.max_receive_message_length", limit),
        *_KEEPALIVE,
    ]
    if server:
        options += _SERVER_ONLY
    return options


def roster_digest(peers: Collection[str]) -> str:
    """A short digest of the roster, so a spoke of another job is refused at the hello."""
    return hashlib.sha256("\n".join(sorted(peers)).encode()).hexdigest()[:16]


T = TypeVar("T")


class Outbox(Generic[T]):
    """A bounded FIFO feeding one stream. ``put`` blocks while full; ``close`` wakes all.

    After ``close()`` the queued items are still handed out (a graceful end); after
    ``close(discard=True)`` they are dropped. ``get`` returns None once closed and empty.
    """

    def __init__(self, *, capacity: int = QUEUE_MESSAGES, clock: Clock) -> None:
        self._items: deque[T] = deque()
        self._capacity = capacity
        self._cond = threading.Condition(threading.Lock())
        self._clock = clock
        self._closed: str | None = None

    def put(self, item: T, *, force: bool = False) -> None:
        """Queue ``item``, waiting for room unless ``force`` (small control messages)."""
        with self._cond:
            while self._closed is None and not force and len(self._items) >= self._capacity:
                self._cond.wait()
            if self._closed is not None:
                raise TransportClosed(self._closed)
            self._items.append(item)
            self._cond.notify_all()

    def get(self, timeout: float | None = None) -> T | None:
        """The next item; None once closed and drained. TransportTimeout after ``timeout``."""
        deadline = None if timeout is None else self._clock.now() + timeout
        with self._cond:
            while not self._items and self._closed is None:
                remaining = None if deadline is None else deadline - self._clock.now()
                if remaining is not None and remaining <= 0:
                    raise TransportTimeout(f"nothing to send within {timeout} s")
                self._clock.wait(self._cond, remaining)
            if not self._items:
                return None
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def close(self, reason: str, *, discard: bool = False) -> None:
        with self._cond:
            if self._closed is None:
                self._closed = reason
            if discard:
                self._items.clear()
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed is not None
