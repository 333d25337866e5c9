"""Collecting replies with a quorum and a deadline.

A gather waits, event-driven, for one reply from each expected party until the deadline.
A party that disconnects or does not answer in time is a recorded failure; a reply the
caller rejects (wrong shape, NaN, ...) is a recorded failure too. The gather succeeds when
at least ``quorum`` parties replied; otherwise it raises :class:`QuorumLost` naming the
missing parties. A :data:`CRASHED` notice from an expected party fails the run at once.

With ``on_back``, an expected party lost during the gather may come back: while the quorum
still needs it (and the deadline allows), the gather waits for it; when it announces itself
again (:data:`JOIN`, sent by a restarted program) ``on_back`` is asked to give it its request
anew, and it is expected again. A gather for JOIN itself takes that JOIN as its reply. A
party that replied and was lost afterwards is not asked again: its reply counts once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from consortium.errors import PartyCrashed, QuorumLost, TransportTimeout
from consortium.runtime.context import PartyContext
from consortium.runtime.program import CRASHED, JOIN
from consortium.transport import PEER_LOST
from consortium.wire import Message

__all__ = ["GatherResult", "gather", "quorum_size"]

log = logging.getLogger(__name__)

# on_reply returns None to accept a reply, or a reason string to record it as a failure.
ReplyHandler = Callable[[Message], str | None]


@dataclass(slots=True)
class GatherResult:
    replied: list[str] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    lost: set[str] = field(default_factory=set)  # disconnected: do not ask them again


def quorum_size(fraction: float, expected: int) -> int:
    """Smallest number of replies that satisfies ``fraction`` of ``expected`` (at least 1)."""
    need = int(-(-fraction * expected // 1))  # ceil without float surprises at integers
    return max(1, min(expected, need))


def gather(
    ctx: PartyContext,
    *,
    expected: Collection[str],
    kind: str,
    round: int,
    timeout: float,
    quorum: int,
    on_reply: ReplyHandler,
    on_other: Callable[[Message], None] | None = None,
    on_back: Callable[[Message], bool] | None = None,
) -> GatherResult:
    """Wait for one ``kind`` reply for ``round`` from each of ``expected``. ``on_back``
    (the JOIN of a party lost during the gather) returns whether it was asked again."""
    pending = set(expected)
    away: set[str] = set()  # lost while expected: may come back while the quorum needs it
    result = GatherResult()
    deadline = ctx.clock.now() + timeout

    def accept(msg: Message) -> None:
        pending.discard(msg.sender)
        reason = on_reply(msg)
        if reason is None:
            result.replied.append(msg.sender)
        else:
            log.warning("round %d: rejected reply from %s: %s", round, msg.sender, reason)
            result.failures[msg.sender] = reason

    while pending or (on_back is not None and away and len(result.replied) < quorum):
        remaining = deadline - ctx.clock.now()
        if remaining <= 0:
            break
        try:
            msg = ctx.recv(timeout=remaining)
        except TransportTimeout:
            break
        if msg.kind == CRASHED:
            raise PartyCrashed(msg.sender, str(msg.meta.get("reason", "no reason given")))
        if msg.kind == PEER_LOST:
            result.lost.add(msg.sender)
            if msg.sender in pending:
                pending.discard(msg.sender)
                away.add(msg.sender)
                result.failures[msg.sender] = "disconnected"
            continue
        if msg.kind == kind and msg.sender in pending and msg.round == round:
            accept(msg)
            continue
        if on_back is not None and msg.kind == JOIN and msg.sender in away and on_back(msg):
            log.info("round %d: %s is back", round, msg.sender)
            away.discard(msg.sender)
            result.lost.discard(msg.sender)
            del result.failures[msg.sender]
            pending.add(msg.sender)
            if kind == JOIN and msg.round == round:
                accept(msg)
            continue
        if on_other is not None:
            on_other(msg)
        else:
            log.debug(
                "round %d: ignored %s from %s (round %d)", round, msg.kind, msg.sender, msg.round
            )
    for party in sorted(pending):
        result.failures[party] = f"no reply within {timeout:g} s"
    if len(result.replied) < quorum:
        missing = tuple(sorted(result.failures))
        details = "; ".join(f"{p}: {result.failures[p]}" for p in missing)
        raise QuorumLost(
            f"round {round}: {len(result.replied)} of {len(expected)} parties replied, "
            f"the quorum is {quorum}; missing: {details}",
            missing=missing,
        )
    return result
