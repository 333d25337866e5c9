"""A spoke of the gRPC transport: a party that dials the hub and talks through it.

The spoke holds one bidirectional stream to the hub. Everything it sends goes up that stream
(the hub delivers or relays it); everything for it comes down. gRPC consumes the outgoing
side from a generator fed by a bounded queue, so ``send`` blocks when the stream is behind;
a reader thread reassembles incoming frames into the mailbox. When the stream ends, the
spoke delivers :data:`PEER_LOST` from the hub and refuses further sends.

With ``tls`` the spoke speaks mutual TLS and accepts only a hub whose certificate names
``hub_party`` (see :mod:`grpc_security`). With ``job`` it drops (and logs) every message
that is for another job or replays a sequence number; transport notices are exempt (only
the hub can send them), and a :data:`PEER_LOST` from a party starts its numbering afresh
(a :data:`PEER_BACK` follows if it connects again).

A hub that turns the hello away because it is busy (RESOURCE_EXHAUSTED: its handshake slots
are taken) or unavailable is tried again, with exponential backoff and jitter, until
``connect_timeout``; any other refusal fails at once.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Collection
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

import grpc

from consortium.clock import Clock
from consortium.errors import DecodeError, TransportClosed, TransportError
from consortium.security import PartyCredentials
from consortium.transport.base import PEER_LOST
from consortium.transport.grpc_common import (
    DEFAULT_CHUNK_BYTES,
    DEFAULT_LIMITS,
    HELLO,
    METHOD,
    MIN_CHUNK_BYTES,
    RESERVED_PREFIX,
    WELCOME,
    Outbox,
    Outgoing,
    StreamEndpoint,
    chunk_ok,
    grpc_options,
    roster_digest,
    write_frames,
)
from consortium.transport.grpc_framing import Assembler
from consortium.transport.grpc_security import dial, hub_channel, status
from consortium.wire import Limits, Message, decode, encode_parts

__all__ = ["GrpcSpoke"]

log = logging.getLogger(__name__)

# Refusals of a hello worth trying again: the hub is full of handshakes, or going through a
# restart. Anything else (a name already taken, another roster) will not change by waiting.
_RETRY_CODES = (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE)
_BACKOFF_FIRST_S = 0.05  # doubled after each refusal, up to _BACKOFF_MAX_S, with jitter
_BACKOFF_MAX_S = 2.0


class GrpcSpoke(StreamEndpoint):
    """A party's :class:`~consortium.transport.Endpoint` that reaches the others via a hub.

    The constructor dials ``hub`` (``host:port``), introduces the party and waits for the
    hub's welcome, all within ``connect_timeout`` seconds; a refusal (a name not in the
    roster, or already connected, a certificate the hub does not trust) raises
    :class:`TransportError` with the reason. ``tls``: this party's credentials for mutual
    TLS, with ``hub_party`` the name the hub's certificate must carry (None: plain text,
    with a warning). ``job``: the job id every message must carry (replay protection). A
    hub that is busy or unavailable is retried with backoff within ``connect_timeout``.
    """

    def __init__(
        self,
        *,
        party: str,
        peers: Collection[str],
        hub: str,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        limits: Limits = DEFAULT_LIMITS,
        clock: Clock | None = None,
        tls: PartyCredentials | None = None,
        hub_party: str | None = None,
        job: str | None = None,
        connect_timeout: float = 30.0,
        close_timeout: float = 10.0,
    ) -> None:
        if hub_party is not None and (hub_party not in peers or hub_party == party):
            raise TransportError(f"the hub {hub_party!r} is not another party of the roster")
        if tls is not None and hub_party is None:
            raise TransportError("with TLS, give hub_party: the hub certificate's name")
        super().__init__(
            party=party,
            who=repr(party),
            peers=peers,
            chunk_bytes=chunk_bytes,
            limits=limits,
            clock=clock,
            tls=tls,
            job=job,
        )
        self._close_timeout = close_timeout
        self._hub_party = hub_party
        self._send_chunk = MIN_CHUNK_BYTES  # until the hub says what it accepts
        self._outbox: Outbox[Outgoing] = Outbox(clock=self._clock)
        self._lock = threading.Lock()
        self._welcome: Future[str] = Future()  # the hub's party name
        self._refused: grpc.StatusCode | None = None  # how the hub ended the last stream
        options = grpc_options(self._chunk, server=False)
        if tls is None:
            log.warning(
                "%r dials the hub at %s WITHOUT TLS: messages travel in plain text", party, hub
            )
            self._channel = grpc.insecure_channel(hub, options=options)
        else:
            assert hub_party is not None
            self._channel = hub_channel(hub, tls, hub_party, options)
        deadline = time.monotonic() + connect_timeout  # real time: gRPC's deadlines are real
        try:
            dial(
                self._channel, party=party, hub=hub, timeout=connect_timeout, secure=tls is not None
            )
        except TransportError:
            self._channel.close()
            raise
        self._hello = encode_parts(
            Message(
                kind=HELLO,
                sender=party,
                receiver="",
                job=job or "",
                meta={"chunk_bytes": self._chunk, "roster": roster_digest(self._peers)},
            )
        )
        jitter = random.Random(f"backoff:{party}")  # de-synchronises spokes started together
        backoff = _BACKOFF_FIRST_S
        while True:
            self._refused = None
            self._open()
            try:
                self._welcome.result(timeout=max(0.0, deadline - time.monotonic()))
                return
            except FutureTimeout:
                self.close()
                raise TransportError(
                    f"the hub at {hub} did not welcome {party!r} within {connect_timeout} s"
                ) from None
            except TransportError:
                pause = backoff * (0.5 + jitter.random())
                if self._refused not in _RETRY_CODES or time.monotonic() + pause >= deadline:
                    self.close()
                    raise
            self._reader.join()  # it has seen the refusal: nothing of this attempt is left
            log.info("the hub at %s is busy; %r tries again in %.2f s", hub, party, pause)
            time.sleep(pause)  # a backoff between attempts, not a wait for an event
            backoff = min(backoff * 2, _BACKOFF_MAX_S)

    def _open(self) -> None:
        """Open a stream to the hub and say hello on it; ``_welcome`` says how it went."""
        self._send_chunk = MIN_CHUNK_BYTES  # until the hub says what it accepts
        self._outbox = Outbox(clock=self._clock)
        self._welcome = Future()
        self._outbox.put(self._hello)
        requests = write_frames(self._outbox, lambda: self._send_chunk)
        self._call = self._channel.stream_stream(METHOD)(requests)
        self._reader = threading.Thread(
            target=self._read, name=f"consortium-spoke-{self._party}-reader", daemon=True
        )
        self._reader.start()

    def _outbox_to(self, receiver: str) -> Outbox[Outgoing]:
        return self._outbox  # everything goes up the one stream; the hub delivers or relays

    def close(self) -> None:
        """Flush what is queued, end the stream, wait for the hub to end it too."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._mailbox.close()
        self._outbox.close(f"endpoint of {self._party!r} is closed")
        self._reader.join(self._close_timeout)
        if self._reader.is_alive():
            log.warning("hub did not end the stream of %r in time; cancelling", self._party)
            self._call.cancel()
            self._reader.join(self._close_timeout)
        self._channel.close()

    # -- the stream --------------------------------------------------------------------

    def _read(self) -> None:
        assembler = Assembler(max_bytes=self._limits.max_message_bytes)
        reason = "the hub ended the stream"
        try:
            for frame in self._call:
                buf = assembler.feed(frame)
                if buf is not None:
                    self._accept(decode(buf, limits=self._limits))
                    buf = None  # let the message go before waiting for the next one
        except grpc.RpcError as exc:
            code, details = status(exc)
            self._refused = code
            reason = f"{details} ({code})" if details else str(code)
        except DecodeError as exc:
            reason = f"malformed input from the hub: {exc}"
            log.warning("closing the stream of %r: %s", self._party, reason)
            self._call.cancel()
        finally:
            self._lost(reason)

    def _accept(self, msg: Message) -> None:
        if not self._welcome.done():
            if msg.kind != WELCOME or msg.sender not in self._peers or msg.sender == self._party:
                raise DecodeError("the hub's first message is not a welcome")
            if self._hub_party is not None and msg.sender != self._hub_party:
                raise DecodeError(f"welcomed by {msg.sender!r}, not by the hub {self._hub_party!r}")
            chunk = msg.meta.get("chunk_bytes")
            if not chunk_ok(chunk):
                raise DecodeError(f"the hub's welcome has a bad chunk_bytes {chunk!r}")
            self._send_chunk = min(self._chunk, chunk)
            self._welcome.set_result(msg.sender)
            return
        if msg.receiver != self._party or msg.sender not in self._peers:
            raise DecodeError(f"hub delivered a message from {msg.sender!r} to {msg.receiver!r}")
        if msg.kind.startswith(RESERVED_PREFIX):  # only the hub sends these
            if msg.kind == PEER_LOST and self._guard is not None:
                self._guard.forget(msg.sender)  # if it comes back, it counts from 1 again
        elif not self._admitted(msg):
            return
        with contextlib.suppress(TransportClosed):  # closing: nobody is listening
            self._mailbox.put(msg)

    def _lost(self, reason: str) -> None:
        self._outbox.close(f"the stream to the hub is gone: {reason}", discard=True)
        if not self._welcome.done():
            self._welcome.set_exception(
                TransportError(f"the hub refused {self._party!r}: {reason}")
            )
            return
        if self._closed:
            return
        hub = self._welcome.result()
        log.warning("%r lost the hub %r: %s", self._party, hub, reason)
        with contextlib.suppress(TransportClosed):
            self._mailbox.put(Message(kind=PEER_LOST, sender=hub, receiver=self._party))
