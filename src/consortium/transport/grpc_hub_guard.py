"""Who may connect to the gRPC hub, and what each peer may cost it.

A stream must open with a hello for a spoke of this job's roster (with mutual TLS, the name
its verified certificate gives), from the same job file (a digest of the roster and, with
``job``, the job id). Against hostile peers (anyone who reaches the port in plain text; any
certificate holder with mutual TLS), :class:`HubGuard` bounds what each can cost the hub:

- memory: a message's buffer grows as its bytes arrive, never from the size a frame
  declares; each party has a byte budget (``party_bytes``) covering what it has begun
  sending and what it sent to the hub that the hub has not yet taken with ``recv``. A
  party over its budget is not read from until the hub catches up. A message relayed to
  another spoke leaves the sender's budget once queued for that spoke, whose queue holds at
  most a few messages. A budget belongs to the party, not to a stream: a party that
  reconnects finds it as it left it.
- time: a message begun must be finished within ``message_timeout`` seconds, and a new
  stream must say a valid hello within ``handshake_timeout``; otherwise the stream is cut.
- slots: beyond one stream per roster member, at most ``handshake_slots`` streams may be
  saying hello at once; a slot comes free when its hello succeeds, fails or runs out of time.
- the log: warnings about refused streams are throttled per kind of refusal.
"""

from __future__ import annotations

import logging
import threading

import grpc

from consortium.clock import Clock
from consortium.errors import TransportClosed
from consortium.transport.grpc_common import (
    HELLO,
    ByteBudget,
    Deadlines,
    ThrottledLog,
    chunk_ok,
    roster_digest,
)
from consortium.transport.grpc_hub_stream import Link, Refused
from consortium.wire import Message

__all__ = ["HubGuard"]

log = logging.getLogger(__name__)

# A stream that is cut gets this long to end with its status before it is cancelled (its
# peer may not be reading, which would hold the handler thread in a send).
_CUT_GRACE_S = 5.0


