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
exchanged messages with; the party may connect again (a new hello once its old stream is
gone), and whoever was told it was lost is then told :data:`PEER_BACK`.

With ``tls`` the hub serves mutual TLS (see :mod:`grpc_security`): a spoke's identity is the
name in its verified certificate, and its hello must claim that name. With ``job`` the hub
refuses a hello for another job and drops (and logs) every message that is for another job
or replays a sequence number (see :class:`~consortium.security.ReplayGuard`), relayed
messages included; the sender stays connected.

Against hostile peers the hub bounds what each can cost it in memory, time, connection slots
and log lines (see :mod:`grpc_hub_guard`): streams beyond one per roster member and the
handshake pool are refused at once with RESOURCE_EXHAUSTED (a spoke retries).
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
from consortium.errors import TransportClosed, TransportError, TransportTimeout
from consortium.security import PartyCredentials
from consortium.transport.base import PEER_BACK, PEER_LOST, wait_until
from consortium.transport.grpc_common import (
    DEFAULT_CHUNK_BYTES,
    DEFAULT_LIMITS,
    METHOD,
    RESERVED_PREFIX,
    WELCOME,
    Outbox,
    Outgoing,
    StreamEndpoint,
    grpc_options,
    write_frames,
)
from consortium.transport.grpc_hub_guard import HubGuard
from consortium.transport.grpc_hub_stream import Link, Refused, read_stream
from consortium.transport.grpc_security import peer_identities, server_credentials
from consortium.wire import Limits, Message, encode_parts

__all__ = ["GrpcHub"]

log = logging.getLogger(__name__)

