"""One spoke's stream as the gRPC hub sees it, and the reader that turns its frames into
messages.

The reader reassembles frames under the hub's bounds (see :mod:`grpc_hub_guard`): each
message begun holds its declared size of its party's budget, and one that spans frames must
be finished in time. The first message must be the hello; every later one is handed to the
hub to deliver or relay. A malformed message, or anything the hub refuses, ends the stream
with a gRPC status that says why.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import grpc

from consortium.clock import Clock
from consortium.errors import DecodeError, TransportClosed
from consortium.transport.grpc_common import (
    HELLO_MAX_BYTES,
    MIN_CHUNK_BYTES,
    ByteBudget,
    Outbox,
    Outgoing,
)
from consortium.transport.grpc_framing import Assembler
from consortium.wire import Limits, Message, decode

if TYPE_CHECKING:
    from consortium.transport.grpc_hub_guard import HubGuard

__all__ = ["Link", "Refused", "read_stream"]

log = logging.getLogger(__name__)


class Refused(Exception):
    """The spoke is turned away or cut off; ``code`` and ``reason`` become its gRPC status."""

    def __init__(self, code: grpc.StatusCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Link:
    """One spoke's stream, as the hub sees it."""

    def __init__(self, *, clock: Clock, identities: frozenset[str] | None, context: Any) -> None:
        self.party: str | None = None  # set by the hello
        self.identities = identities  # names its verified certificate gives; None: no TLS
        self.context = context  # the RPC, to cancel it if it does not end when cut
        self.peer = str(context.peer())  # its address, for the log
        self.handshaking = False  # holds a slot of the handshake pool
        self.budget: ByteBudget | None = None  # its party's, once it said hello
        self.reserved = 0  # bytes of its budget held by the message it is sending
        self.assembler: Assembler | None = None  # set by the reader
        self.outbox: Outbox[Outgoing] = Outbox(clock=clock)
        self.chunk_bytes = MIN_CHUNK_BYTES  # until the hello says what the spoke accepts
        self.contacts: set[str] = set()  # spokes it exchanged messages with (under hub lock)
        self.refusal: Refused | None = None
        self.said_goodbye = False  # the spoke ended its side of the stream itself
        self.finished = threading.Event()  # the RPC is over, status sent
        self.reader: threading.Thread | None = None  # reassembles and routes what it sends

    def end(self) -> None:
        self.outbox.close("the stream ended", discard=True)
        self.finished.set()
        if self.budget is not None:
            self.budget.wake()  # a reader waiting for room gives up

    @property
    def label(self) -> str:
        return repr(self.party) if self.party else f"an unidentified spoke at {self.peer}"


def read_stream(
    link: Link,
    requests: Iterator[bytes],
    *,
    bounds: HubGuard,
    limits: Limits,
    on_hello: Callable[[Link, Message], None],
    on_message: Callable[[Link, Message, bytearray, int], None],
    on_end: Callable[[Link], None],
) -> None:
    """Read ``link``'s stream until it ends (the reader thread's body): the hello goes to
    ``on_hello``, which sets ``link.party`` or raises :class:`Refused`; each later message
    to ``on_message`` with its bytes and the budget it holds; ``on_end`` runs last."""
    assembler = link.assembler = Assembler(
        max_bytes=min(HELLO_MAX_BYTES, limits.max_message_bytes),
        on_begin=lambda total: bounds.begin(link, total),
    )
    timing = False  # whether a deadline runs for the message in progress
    try:
        for frame in requests:
            buf = assembler.feed(frame)
            if buf is None:
                if not timing and assembler.busy and link.party is not None:
                    timing = True
                    bounds.time_message(link)
                continue
            if timing:
                timing = False
                bounds.untime_message(link)
            msg = decode(buf, limits=limits)
            if link.party is None:
                on_hello(link, msg)
                assembler.max_bytes = limits.max_message_bytes
            else:
                on_message(link, msg, buf, bounds.complete(link))
            del buf, msg  # let the message go before waiting for the next one
        link.said_goodbye = link.refusal is None
    except DecodeError as exc:
        link.refusal = Refused(grpc.StatusCode.INVALID_ARGUMENT, f"malformed input: {exc}")
    except Refused as exc:
        link.refusal = exc
    except (grpc.RpcError, TransportClosed):
        pass  # the stream broke or was cut: the spoke is gone
    except Exception as exc:  # a bug here must not take the hub down; cut this stream
        log.exception("unexpected error on the stream of %s", link.label)
        link.refusal = Refused(grpc.StatusCode.INTERNAL, f"hub error: {exc}")
    finally:
        del assembler  # the unfinished message goes now, not when the thread is collected
        link.assembler = None
        bounds.give_back(link)
        if link.refusal is not None:
            bounds.refused(link, "closing", link.refusal)
        on_end(link)