class HubGuard:
    """The checks on a hello, the handshake pool, the parties' byte budgets (``party_bytes``,
    by default ``message_bytes``: one message of the largest size), the deadlines on
    handshakes and unfinished messages, and the throttled log of refusals, for the hub
    ``party`` of the roster ``peers``."""

    def __init__(
        self,
        *,
        party: str,
        peers: frozenset[str],
        tls: bool,
        job: str | None,
        clock: Clock,
        message_bytes: int,
        party_bytes: int | None,
        message_timeout: float,
        handshake_slots: int,
        handshake_timeout: float,
    ) -> None:
        if party_bytes is not None and party_bytes < message_bytes:
            raise ValueError(
                f"party_bytes ({party_bytes}) must hold at least one message of the largest "
                f"size the limits allow ({message_bytes})"
            )
        if handshake_slots < 1 or message_timeout <= 0 or handshake_timeout <= 0:
            raise ValueError("handshake_slots, message_timeout and handshake_timeout must be > 0")
        self.handshake_slots = handshake_slots
        self._party, self._peers, self._tls, self._job = party, peers, tls, job
        self._digest = roster_digest(peers)
        self._clock = clock
        self._party_bytes = party_bytes or message_bytes
        self._message_timeout = message_timeout
        self._handshake_timeout = handshake_timeout
        self._lock = threading.Lock()  # guards the three below
        self._handshaking = 0  # streams holding a slot of the handshake pool
        self._budgets: dict[str, ByteBudget] = {}  # per party, kept across its reconnections
        # For each message in the mailbox (by id): its sender's budget and what it holds there.
        self._charges: dict[int, tuple[ByteBudget, int]] = {}
        self.refusals = ThrottledLog(log, clock=clock)
        self._deadlines = Deadlines(clock=clock, name=f"consortium-hub-{party}-deadlines")

    def close(self) -> None:
        self._deadlines.close()
        self.refusals.flush()

    def check_hello(self, link: Link, hello: Message) -> int:
        """Refuse ``hello`` unless a spoke of this job may say it on ``link``; the largest
        frame the spoke accepts."""
        name, meta = hello.sender, hello.meta
        chunk = meta.get("chunk_bytes")
        if hello.kind != HELLO:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, "the stream must open with a hello")
        if name not in self._peers or name == self._party:
            raise Refused(
                grpc.StatusCode.PERMISSION_DENIED,
                f"party {name!r} is not a spoke of this job",  # the roster stays private
            )
        if self._tls and (link.identities is None or name not in link.identities):
            raise Refused(
                grpc.StatusCode.PERMISSION_DENIED,
                f"a spoke whose certificate is for {sorted(link.identities or ())} "
                f"claimed to be {name!r}",
            )
        if meta.get("roster") != self._digest:
            raise Refused(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"party {name!r} was given a different roster than the hub; same job file?",
            )
        if self._job is not None and hello.job != self._job:
            raise Refused(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"party {name!r} runs job {hello.job!r}, the hub runs {self._job!r}; "
                "did every party start from the same job file?",
            )
        if not chunk_ok(chunk):
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, f"bad chunk_bytes {chunk!r}")
        return chunk

    # -- the handshake pool -------------------------------------------------------------

    def take_slot(self, link: Link) -> bool:
        """Give ``link`` a slot of the handshake pool, and ``handshake_timeout`` seconds to
        say its hello; False when every slot is taken."""
        with self._lock:
            if self._handshaking >= self.handshake_slots:
                return False
            self._handshaking += 1
            link.handshaking = True
        self._deadlines.arm(
            link,
            self._handshake_timeout,
            lambda: self.cut(link, f"no valid hello within {self._handshake_timeout:g} s"),
        )
        return True

    def introduced(self, link: Link, party: str) -> None:
        """``link`` said a valid hello as ``party``: from the pool to the party's own slot,
        under the party's budget."""
        with self._lock:
            self._free(link)
            if party not in self._budgets:
                self._budgets[party] = ByteBudget(self._party_bytes, clock=self._clock)
            link.budget = self._budgets[party]
        self._deadlines.cancel(link)

    def ended(self, link: Link) -> None:
        """``link``'s stream is over: its slot and deadlines go."""
        with self._lock:
            self._free(link)
        self._deadlines.cancel(link)

    def _free(self, link: Link) -> None:
        if link.handshaking:
            link.handshaking = False
            self._handshaking -= 1

    # -- byte budgets -------------------------------------------------------------------

    def begin(self, link: Link, total: int) -> None:
        """A message of ``total`` bytes begins on ``link``: hold that much of its budget,
        waiting for room. Before the hello there is no budget: the assembler bounds the
        hello itself."""
        if link.budget is None:
            return
        if not link.budget.take(total, link.finished.is_set):
            raise TransportClosed("the stream ended")
        link.reserved = total

    def time_message(self, link: Link) -> None:
        """A message spans frames on ``link``: it must be finished in ``message_timeout``."""
        self._deadlines.arm(
            link,
            self._message_timeout,
            lambda: self.cut(
                link, f"a message was not finished within {self._message_timeout:g} s"
            ),
        )

    def untime_message(self, link: Link) -> None:
        self._deadlines.cancel(link)

    def complete(self, link: Link) -> int:
        """The message in progress on ``link`` is complete: what it holds of the budget,
        now the caller's to hand on or give back."""
        charge, link.reserved = link.reserved, 0
        return charge

    def give_back(self, link: Link) -> None:
        """Return what an unfinished message of ``link`` held (its stream ended)."""
        if link.budget is not None and link.reserved:
            link.budget.give(link.reserved)
            link.reserved = 0

    def hold(self, msg: Message, budget: ByteBudget, charge: int) -> None:
        """``msg`` waits in the mailbox, holding ``charge`` bytes of ``budget``."""
        with self._lock:
            self._charges[id(msg)] = (budget, charge)

    def release(self, msg: Message) -> None:
        """``msg`` left the mailbox (or never entered it): its sender may send more."""
        with self._lock:
            held = self._charges.pop(id(msg), None)
        if held is not None:
            held[0].give(held[1])

    def budget_used(self) -> dict[str, int]:
        with self._lock:
            budgets = dict(self._budgets)
        return {name: budget.used for name, budget in budgets.items()}

    # -- cutting a stream ---------------------------------------------------------------

    def cut(self, link: Link, reason: str) -> None:
        """End ``link``'s stream with DEADLINE_EXCEEDED (on the deadline thread)."""
        if link.finished.is_set():
            return
        if link.refusal is None:
            link.refusal = Refused(grpc.StatusCode.DEADLINE_EXCEEDED, reason)
        link.outbox.close(reason, discard=True)  # the handler returns and sends the status
        if link.budget is not None:
            link.budget.wake()
        self._deadlines.arm(("cancel", link), _CUT_GRACE_S, lambda: _cancel(link))

    def refused(self, link: Link, verb: str, refusal: Refused) -> None:
        """Log (throttled) that ``link`` was refused or cut, and why."""
        self.refusals.warning(
            f"refused stream ({refusal.code.name})",
            "%s the stream of %s: %s",
            verb,
            link.label,
            refusal.reason,
        )


def _cancel(link: Link) -> None:
    if not link.finished.is_set():
        link.context.cancel()
