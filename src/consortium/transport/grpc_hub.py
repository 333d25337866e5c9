"""The hub of the gRPC transport: the hosting party's endpoint and the server spokes dial.

Each spoke holds one bidirectional stream. Per stream the hub runs two threads: the gRPC
handler thread, which writes queued messages down the stream as frames, and a reader
thread, which reassembles the spoke's frames, checks them, and delivers each message to the
hub's mailbox or relays it to another spoke. A relayed message is forwarded as the bytes it
arrived in (its header is decoded and checked; its tensors are neither copied nor
re-encoded).

A spoke that sends a malformed frame or message, or speaks as someone else, is logged and
disconnected; the hub keeps serving the others. When a spoke's stream ends for any reason
the hub delivers :data:`PEER_LOST` from it to its own mailbox and to every spoke it
exchanged messages with.

With ``tls`` the hub serves mutual TLS (see :mod:`grpc_security`): a spoke's identity is the
name in its verified certificate, and its hello must claim that name. With ``job`` the hub
refuses a hello for another job and drops (and logs) every message that is for another job
or replays a sequence number (see :class:`~consortium.security.ReplayGuard`), relayed
messages included; the sender stays connected.

Against hostile peers (anyone who reaches the port in plain text; any certificate holder
with mutual TLS), the hub bounds what each can cost it:

- memory: a message's buffer grows as its bytes arrive, never from the size a frame
  declares; each party has a byte budget (``party_bytes``, by default one message of the
  largest size ``limits`` allows) covering what it has begun sending and what it sent to the
  hub that the hub has not yet taken with ``recv``. A party over its budget is not read from
  until the hub catches up. A message relayed to another spoke leaves the sender's budget
  once queued for that spoke, whose queue holds at most a few messages.
- time: a message begun must be finished within ``message_timeout`` seconds, and a new
  stream must say a valid hello within ``handshake_timeout``; otherwise the stream is cut.
- slots: beyond one stream per roster member, at most ``handshake_slots`` streams may be
  saying hello at once; more are refused at once with RESOURCE_EXHAUSTED (a spoke retries),
  and a slot comes free when its hello succeeds, fails or runs out of time.
- the log: warnings about refused streams are throttled per kind of refusal.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Collection, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc

from consortium.clock import Clock
from consortium.errors import DecodeError, TransportClosed, TransportError, TransportTimeout
from consortium.security import PartyCredentials
from consortium.transport.base import PEER_LOST, wait_until
from consortium.transport.grpc_common import (
    DEFAULT_CHUNK_BYTES,
    DEFAULT_LIMITS,
    HELLO,
    HELLO_MAX_BYTES,
    METHOD,
    MIN_CHUNK_BYTES,
    RESERVED_PREFIX,
    WELCOME,
    ByteBudget,
    Deadlines,
    Outbox,
    Outgoing,
    StreamEndpoint,
    ThrottledLog,
    chunk_ok,
    grpc_options,
    roster_digest,
    write_frames,
)
from consortium.transport.grpc_framing import Assembler
from consortium.transport.grpc_security import peer_identities, server_credentials
from consortium.wire import Limits, Message, decode, encode_parts

__all__ = ["GrpcHub"]

log = logging.getLogger(__name__)

# A stream that is cut gets this long to end with its status before it is cancelled (its
# peer may not be reading, which would hold the handler thread in a send).
_CUT_GRACE_S = 5.0
# Streams gRPC may hold beyond the roster's and the handshake pool's: the ones being turned
# away at once. Past that gRPC itself refuses with RESOURCE_EXHAUSTED.
_REFUSAL_SLOTS = 4


class _Refused(Exception):
    """The spoke is turned away or cut off; ``code`` and ``reason`` become its gRPC status."""

    def __init__(self, code: grpc.StatusCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class _Link:
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
        self.refusal: _Refused | None = None
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


class GrpcHub(StreamEndpoint):
    """The hosting party's :class:`~consortium.transport.Endpoint`, serving the spokes.

    ``peers`` is the roster of every party of the job (this one included). ``address`` is
    where to listen; port 0 picks a free port, and :attr:`address` says which. ``tls``: this
    party's credentials for mutual TLS (None: plain text, with a warning). ``job``: the job
    id every message must carry, which turns on replay protection.

    Bounds on what a peer may cost the hub (see the module's docstring): ``limits`` (the
    largest message: :data:`~consortium.transport.grpc_common.DEFAULT_LIMITS`, 1 GiB, unless
    the job gives :func:`~consortium.transport.grpc_common.limits_for_model`),
    ``party_bytes`` (per party; at least, and by default, the largest message),
    ``message_timeout`` (seconds to finish a message begun), ``handshake_slots`` and
    ``handshake_timeout`` (streams saying hello at once, and seconds to say it).
    """

    def __init__(
        self,
        *,
        party: str,
        peers: Collection[str],
        address: str = "127.0.0.1:0",
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        limits: Limits = DEFAULT_LIMITS,
        clock: Clock | None = None,
        tls: PartyCredentials | None = None,
        job: str | None = None,
        close_timeout: float = 10.0,
        party_bytes: int | None = None,
        message_timeout: float = 600.0,
        handshake_slots: int = 4,
        handshake_timeout: float = 10.0,
    ) -> None:
        if party_bytes is not None and party_bytes < limits.max_message_bytes:
            raise ValueError(
                f"party_bytes ({party_bytes}) must hold at least one message of the largest "
                f"size the limits allow ({limits.max_message_bytes})"
            )
        if handshake_slots < 1 or message_timeout <= 0 or handshake_timeout <= 0:
            raise ValueError("handshake_slots, message_timeout and handshake_timeout must be > 0")
        super().__init__(
            party=party,
            who=f"the hub {party!r}",
            peers=peers,
            chunk_bytes=chunk_bytes,
            limits=limits,
            clock=clock,
            tls=tls,
            job=job,
        )
        self._close_timeout = close_timeout
        self._party_bytes = party_bytes or self._limits.max_message_bytes
        self._message_timeout = message_timeout
        self._handshake_slots = handshake_slots
        self._handshake_timeout = handshake_timeout
        self._tls = tls is not None
        self._job = job or None
        self._digest = roster_digest(self._peers)
        self._cond = threading.Condition(threading.Lock())  # guards everything below
        self._links: dict[str, _Link] = {}  # registered spokes by party name
        self._streams: set[_Link] = set()  # every open stream, registered or not
        self._told: set[tuple[str, str]] = set()  # (receiver, lost party) already notified
        self._handshaking = 0  # streams holding a slot of the handshake pool
        self._budgets: dict[str, ByteBudget] = {}  # per party, kept across its reconnections
        # For each message in the mailbox (by id): its sender's budget and what it holds there.
        self._charges: dict[int, tuple[ByteBudget, int]] = {}
        self._refusals = ThrottledLog(log, clock=self._clock)
        self._deadlines = Deadlines(clock=self._clock, name=f"consortium-hub-{party}-deadlines")
        slots = len(self._peers) - 1 + handshake_slots + _REFUSAL_SLOTS
        self._executor = ThreadPoolExecutor(slots, thread_name_prefix=f"consortium-hub-{party}")
        service, method = METHOD[1:].rsplit("/", 1)
        handler = grpc.stream_stream_rpc_method_handler(self._serve)
        self._server = grpc.server(
            self._executor,
            handlers=[grpc.method_handlers_generic_handler(service, {method: handler})],
            options=grpc_options(self._chunk, server=True),
            maximum_concurrent_rpcs=slots,
        )
        detail = ""
        try:
            if tls is None:
                port = self._server.add_insecure_port(address)
            else:
                port = self._server.add_secure_port(address, server_credentials(tls))
        except RuntimeError as exc:
            port, detail = 0, f": {exc}"
        if not port:
            self._executor.shutdown(wait=False)
            self._deadlines.close()
            raise TransportError(f"could not listen on {address}{detail}; is the port in use?")
        self._address = f"{address.rsplit(':', 1)[0]}:{port}"
        self._server.start()
        if tls is None:
            log.warning(
                "hub %r listens on %s WITHOUT TLS: messages travel in plain text and any "
                "process that reaches the port can claim a party's name",
                party,
                self._address,
            )

    @property
    def address(self) -> str:
        """The ``host:port`` the hub listens on; give it to spokes as ``hub``."""
        return self._address

    def _outbox_to(self, receiver: str) -> Outbox[Outgoing]:
        with self._cond:
            link = self._links.get(receiver)
        if link is None:
            raise TransportClosed(f"party {receiver!r} is not connected to the hub")
        return link.outbox

    def wait_for(self, parties: Iterable[str], timeout: float | None = None) -> None:
        """Return once every party in ``parties`` is connected (TransportTimeout if not)."""
        wanted = set(parties)
        if wanted - self._peers:
            raise TransportError(f"not in the roster: {sorted(wanted - self._peers)}")
        with self._cond:
            connected = wait_until(
                self._clock,
                self._cond,
                lambda: self._closed or wanted <= self._links.keys(),
                timeout,
            )
            if not connected:
                raise TransportTimeout(
                    f"{sorted(wanted - self._links.keys())} did not connect to {self._address} "
                    f"within {timeout} s"
                )
            if not wanted <= self._links.keys():
                raise TransportClosed(f"hub {self._party!r} closed while waiting")

    def close(self) -> None:
        """Stop serving: flush what is queued, end every stream, stop the server."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            streams = list(self._streams)
            self._cond.notify_all()
        self._mailbox.close()
        for link in streams:  # each stream ends once what is queued for it has gone out
            link.outbox.close(f"hub {self._party!r} closed")
        deadline = time.monotonic() + self._close_timeout  # real time, even with a fake clock
        for link in streams:
            link.finished.wait(max(0.0, deadline - time.monotonic()))
        try:  # cancels any stream still open (stop with a grace period would leave a thread)
            self._server.stop(None)
        except Exception:  # closing must not raise; say what happened
            log.exception("stopping the gRPC server of hub %r failed", self._party)
        with self._cond:  # the streams whose readers have not finished
            readers = [link.reader for link in self._streams if link.reader]
        for thread in readers:
            thread.join(self._close_timeout)
        self._executor.shutdown(wait=True)
        self._deadlines.close()
        self._refusals.flush()
        self._warnings.flush()

    def recv(self, timeout: float | None = None) -> Message:
        msg = self._mailbox.get(timeout)
        with self._cond:
            charge = self._charges.pop(id(msg), None)
        if charge is not None:  # the message is the caller's now: its sender may send more
            charge[0].give(charge[1])
        return msg

    @property
    def budget_used(self) -> dict[str, int]:
        """Per party that has said hello, the bytes of its budget in use now: the declared
        size of the message it is sending, and what it sent that ``recv`` has not taken."""
        with self._cond:
            budgets = dict(self._budgets)
        return {name: budget.used for name, budget in budgets.items()}

    @property
    def buffered_bytes(self) -> int:
        """The bytes of unfinished messages the hub holds now, over all streams."""
        with self._cond:
            return sum(link.assembler.buffered for link in self._streams if link.assembler)

    # -- one stream per spoke ----------------------------------------------------------

    def _serve(self, requests: Iterator[bytes], context: Any) -> Iterator[bytes]:
        """The gRPC handler: start the reader, then write queued messages as frames."""
        identities = peer_identities(context) if self._tls else None
        link = _Link(clock=self._clock, identities=identities, context=context)
        with self._cond:
            busy = self._closed or self._handshaking >= self._handshake_slots
            if not busy:
                self._handshaking += 1
                link.handshaking = True
                self._streams.add(link)
                link.reader = threading.Thread(
                    target=self._read,
                    args=(link, requests),
                    name=f"consortium-hub-{self._party}-reader",
                    daemon=True,
                )
        if busy:
            if self._closed:
                context.set_code(grpc.StatusCode.UNAVAILABLE)
                context.set_details(f"hub {self._party!r} is closing")
                return
            reason = f"{self._handshake_slots} other connections are saying hello; retry shortly"
            self._refusals.warning(
                "refused stream (RESOURCE_EXHAUSTED)",
                "refusing the stream of %s: %s",
                link.label,
                reason,
            )
            context.set_code(grpc.StatusCode.RESOURCE_EXHAUSTED)
            context.set_details(reason)
            return
        assert link.reader is not None
        self._deadlines.arm(
            link,
            self._handshake_timeout,
            lambda: self._cut(link, f"no valid hello within {self._handshake_timeout:g} s"),
        )
        if not context.add_callback(link.end):
            link.end()  # the RPC is already over
        link.reader.start()
        try:
            yield from write_frames(link.outbox, lambda: link.chunk_bytes)
        finally:
            link.outbox.close("the stream ended", discard=True)
        if link.refusal is not None:
            context.set_code(link.refusal.code)
            context.set_details(link.refusal.reason)

    def _cut(self, link: _Link, reason: str) -> None:
        """End ``link``'s stream with DEADLINE_EXCEEDED (on the deadline thread)."""
        if link.finished.is_set():
            return
        if link.refusal is None:
            link.refusal = _Refused(grpc.StatusCode.DEADLINE_EXCEEDED, reason)
        link.outbox.close(reason, discard=True)  # the handler returns and sends the status
        if link.budget is not None:
            link.budget.wake()
        self._deadlines.arm(("cancel", link), _CUT_GRACE_S, lambda: self._cancel(link))

    @staticmethod
    def _cancel(link: _Link) -> None:
        if not link.finished.is_set():
            link.context.cancel()

    def _read(self, link: _Link, requests: Iterator[bytes]) -> None:
        def begin(total: int) -> None:  # a message begins: hold its declared size for it
            if link.budget is None:
                return  # before the hello: one message of at most HELLO_MAX_BYTES
            if not link.budget.take(total, link.finished.is_set):
                raise TransportClosed("the stream ended")
            link.reserved = total

        assembler = link.assembler = Assembler(
            max_bytes=min(HELLO_MAX_BYTES, self._limits.max_message_bytes), on_begin=begin
        )
        timing = False  # whether a deadline runs for the message in progress
        try:
            for frame in requests:
                buf = assembler.feed(frame)
                if buf is None:
                    if not timing and assembler.busy and link.party is not None:
                        timing = True
                        self._deadlines.arm(
                            link,
                            self._message_timeout,
                            lambda: self._cut(
                                link,
                                f"a message was not finished within {self._message_timeout:g} s",
                            ),
                        )
                    continue
                if timing:
                    timing = False
                    self._deadlines.cancel(link)
                msg = decode(buf, limits=self._limits)
                if link.party is None:
                    self._register(link, msg)
                    assembler.max_bytes = self._limits.max_message_bytes
                else:
                    charge, link.reserved = link.reserved, 0
                    self._route(link, msg, buf, charge)
                del buf, msg  # let the message go before waiting for the next one
            link.said_goodbye = link.refusal is None
        except DecodeError as exc:
            link.refusal = _Refused(grpc.StatusCode.INVALID_ARGUMENT, f"malformed input: {exc}")
        except _Refused as exc:
            link.refusal = exc
        except (grpc.RpcError, TransportClosed):
            pass  # the stream broke or was cut: the spoke is gone
        except Exception as exc:  # a bug here must not take the hub down; cut this stream
            log.exception("unexpected error on the stream of %s", link.label)
            link.refusal = _Refused(grpc.StatusCode.INTERNAL, f"hub error: {exc}")
        finally:
            del assembler  # the unfinished message goes now, not when the thread is collected
            link.assembler = None
            if link.budget is not None and link.reserved:
                link.budget.give(link.reserved)
                link.reserved = 0
            if link.refusal is not None:
                code = link.refusal.code.name
                self._refusals.warning(
                    f"refused stream ({code})",
                    "closing the stream of %s: %s",
                    link.label,
                    link.refusal.reason,
                )
            self._drop(link)

    def _register(self, link: _Link, hello: Message) -> None:
        name, meta = hello.sender, hello.meta
        chunk = meta.get("chunk_bytes")
        if hello.kind != HELLO:
            raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, "the stream must open with a hello")
        if name not in self._peers or name == self._party:
            raise _Refused(
                grpc.StatusCode.PERMISSION_DENIED,
                f"party {name!r} is not a spoke of this job",  # the roster stays private
            )
        if self._tls and (link.identities is None or name not in link.identities):
            raise _Refused(
                grpc.StatusCode.PERMISSION_DENIED,
                f"a spoke whose certificate is for {sorted(link.identities or ())} "
                f"claimed to be {name!r}",
            )
        if meta.get("roster") != self._digest:
            raise _Refused(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"party {name!r} was given a different roster than the hub; same job file?",
            )
        if self._job is not None and hello.job != self._job:
            raise _Refused(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"party {name!r} runs job {hello.job!r}, the hub runs {self._job!r}; "
                "did every party start from the same job file?",
            )
        if not chunk_ok(chunk):
            raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, f"bad chunk_bytes {chunk!r}")
        with self._cond:
            if self._closed:
                raise _Refused(grpc.StatusCode.UNAVAILABLE, f"hub {self._party!r} is closing")
            if name in self._links:
                raise _Refused(
                    grpc.StatusCode.ALREADY_EXISTS, f"party {name!r} is already connected"
                )
            if link.refusal is not None:  # its handshake ran out of time meanwhile
                raise link.refusal
            link.party = name
            link.chunk_bytes = min(chunk, self._chunk)
            self._links[name] = link
            self._told = {pair for pair in self._told if name not in pair}
            if link.handshaking:  # from the handshake pool to the party's own slot
                link.handshaking = False
                self._handshaking -= 1
            if name not in self._budgets:
                self._budgets[name] = ByteBudget(self._party_bytes, clock=self._clock)
            link.budget = self._budgets[name]
            self._cond.notify_all()
        self._deadlines.cancel(link)
        if self._guard is not None:
            self._guard.forget(name)  # a new session numbers its messages from 1 again
        how = "with a verified certificate" if self._tls else "without TLS"
        log.info("party %r connected to hub %r %s", name, self._party, how)
        welcome = Message(
            kind=WELCOME,
            sender=self._party,
            receiver=name,
            job=self._job or "",
            meta={"chunk_bytes": self._chunk},
        )
        link.outbox.put(encode_parts(welcome), force=True)

    def _route(self, link: _Link, msg: Message, buf: bytearray, charge: int) -> None:
        """Deliver or relay ``msg`` (``buf``, holding ``charge`` bytes of the budget of its
        sender) or refuse it. The charge goes back unless ``msg`` waits in the mailbox."""
        assert link.budget is not None
        kept = False
        try:
            kept = self._deliver(link, msg, buf, charge)
        finally:
            if not kept:
                link.budget.give(charge)

    def _deliver(self, link: _Link, msg: Message, buf: bytearray, charge: int) -> bool:
        src, dst = link.party, msg.receiver
        assert src is not None and link.budget is not None
        if msg.sender != src:
            raise _Refused(grpc.StatusCode.PERMISSION_DENIED, f"{src!r} sent as {msg.sender!r}")
        if msg.kind.startswith(RESERVED_PREFIX):
            raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, f"reserved kind {msg.kind!r}")
        if dst not in self._peers or dst == src:
            raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, f"bad receiver {dst!r}")
        if not self._admitted(msg):
            return False
        if dst == self._party:
            with self._cond:  # before ``put``: ``recv`` may take it at once
                self._charges[id(msg)] = (link.budget, charge)
            try:
                self._mailbox.put(msg)
            except TransportClosed:  # the hub is closing
                with self._cond:
                    del self._charges[id(msg)]
                return False
            return True
        with self._cond:
            target = self._links.get(dst)
            if target is not None:
                link.contacts.add(dst)
                target.contacts.add(src)
        try:
            if target is None:
                raise TransportClosed(f"{dst!r} is not connected")
            target.outbox.put(([memoryview(buf)], len(buf)))
        except TransportClosed:
            self._tell_lost(src, dst)
        return False

    def _drop(self, link: _Link) -> None:
        """The stream ended: forget it and tell whoever should know."""
        link.outbox.close("the stream ended", discard=True)
        self._deadlines.cancel(link)
        name = link.party
        with self._cond:
            self._streams.discard(link)
            if link.handshaking:
                link.handshaking = False
                self._handshaking -= 1
            if name is None or self._links.get(name) is not link:
                return
            del self._links[name]
            contacts = sorted(link.contacts)
            closing = self._closed
        if closing:
            return
        if link.said_goodbye:
            log.info("party %r left hub %r", name, self._party)
        else:
            log.warning("lost party %r at hub %r", name, self._party)
        with contextlib.suppress(TransportClosed):
            self._mailbox.put(Message(kind=PEER_LOST, sender=name, receiver=self._party))
        for other in contacts:
            self._tell_lost(other, name)

    def _tell_lost(self, receiver: str, lost: str) -> None:
        """Send ``receiver`` one PEER_LOST from ``lost`` (once per disappearance)."""
        with self._cond:
            target = self._links.get(receiver)
            if target is None or (receiver, lost) in self._told:
                return
            self._told.add((receiver, lost))
        notice = Message(kind=PEER_LOST, sender=lost, receiver=receiver)
        with contextlib.suppress(TransportClosed):
            target.outbox.put(encode_parts(notice), force=True)
