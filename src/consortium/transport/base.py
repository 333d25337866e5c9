"""The transport contract: what every transport gives a party.

A transport hands each party an :class:`Endpoint`. Programs and the runtime use only
``send``, ``recv`` and ``close``; they never see addresses, sockets or gRPC errors.
A transport that learns a peer is gone delivers a :data:`PEER_LOST` message from that peer,
so the runtime can stop waiting for it before its deadline. When that peer connects again
(a restarted process under the same name and, with TLS, the same certificate identity) the
transport delivers :data:`PEER_BACK` from it to every party that was told it was lost,
after the PEER_LOST and before anything the peer sends on its new connection.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from consortium.clock import Clock, SystemClock
from consortium.errors import TransportClosed, TransportTimeout
from consortium.wire import Message

__all__ = ["PEER_BACK", "PEER_LOST", "Endpoint", "Mailbox", "wait_until"]

PEER_LOST = "transport.peer_lost"
"""Kind of the message a transport delivers, as if from the peer, when that peer is gone."""

PEER_BACK = "transport.peer_back"
"""Kind of the message a transport delivers, as if from the peer, when a peer it reported
with :data:`PEER_LOST` is connected again. The peer is a new session: a program that wants
it to take part again waits for what the peer's program says when it starts (a JOIN)."""


@runtime_checkable
class Endpoint(Protocol):
    """One party's connection to the federation."""

    @property
    def party(self) -> str: ...

    def send(self, msg: Message) -> None:
        """Deliver ``msg`` to ``msg.receiver``. Blocks while the path is full (flow control)."""

    def recv(self, timeout: float | None = None) -> Message:
        """The next message for this party. Raises TransportTimeout or TransportClosed."""

    def close(self) -> None:
        """Release resources; idempotent. A blocked ``recv`` raises TransportClosed."""


class Mailbox:
    """A FIFO of incoming messages with deadline-aware, event-driven waiting."""

    def __init__(self, *, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        self._items: deque[Message] = deque()
        self._cond = threading.Condition()
        self._closed = False

    def put(self, msg: Message) -> None:
        with self._cond:
            if self._closed:
                raise TransportClosed("mailbox is closed")
            self._items.append(msg)
            self._cond.notify()

    def get(self, timeout: float | None = None) -> Message:
        with self._cond:
            if not wait_until(
                self._clock, self._cond, lambda: self._items or self._closed, timeout
            ):
                raise TransportTimeout(f"nothing arrived within {timeout} s")
            if not self._items:
                raise TransportClosed("endpoint closed while waiting")
            return self._items.popleft()

    def get_nowait(self) -> Message | None:
        with self._cond:
            return self._items.popleft() if self._items else None

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed


def wait_until(
    clock: Clock, cond: threading.Condition, ready: Callable[[], object], timeout: float | None
) -> bool:
    """``cond.wait_for`` on ``clock``'s time: True once ``ready()``, False if ``timeout`` passed
    first. The caller holds ``cond``; whoever makes ``ready()`` true notifies it."""
    deadline = None if timeout is None else clock.now() + timeout
    while not ready():
        remaining = None if deadline is None else deadline - clock.now()
        if remaining is not None and remaining <= 0:
            return False
        clock.wait(cond, remaining)
    return True
