"""An intermediate aggregator of a hierarchy: a trainer to its parent, an aggregator to its
children.

Asked to fit by its parent, it runs one round of the job's strategy over its own children
(the same quorum, deadline and strategy as the root) and replies with the aggregate, its
example count being the sum of its children's. With example-weighted FedAvg at every level,
a two-level run therefore gives the same model as a flat run over the same trainers (Lin et
al., "Don't Use Large Mini-Batches, Use Local SGD", 2020 and Liu et al., "Client-Edge-Cloud
Hierarchical Federated Learning", ICC 2020, describe the scheme).

What it sees: its children's updated models and example counts, and the global model.
"""

from __future__ import annotations

import logging

from consortium.errors import RunFailed
from consortium.horizontal.programs import join_children, parent_of
from consortium.horizontal.rounds import (
    FAILED,
    FIT,
    FIT_REPLY,
    fit_round,
    rejoin_if_back,
    run_is_over,
)
from consortium.horizontal.settings import HorizontalSettings
from consortium.horizontal.strategy import ServerState
from consortium.runtime import JOIN, PROGRAMS, Outcome, PartyContext
from consortium.wire import MetaValue

__all__ = ["Regional"]

log = logging.getLogger(__name__)


class Regional:
    """Relays each round down to its children and their aggregate back up."""

    def __init__(self, ctx: PartyContext) -> None:
        self.settings: HorizontalSettings = ctx.settings
        self.strategy = self.settings.strategy.build()

    def run(self, ctx: PartyContext) -> Outcome:
        parent = parent_of(ctx)
        alive, missing = join_children(ctx, self.settings)
        for party, reason in missing.items():
            log.warning("%s: %s did not join: %s", ctx.name, party, reason)
        ctx.send(JOIN, parent)
        rounds = 0
        state: ServerState | None = None
        try:
            while True:
                msg = ctx.recv()
                if run_is_over(ctx, msg):
                    break
                if rejoin_if_back(ctx, msg):
                    continue
                if msg.kind != FIT or msg.sender != parent:
                    log.debug("%s ignored %s from %s", ctx.name, msg.kind, msg.sender)
                    continue
                # The parent's model replaces the weights; the strategy's own state (server
                # momentum, say) carries over from this party's previous rounds.
                if state is None:
                    state = self.strategy.init(msg.tensors)
                state = ServerState(round=msg.round - 1, weights=msg.tensors, extra=state.extra)
                try:
                    done = fit_round(
                        ctx,
                        strategy=self.strategy,
                        state=state,
                        rnd=msg.round,
                        selected=alive,
                        settings=self.settings,
                    )
                except RunFailed as exc:  # QuorumLost, or too few usable updates for the strategy
                    ctx.reply(msg, FIT_REPLY, meta={FAILED: str(exc)[:2000]})
                    continue
                alive = [c for c in alive if c not in done.unreachable]
                state = done.state
                reply: dict[str, MetaValue] = {
                    "num_examples": done.examples,
                    "replies": len(done.replied),
                }
                ctx.reply(msg, FIT_REPLY, meta=reply, tensors=state.weights)
                rounds += 1
        finally:
            ctx.stop(alive)
        return Outcome(metrics={}, rounds_completed=rounds)


PROGRAMS.register("horizontal/regional", Regional)