# Streams gRPC may hold beyond the roster's and the handshake pool's: the ones being turned
# away at once. Past that gRPC itself refuses with RESOURCE_EXHAUSTED.
_REFUSAL_SLOTS = 4


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
        self._bounds = HubGuard(
            party=party,
            peers=self._peers,
            tls=tls is not None,
            job=job or None,
            clock=self._clock,
            message_bytes=self._limits.max_message_bytes,
            party_bytes=party_bytes,
            message_timeout=message_timeout,
            handshake_slots=handshake_slots,
            handshake_timeout=handshake_timeout,
        )
        self._tls = tls is not None
        self._job = job or None
        self._cond = threading.Condition(threading.Lock())  # guards everything below
        self._links: dict[str, Link] = {}  # registered spokes by party name
        self._streams: set[Link] = set()  # every open stream, registered or not
        self._told: set[tuple[str, str]] = set()  # (receiver, lost party) already notified
        self._gone: set[str] = set()  # parties reported lost to the hub's own mailbox
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
            self._bounds.close()
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
        self._bounds.close()
        self._warnings.flush()

    def recv(self, timeout: float | None = None) -> Message:
        msg = self._mailbox.get(timeout)
        self._bounds.release(msg)  # the caller's now: its sender may send more
        return msg

    @property
    def budget_used(self) -> dict[str, int]:
        """Per party that has said hello, the bytes of its budget in use now: the declared
        size of the message it is sending, and what it sent that ``recv`` has not taken."""
        return self._bounds.budget_used()

    @property
    def buffered_bytes(self) -> int:
        """The bytes of unfinished messages the hub holds now, over all streams."""
        with self._cond:
            return sum(link.assembler.buffered for link in self._streams if link.assembler)

    # -- one stream per spoke ----------------------------------------------------------

    def _serve(self, requests: Iterator[bytes], context: Any) -> Iterator[bytes]:
        """The gRPC handler: start the reader, then write queued messages as frames."""
        identities = peer_identities(context) if self._tls else None
        link = Link(clock=self._clock, identities=identities, context=context)
        with self._cond:
            busy = self._closed or not self._bounds.take_slot(link)
            if not busy:
                self._streams.add(link)
                link.reader = threading.Thread(
                    target=read_stream,
                    args=(link, requests),
                    kwargs={
                        "bounds": self._bounds,
                        "limits": self._limits,
                        "on_hello": self._register,
                        "on_message": self._route,
                        "on_end": self._drop,
                    },
                    name=f"consortium-hub-{self._party}-reader",
                    daemon=True,
                )
        if busy:
            if self._closed:
                context.set_code(grpc.StatusCode.UNAVAILABLE)
                context.set_details(f"hub {self._party!r} is closing")
                return
            slots = self._bounds.handshake_slots
            refusal = Refused(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{slots} other connections are saying hello; retry shortly",
            )
            self._bounds.refused(link, "refusing", refusal)
            context.set_code(refusal.code)
            context.set_details(refusal.reason)
            return
        assert link.reader is not None
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

    def _register(self, link: Link, hello: Message) -> None:
        name = hello.sender
        chunk = self._bounds.check_hello(link, hello)
        with self._cond:
            if self._closed:
                raise Refused(grpc.StatusCode.UNAVAILABLE, f"hub {self._party!r} is closing")
            if name in self._links:
                raise Refused(
                    grpc.StatusCode.ALREADY_EXISTS, f"party {name!r} is already connected"
                )
            if link.refusal is not None:  # its handshake ran out of time meanwhile
                raise link.refusal
            link.party = name
            link.chunk_bytes = min(chunk, self._chunk)
            self._links[name] = link
            told = sorted(receiver for receiver, lost in self._told if lost == name)
            self._told = {pair for pair in self._told if name not in pair}
            self._bounds.introduced(link, name)
            # Under the lock, so never ahead of the PEER_LOST it answers.
            self._announce(PEER_BACK, name, told, hub=name in self._gone)
            self._gone.discard(name)
            self._cond.notify_all()
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

    def _route(self, link: Link, msg: Message, buf: bytearray, charge: int) -> None:
        """Deliver or relay ``msg`` (``buf``, holding ``charge`` bytes of the budget of its
        sender) or refuse it. The charge goes back unless ``msg`` waits in the mailbox."""
        assert link.budget is not None
        kept = False
        try:
            kept = self._deliver(link, msg, buf, charge)
        finally:
            if not kept:
                link.budget.give(charge)

    def _deliver(self, link: Link, msg: Message, buf: bytearray, charge: int) -> bool:
        src, dst = link.party, msg.receiver
        assert src is not None and link.budget is not None
        if msg.sender != src:
            raise Refused(grpc.StatusCode.PERMISSION_DENIED, f"{src!r} sent as {msg.sender!r}")
        if msg.kind.startswith(RESERVED_PREFIX):
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, f"reserved kind {msg.kind!r}")
        if dst not in self._peers or dst == src:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, f"bad receiver {dst!r}")
        if not self._admitted(msg):
            return False
        if dst == self._party:
            self._bounds.hold(msg, link.budget, charge)  # before ``put``: ``recv`` may take it
            try:
                self._mailbox.put(msg)
            except TransportClosed:  # the hub is closing
                self._bounds.release(msg)
                return True  # released: nothing more to give back
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

    def _drop(self, link: Link) -> None:
        """The stream ended: forget it and tell whoever should know."""
        link.outbox.close("the stream ended", discard=True)
        name = link.party
        with self._cond:
            self._streams.discard(link)
            self._bounds.ended(link)
            if name is None or self._links.get(name) is not link:
                return
            del self._links[name]
            if self._closed:
                return
            self._gone.add(name)
            told = [c for c in sorted(link.contacts) if (c, name) not in self._told]
            self._told.update((c, name) for c in told)
            self._announce(PEER_LOST, name, told, hub=True)
        if link.said_goodbye:
            log.info("party %r left hub %r", name, self._party)
        else:
            log.warning("lost party %r at hub %r", name, self._party)

    def _announce(self, kind: str, party: str, spokes: Iterable[str], *, hub: bool) -> None:
        """Deliver a ``kind`` notice from ``party`` to ``spokes`` and, with ``hub``, to the
        hub's own mailbox (under the hub's lock: notices about one party keep their order)."""
        if hub:
            with contextlib.suppress(TransportClosed):
                self._mailbox.put(Message(kind=kind, sender=party, receiver=self._party))
        for receiver in spokes:
            target = self._links.get(receiver)
            if target is not None:
                with contextlib.suppress(TransportClosed):
                    notice = Message(kind=kind, sender=party, receiver=receiver)
                    target.outbox.put(encode_parts(notice), force=True)

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
