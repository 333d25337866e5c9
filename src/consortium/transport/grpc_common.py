"""What the gRPC hub and spoke share: the method, the handshake, options, the send queue,
and the guards against hostile peers (byte budgets, deadlines, throttled warnings).

The handshake is two ordinary wire messages. A spoke opens the stream with a *hello*
(``sender`` = its party name; ``meta``: the largest frame payload it accepts and a digest of
the roster it was given). The hub answers with a *welcome* (``sender`` = the hub's party
name; ``meta``: its own frame size) or ends the stream with a gRPC status whose details say
why it refused. Kinds under ``transport.`` are reserved for the transport: a spoke that
sends one after its hello is disconnected.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import deque
from collections.abc import Callable, Collection, Hashable, Iterator
from typing import Any, Generic, TypeGuard, TypeVar

from consortium.clock import Clock, SystemClock
from consortium.errors import TransportClosed, TransportError, TransportTimeout
from consortium.security import PartyCredentials, ReplayGuard
from consortium.transport.base import Mailbox, wait_until
from consortium.transport.grpc_framing import FRAME_OVERHEAD, iter_frames
from consortium.wire import Limits, Message, encode_parts

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "DEFAULT_LIMITS",
    "HELLO",
    "HELLO_MAX_BYTES",
    "METHOD",
    "MIN_CHUNK_BYTES",
    "RESERVED_PREFIX",
    "WELCOME",
    "ByteBudget",
    "Deadlines",
    "Outbox",
    "Outgoing",
    "StreamEndpoint",
    "ThrottledLog",
    "chunk_ok",
    "grpc_options",
    "limits_for_model",
    "roster_digest",
    "write_frames",
]

log = logging.getLogger(__name__)

METHOD = "/consortium.transport.v1.Hub/Connect"
RESERVED_PREFIX = "transport."
HELLO = "transport.hello"
WELCOME = "transport.welcome"

DEFAULT_CHUNK_BYTES = 4 * 2**20
MIN_CHUNK_BYTES = 4096  # a hello (name up to 64 KiB) goes out in frames of this size
HELLO_MAX_BYTES = 2**20  # what a stream may declare before it has introduced itself
QUEUE_MESSAGES = 4  # messages queued per stream before ``send`` blocks (flow control)
# What one message over gRPC may be unless the job says otherwise: a peer can make the hub
# hold about this much per party, so the default is a large model (2**28 float32 weights),
# not the wire format's ceiling. A job with a bigger model passes limits_for_model(...).
DEFAULT_LIMITS = Limits(max_message_bytes=2**30)
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

Outgoing = tuple[list[memoryview], int]  # an encoded message: its parts and its length


def chunk_ok(chunk_bytes: object) -> TypeGuard[int]:
    """Whether ``chunk_bytes`` is a frame size we send or accept (booleans fall below it)."""
    return isinstance(chunk_bytes, int) and chunk_bytes >= MIN_CHUNK_BYTES


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


def limits_for_model(model_bytes: int, *, margin: float = 2.0) -> Limits:
    """Limits for a job whose largest message carries a model of ``model_bytes``: that size
    times ``margin`` (room for optimiser state or metrics sent along), plus the header."""
    if model_bytes < 0 or margin < 1:
        raise ValueError("model_bytes must be >= 0 and margin >= 1")
    base = Limits()
    need = int(model_bytes * margin) + base.max_header_bytes
    return Limits(max_message_bytes=max(need, HELLO_MAX_BYTES))


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
        with self._cond:
            ready = wait_until(
                self._clock, self._cond, lambda: self._items or self._closed is not None, timeout
            )
            if not ready:
                raise TransportTimeout(f"nothing to send within {timeout} s")
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


def write_frames(outbox: Outbox[Outgoing], chunk_bytes: Callable[[], int]) -> Iterator[bytes]:
    """What gRPC sends down a stream: queued messages, cut into frames as they go out, until
    ``outbox`` is closed and drained. ``chunk_bytes()`` is read per message (the handshake
    settles it)."""
    while (item := outbox.get()) is not None:
        yield from iter_frames(*item, chunk_bytes())
        item = None  # let the message go before waiting for the next one


class ByteBudget:
    """The bytes one party may make the hub hold at once (flow control per party).

    ``take(n)`` waits until ``n`` more bytes fit, so a party over its budget is simply not
    read from (gRPC's own flow control then holds its sender); ``give(n)`` returns them.
    ``take`` gives up, returning False, once ``stop()`` says so; call :meth:`wake` after
    anything that can make ``stop()`` true.
    """

    def __init__(self, capacity: int, *, clock: Clock) -> None:
        self.capacity = capacity
        self._used = 0
        self._cond = threading.Condition(threading.Lock())
        self._clock = clock

    @property
    def used(self) -> int:
        with self._cond:
            return self._used

    def take(self, n: int, stop: Callable[[], bool]) -> bool:
        if n > self.capacity:
            raise ValueError(f"{n} bytes can never fit a budget of {self.capacity}")
        with self._cond:
            wait_until(
                self._clock, self._cond, lambda: self._used + n <= self.capacity or stop(), None
            )
            if self._used + n > self.capacity:
                return False
            self._used += n
            return True

    def give(self, n: int) -> None:
        with self._cond:
            self._used -= n
            self._cond.notify_all()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()


class Deadlines:
    """Runs an action when its deadline passes, unless it was cancelled or replaced first.

    One thread waits on ``clock`` for the earliest deadline (no polling; a
    :class:`~consortium.clock.FakeClock` drives it in tests). Actions run on that thread,
    outside the lock, and must be quick.
    """

    def __init__(self, *, clock: Clock, name: str) -> None:
        self._clock = clock
        self._cond = threading.Condition(threading.Lock())
        self._due: dict[Hashable, tuple[float, Callable[[], None]]] = {}
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def arm(self, key: Hashable, seconds: float, action: Callable[[], None]) -> None:
        """Run ``action`` in ``seconds`` (replacing what ``key`` had armed)."""
        with self._cond:
            self._due[key] = (self._clock.now() + seconds, action)
            self._cond.notify_all()

    def cancel(self, key: Hashable) -> None:
        with self._cond:
            self._due.pop(key, None)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._due.clear()
            self._cond.notify_all()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._closed:
                    return
                if not self._due:
                    self._clock.wait(self._cond, None)
                    continue
                key, (when, action) = min(self._due.items(), key=lambda kv: kv[1][0])
                left = when - self._clock.now()
                if left > 0:
                    self._clock.wait(self._cond, left)
                    continue
                del self._due[key]
            try:
                action()
            except Exception:  # one failed action must not stop the others
                log.exception("a deadline action failed")


class ThrottledLog:
    """Warnings a peer can provoke, throttled per ``key``: the first ``burst`` in full, then
    at most one summary per ``every`` seconds counting the ones left out, so a flood of
    hostile connections cannot flood the log."""

    def __init__(
        self, logger: logging.Logger, *, clock: Clock, burst: int = 5, every: float = 60.0
    ) -> None:
        self._log = logger
        self._clock = clock
        self._burst = burst
        self._every = every
        self._lock = threading.Lock()
        self._shown: dict[str, int] = {}
        self._held: dict[str, tuple[int, float]] = {}  # left out since, first left out at

    def warning(self, key: str, msg: str, *args: object) -> None:
        now = self._clock.now()
        with self._lock:
            shown = self._shown.get(key, 0)
            if shown < self._burst:
                self._shown[key] = shown + 1
                summary = None
            else:
                count, since = self._held.get(key, (0, now))
                count += 1
                if now - since >= self._every:
                    summary = (count, now - since)
                    self._held[key] = (0, now)
                else:
                    summary = None
                    self._held[key] = (count, since)
        if summary is None and shown < self._burst:
            self._log.warning(msg, *args)
            if shown + 1 == self._burst:
                self._log.warning("further %s warnings are summarised", key)
        elif summary is not None:
            self._log.warning(
                "%d %s warnings in the last %.0f s; the latest: " + msg,
                summary[0],
                key,
                summary[1],
                *args,
            )

    def flush(self) -> None:
        """Log the summary of what was left out and not yet reported (on closing)."""
        with self._lock:
            held = {k: v for k, v in self._held.items() if v[0]}
            self._held.clear()
        now = self._clock.now()
        for key, (count, since) in sorted(held.items()):
            self._log.warning("%d %s warnings in the last %.0f s", count, key, now - since)


class StreamEndpoint:
    """What the hub and a spoke share as endpoints: the checks on the party and on ``send``,
    the mailbox, and the replay guard (on with ``job``) applied to what arrives."""

    def __init__(
        self,
        *,
        party: str,
        who: str,
        peers: Collection[str],
        chunk_bytes: int,
        limits: Limits,
        clock: Clock | None,
        tls: PartyCredentials | None,
        job: str | None,
    ) -> None:
        if party not in peers:
            raise TransportError(f"{who} is not in the roster {sorted(peers)}")
        if tls is not None and party not in tls.identities:
            raise TransportError(f"the certificate is for {sorted(tls.identities)}, not for {who}")
        if not chunk_ok(chunk_bytes):
            raise ValueError(f"chunk_bytes must be an integer of at least {MIN_CHUNK_BYTES}")
        self._party = party
        self._peers = frozenset(peers)
        self._chunk = chunk_bytes
        self._limits = limits
        self._clock = clock or SystemClock()
        self._guard = ReplayGuard(job=job) if job else None
        self._mailbox = Mailbox(clock=self._clock)
        self._closed = False
        self._warnings = ThrottledLog(log, clock=self._clock)  # what peers can provoke

    @property
    def party(self) -> str:
        return self._party

    def send(self, msg: Message) -> None:
        if self._closed:
            raise TransportClosed(f"endpoint of {self._party!r} is closed")
        if msg.sender != self._party:
            raise TransportError(f"{self._party!r} cannot send as {msg.sender!r}")
        if msg.receiver not in self._peers:
            raise TransportError(f"no party named {msg.receiver!r} in this job")
        if msg.receiver == self._party:
            self._mailbox.put(msg)
            return
        outbox = self._outbox_to(msg.receiver)
        parts, total = encode_parts(msg)
        if total > self._limits.max_message_bytes:
            raise TransportError(
                f"message of {total} bytes exceeds the limit of {self._limits.max_message_bytes}"
            )
        outbox.put((parts, total))

    def recv(self, timeout: float | None = None) -> Message:
        return self._mailbox.get(timeout)

    def _outbox_to(self, receiver: str) -> Outbox[Outgoing]:
        """The stream a message for ``receiver`` (another party) goes down."""
        raise NotImplementedError

    def _admitted(self, msg: Message) -> bool:
        """Whether the replay guard admits ``msg`` (a sender and receiver already checked).
        A refused message is dropped and logged, not fatal: its stream goes on."""
        if self._guard is None:
            return True
        reason = self._guard.check(
            job=msg.job, sender=msg.sender, receiver=msg.receiver, seq=msg.seq
        )
        if reason is not None:
            what = f"a {msg.kind!r} message from {msg.sender!r} to {msg.receiver!r}"
            self._warnings.warning(
                "dropped message", "%r dropped %s (seq %d): %s", self._party, what, msg.seq, reason
            )
        return reason is None
