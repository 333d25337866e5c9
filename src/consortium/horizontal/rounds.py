"""One synchronous round of local training, shared by every aggregator of a hierarchy.

Send the strategy's instructions to the selected parties, fold their replies into the
strategy's accumulator as they arrive (quorum and deadline from the settings), and let the
strategy aggregate. The root aggregator adds evaluation and tracking on top; an
intermediate aggregator hands the result up as its own reply.

Parties come back: a selected party lost during the round that announces itself again (a
restarted trainer sends JOIN) is sent the round's instructions anew while the quorum still
needs it, and its one reply counts once; a JOIN from anyone else during the round is handed
to the caller (:attr:`FitRound.joined`) to readmit from the next round.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from consortium.errors import TransportClosed
from consortium.horizontal.settings import HorizontalSettings
from consortium.horizontal.strategy import ServerState, Strategy
from consortium.runtime import JOIN, STOP, PartyContext, gather, quorum_size
from consortium.transport import PEER_BACK, PEER_LOST
from consortium.wire import Message, MetaValue

__all__ = [
    "FAILED",
    "FIT",
    "FIT_REPLY",
    "FitRound",
    "children_of",
    "fit_round",
    "join_children",
    "parent_of",
    "rejoin_if_back",
    "run_is_over",
]

FIT = "fit"
FIT_REPLY = "fit.reply"
FAILED = "failed"  # a reply's meta key: the party could not do its part, and why


@dataclass(slots=True)
class FitRound:
    """What one round gave: the new state, and who did what."""

    state: ServerState
    metrics: dict[str, float]
    party_metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    replied: list[str] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    unreachable: dict[str, str] = field(default_factory=dict)  # do not ask again
    joined: list[str] = field(default_factory=list)  # announced themselves (JOIN) meanwhile
    returned: list[str] = field(default_factory=list)  # lost, back and asked again this round
    examples: int = 0  # the accepted replies' num_examples, summed


def _frozen(arr: np.ndarray) -> np.ndarray:
    view = np.asarray(arr).view()  # a 0-d aggregate may come back as a numpy scalar
    view.flags.writeable = False
    return view


def _numeric(meta: Mapping[str, MetaValue]) -> dict[str, float]:
    return {k: float(v) for k, v in meta.items() if isinstance(v, int | float)}


def fit_round(
    ctx: PartyContext,
    *,
    strategy: Strategy,
    state: ServerState,
    rnd: int,
    selected: Sequence[str],
    settings: HorizontalSettings,
    epochs: Mapping[str, int] | None = None,
) -> FitRound:
    """Run round ``rnd`` over ``selected``; raises QuorumLost when too few reply.
    ``epochs`` overrides the local epochs of some parties (the semi-synchronous schedule)."""
    instructions = strategy.configure(rnd, state)
    meta: dict[str, MetaValue] = {
        **instructions.config,
        "epochs": settings.local.epochs,
        "batch_size": settings.local.batch_size,
        "lr": settings.local.lr,
    }
    weights = {  # shared by all sends
        k: _frozen(v) for k, v in {**instructions.weights, **instructions.aux}.items()
    }
    out = FitRound(state=state, metrics={})
    sent: list[str] = []

    def ask(party: str) -> bool:
        own = meta if epochs is None or party not in epochs else {**meta, "epochs": epochs[party]}
        try:
            ctx.send(FIT, party, round=rnd, meta=own, tensors=weights)
            return True
        except TransportClosed:
            return False

    for party in selected:
        if ask(party):
            sent.append(party)
        else:
            out.unreachable[party] = "disconnected"

    def on_back(msg: Message) -> bool:
        if not ask(msg.sender):
            return False
        out.returned.append(msg.sender)
        return True

    def on_other(msg: Message) -> None:
        if msg.kind == JOIN:
            out.joined.append(msg.sender)

    acc = strategy.begin(rnd, state, expected=len(sent))

    def on_reply(msg: Message) -> str | None:
        if FAILED in msg.meta:
            return f"failed: {msg.meta[FAILED]}"
        reason = acc.add(msg.sender, msg.tensors, msg.meta)
        if reason is None:
            out.party_metrics[msg.sender] = _numeric(msg.meta)
            n = msg.meta.get("num_examples")
            out.examples += n if isinstance(n, int) else 0
        return reason

    result = gather(
        ctx,
        expected=sent,
        kind=FIT_REPLY,
        round=rnd,
        timeout=settings.round_timeout,
        quorum=quorum_size(settings.quorum, len(selected)),
        on_reply=on_reply,
        on_other=on_other,
        on_back=on_back,
    )
    for party in result.lost:
        out.unreachable[party] = "disconnected"
    for party, reason in result.failures.items():
        if reason.startswith("no reply"):
            out.unreachable[party] = reason
    out.replied, out.failures = result.replied, dict(result.failures)
    out.state, out.metrics = strategy.aggregate(rnd, state, acc, result.failures)
    return out


def children_of(ctx: PartyContext) -> list[str]:
    """The parties that report to this one (its trainers in a star)."""
    return ctx.topology.children(ctx.name) or ctx.peers("trainer")


def parent_of(ctx: PartyContext) -> str:
    """The party this one reports to (the hub when the topology has no tree)."""
    return ctx.topology.parent(ctx.name) or ctx.topology.hub


def run_is_over(ctx: PartyContext, msg: Message) -> bool:
    """Whether ``msg`` ends this party's run: a STOP, or the loss of the hub (across
    processes a party's only connection). An intermediate parent that is lost may come back
    (or had not connected yet): see :func:`rejoin_if_back`."""
    return msg.kind == STOP or (msg.kind == PEER_LOST and msg.sender == ctx.topology.hub)


def rejoin_if_back(ctx: PartyContext, msg: Message) -> bool:
    """Join this party's parent again when ``msg`` says it is back (a parent that connected
    after this party's JOIN was sent, or that restarted, never saw it); whether it did."""
    if msg.kind != PEER_BACK or msg.sender != parent_of(ctx):
        return False
    ctx.send(JOIN, msg.sender)
    return True


def join_children(
    ctx: PartyContext, settings: HorizontalSettings
) -> tuple[list[str], dict[str, str]]:
    """Wait for this party's children to announce themselves: those that joined, in
    topology order, and why the others did not. A child lost meanwhile is waited for while
    the quorum needs it (a restarted one joins again)."""
    children = children_of(ctx)
    joined = gather(
        ctx,
        expected=children,
        kind=JOIN,
        round=0,
        timeout=settings.join_timeout,
        quorum=quorum_size(settings.quorum, len(children)),
        on_reply=lambda msg: None,
        on_back=lambda msg: True,
    )
    replied = set(joined.replied)
    return [c for c in children if c in replied], dict(joined.failures)
