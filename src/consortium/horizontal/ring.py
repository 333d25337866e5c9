"""Ring (round-robin) training: the model travels from trainer to trainer.

Each round the aggregator hands the global model to the first trainer of the round's route;
each trainer trains it on its own rows and passes it to the next; the last one gives it
back. The start of the route turns with the round, so every trainer is sometimes last. This
is cyclic incremental training (Chang et al., "Distributed deep learning networks among
institutions for medical imaging", JAMIA 2018, call it cyclical weight transfer).

A trainer that cannot be reached is skipped by the one before it; the round counts as done
when at least the quorum of the route trained the model and it came back within the
deadline. What each role sees: a trainer receives the model as left by the trainer before
it (so, unlike a star, a trainer sees another's update); the aggregator sees the model that
comes back and who trained it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np

from consortium.errors import PartyCrashed, QuorumLost, TransportClosed, TransportTimeout
from consortium.horizontal.aggregate import check_update
from consortium.horizontal.rounds import FIT, FIT_REPLY, join_children
from consortium.horizontal.settings import HorizontalSettings
from consortium.runtime import CRASHED, PROGRAMS, Outcome, PartyContext, quorum_size
from consortium.tracking import RoundRecord
from consortium.transport import PEER_LOST
from consortium.wire import Message, MetaValue

__all__ = ["ROUTE", "RingAggregator", "pass_on"]

log = logging.getLogger(__name__)

ROUTE = "ring.route"  # meta: the parties still to visit, comma-separated
ORIGIN = "ring.origin"  # meta: who gets the model back
TRAINED = "ring.trained"  # meta: who trained it so far, comma-separated
EXAMPLES = "ring.examples"  # meta: their examples, summed


def _names(value: MetaValue | None) -> list[str]:
    return [n for n in str(value or "").split(",") if n]


def pass_on(
    ctx: PartyContext, msg: Message, weights: Mapping[str, np.ndarray], stats: dict[str, MetaValue]
) -> None:
    """Called by a trainer after training a ring model: send it to the next reachable party
    of the route, or back to the origin when the route is done."""
    route = _names(msg.meta.get(ROUTE))
    trained = [*_names(msg.meta.get(TRAINED)), ctx.name]
    examples = int(msg.meta.get(EXAMPLES, 0) or 0) + int(stats.get("num_examples", 0) or 0)
    carried = {k: v for k, v in msg.meta.items() if k not in (ROUTE, TRAINED, EXAMPLES)}
    while route:
        nxt, route = route[0], route[1:]
        meta = {**carried, ROUTE: ",".join(route), TRAINED: ",".join(trained), EXAMPLES: examples}
        try:
            ctx.send(FIT, nxt, round=msg.round, meta=meta, tensors=weights)
            return
        except TransportClosed:
            log.warning("%s: ring successor %s is gone; skipping it", ctx.name, nxt)
    origin = str(msg.meta.get(ORIGIN, ctx.topology.hub))
    meta = {TRAINED: ",".join(trained), "num_examples": examples}
    ctx.send(FIT_REPLY, origin, round=msg.round, meta=meta, tensors=weights)


class RingAggregator:
    """Starts each round's trip around the ring and evaluates the model that comes back."""

    def __init__(self, ctx: PartyContext) -> None:
        self.settings: HorizontalSettings = ctx.settings
        self.dropouts: dict[str, str] = {}

    def run(self, ctx: PartyContext) -> Outcome:
        ring, missing = join_children(ctx, self.settings)
        self.dropouts.update({p: f"did not join: {r}" for p, r in missing.items()})
        model = ctx.data.model_factory()
        weights = model.get_weights()
        metrics: dict[str, float] = {}
        try:
            for rnd in range(1, self.settings.rounds + 1):
                weights, metrics = self._round(ctx, rnd, weights, model, ring)
                ring = [p for p in ring if p not in self.dropouts]
        finally:
            ctx.stop(ring)
        return Outcome(
            metrics=metrics,
            rounds_completed=self.settings.rounds,
            dropouts=dict(self.dropouts),
            model=weights,
        )

    def _round(
        self,
        ctx: PartyContext,
        rnd: int,
        weights: Mapping[str, np.ndarray],
        model: object,
        ring: list[str],
    ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        s = self.settings
        started = ctx.clock.now()
        start = (rnd - 1) % len(ring)
        route = ring[start:] + ring[:start]
        meta: dict[str, MetaValue] = {
            "epochs": s.local.epochs,
            "batch_size": s.local.batch_size,
            "lr": s.local.lr,
            ORIGIN: ctx.name,
            ROUTE: ",".join(route[1:]),
            TRAINED: "",
            EXAMPLES: 0,
        }
        for i, first in enumerate(route):
            meta[ROUTE] = ",".join(route[i + 1 :])
            try:
                ctx.send(FIT, first, round=rnd, meta=meta, tensors=dict(weights))
                break
            except TransportClosed:
                self.dropouts.setdefault(first, "disconnected")
        else:
            raise QuorumLost(f"ring round {rnd}: no trainer is reachable", missing=tuple(route))
        back = self._wait(ctx, rnd)
        reason = check_update(back.tensors, weights)
        if reason is not None:
            raise QuorumLost(
                f"ring round {rnd}: the model came back unusable: {reason}", missing=()
            )
        trained = _names(back.meta.get(TRAINED))
        failures = {p: "skipped" for p in route if p not in trained}
        need = quorum_size(s.quorum, len(route))
        if len(trained) < need:
            raise QuorumLost(
                f"ring round {rnd}: {len(trained)} of {len(route)} trainers trained the model, "
                f"the quorum is {need}; skipped: {', '.join(sorted(failures))}",
                missing=tuple(sorted(failures)),
            )
        for party in failures:
            self.dropouts.setdefault(party, "unreachable in the ring")
        new = {k: np.array(v) for k, v in back.tensors.items()}
        model.set_weights(new)  # type: ignore[attr-defined]
        metrics = dict(model.evaluate(ctx.data.test.x, ctx.data.test.y))  # type: ignore[attr-defined]
        if ctx.tracker is not None:
            ctx.tracker.round(
                RoundRecord(
                    round=rnd,
                    metrics={**metrics, "examples": float(back.meta.get("num_examples", 0) or 0)},
                    party_metrics={},
                    participants=tuple(trained),
                    failures=failures,
                    duration_s=ctx.clock.now() - started,
                )
            )
        return new, metrics

    def _wait(self, ctx: PartyContext, rnd: int) -> Message:
        """The model of round ``rnd`` coming back, within the round's deadline."""
        deadline = ctx.clock.now() + self.settings.round_timeout
        while True:
            remaining = deadline - ctx.clock.now()
            try:
                if remaining <= 0:
                    raise TransportTimeout("deadline")
                msg = ctx.recv(timeout=remaining)
            except TransportTimeout:
                raise QuorumLost(
                    f"ring round {rnd}: the model did not come back within "
                    f"{self.settings.round_timeout:g} s",
                    missing=(),
                ) from None
            if msg.kind == CRASHED:
                raise PartyCrashed(msg.sender, str(msg.meta.get("reason", "no reason given")))
            if msg.kind == PEER_LOST:
                self.dropouts.setdefault(msg.sender, "disconnected")
                continue
            if msg.kind == FIT_REPLY and msg.round == rnd:
                return msg


PROGRAMS.register("horizontal/ring_aggregator", RingAggregator)
