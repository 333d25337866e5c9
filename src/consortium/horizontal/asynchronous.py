"""The asynchronous schedule: trainers never wait for each other.

Up to ``concurrency`` trainers train at once, each on the model version it was sent. When a
trainer's model comes back, the schedule turns it into a delta against that version, tells
the strategy how stale it is (server steps since), and sends the trainer the current model
straight away. When the strategy's buffer is ready it steps the model: one step is one
"round" in the run's records, with the staleness of every update in it.

Deadlines and failures work as in the synchronous schedule: a trainer silent past
``round_timeout`` or disconnected is a dropout, and the run fails once fewer trainers than
the quorum remain. Only the model versions still being trained on are kept (at most
``max_staleness + 1`` of them, plus versions held by trainers that will be refused).
With one in-process worker the order of events, and so the result, is reproducible;
with more workers or processes it depends on timing, as asynchrony does.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

import numpy as np

from consortium.errors import PartyCrashed, QuorumLost, TransportClosed, TransportTimeout
from consortium.horizontal.aggregate import check_update
from consortium.horizontal.fedbuff import STALENESS
from consortium.horizontal.rounds import FIT, FIT_REPLY, join_children
from consortium.horizontal.settings import HorizontalSettings
from consortium.horizontal.strategy import Strategy
from consortium.runtime import CRASHED, Outcome, PartyContext, quorum_size
from consortium.tracking import RoundRecord
from consortium.transport import PEER_LOST
from consortium.wire import Message, MetaValue

__all__ = ["AsyncAggregator"]

log = logging.getLogger(__name__)

Weights = dict[str, np.ndarray]


class AsyncAggregator:
    """Drives an asynchronous strategy (one with ``ready(acc)``, e.g. FedBuff)."""

    def __init__(self, ctx: PartyContext, strategy: Strategy[Any]) -> None:
        self.settings: HorizontalSettings = ctx.settings
        self.strategy = strategy
        self.dropouts: dict[str, str] = {}
        self.versions: dict[int, Weights] = {}
        self.in_flight: dict[str, tuple[int, float]] = {}  # party -> (version, deadline)

    def run(self, ctx: PartyContext) -> Outcome:
        alive, missing = join_children(ctx, self.settings)
        self.dropouts.update({p: f"did not join: {r}" for p, r in missing.items()})
        total = len(alive) + len(missing)
        model = ctx.data.model_factory()
        state = self.strategy.init(model.get_weights())
        self.versions[0] = dict(state.weights)
        concurrency = self.strategy.concurrency() or len(alive)
        idle = deque(alive)
        metrics: dict[str, float] = {}
        acc = self.strategy.begin(1, state)
        failures: dict[str, str] = {}
        party_metrics: dict[str, dict[str, float]] = {}
        started = ctx.clock.now()
        try:
            while state.round < self.settings.rounds:
                self._dispatch(ctx, state, idle, concurrency)
                if len(alive) - len(self.dropouts.keys() & set(alive)) < quorum_size(
                    self.settings.quorum, total
                ):
                    raise QuorumLost(
                        f"asynchronous run: too few trainers left at step {state.round + 1}; "
                        f"dropouts: {self._named_dropouts()}",
                        missing=tuple(sorted(self.dropouts)),
                    )
                msg = self._next(ctx)
                if msg is None:
                    continue
                party = msg.sender
                version, _ = self.in_flight.pop(party)
                reason = self._fold(acc, msg, version, state.round)
                if reason is None:
                    party_metrics[party] = {
                        **{k: float(v) for k, v in msg.meta.items() if isinstance(v, int | float)},
                        STALENESS: float(state.round - version),
                    }
                else:
                    failures[party] = reason
                idle.append(party)
                if self.strategy.ready(acc):
                    state, agg = self.strategy.aggregate(state.round + 1, state, acc, failures)
                    self.versions[state.round] = dict(state.weights)
                    self._forget_old_versions(state.round)
                    model.set_weights(state.weights)
                    metrics = dict(model.evaluate(ctx.data.test.x, ctx.data.test.y))
                    if ctx.tracker is not None:
                        ctx.tracker.round(
                            RoundRecord(
                                round=state.round,
                                metrics={**metrics, **agg},
                                party_metrics=party_metrics,
                                participants=tuple(party_metrics),
                                failures=failures,
                                duration_s=ctx.clock.now() - started,
                            )
                        )
                    acc = self.strategy.begin(state.round + 1, state)
                    failures, party_metrics, started = {}, {}, ctx.clock.now()
        finally:
            ctx.stop(p for p in alive if p not in self.dropouts)
        return Outcome(
            metrics=metrics,
            rounds_completed=state.round,
            dropouts=dict(self.dropouts),
            model=state.weights,
        )

    def _named_dropouts(self) -> str:
        return "; ".join(f"{p}: {r}" for p, r in sorted(self.dropouts.items())) or "none"

    def _dispatch(self, ctx: PartyContext, state: Any, idle: deque[str], concurrency: int) -> None:
        """Keep ``concurrency`` trainers busy with the current model."""
        instructions = self.strategy.configure(state.round + 1, state)
        meta: dict[str, MetaValue] = {
            **instructions.config,
            "epochs": self.settings.local.epochs,
            "batch_size": self.settings.local.batch_size,
            "lr": self.settings.local.lr,
        }
        while idle and len(self.in_flight) < concurrency:
            party = idle.popleft()
            if party in self.dropouts:
                continue
            try:
                ctx.send(FIT, party, round=state.round, meta=meta, tensors=state.weights)
            except TransportClosed:
                self.dropouts[party] = "disconnected"
                continue
            self.in_flight[party] = (state.round, ctx.clock.now() + self.settings.round_timeout)

    def _next(self, ctx: PartyContext) -> Message | None:
        """The next usable reply, or None after handling a timeout or a departure."""
        if not self.in_flight:
            raise QuorumLost(
                f"asynchronous run: no trainer left to train; dropouts: {self._named_dropouts()}",
                missing=tuple(sorted(self.dropouts)),
            )
        deadline = min(d for _, d in self.in_flight.values())
        try:
            msg = ctx.recv(timeout=max(0.0, deadline - ctx.clock.now()))
        except TransportTimeout:
            now = ctx.clock.now()
            for party, (_, d) in list(self.in_flight.items()):
                if d <= now:
                    del self.in_flight[party]
                    self.dropouts[party] = f"no reply within {self.settings.round_timeout:g} s"
            return None
        if msg.kind == CRASHED:
            raise PartyCrashed(msg.sender, str(msg.meta.get("reason", "no reason given")))
        if msg.kind == PEER_LOST:
            self.in_flight.pop(msg.sender, None)
            self.dropouts.setdefault(msg.sender, "disconnected")
            return None
        sent = self.in_flight.get(msg.sender)
        if msg.kind != FIT_REPLY or sent is None or sent[0] != msg.round:
            log.debug("ignored %s from %s (version %d)", msg.kind, msg.sender, msg.round)
            return None
        return msg

    def _fold(self, acc: Any, msg: Message, version: int, current: int) -> str | None:
        base = self.versions[version]
        reason: str | None = check_update(msg.tensors, base)
        if reason is None:
            delta = {k: np.subtract(msg.tensors[k], base[k]) for k in base}
            reason = acc.add(msg.sender, delta, {**msg.meta, STALENESS: current - version})
        return reason

    def _forget_old_versions(self, current: int) -> None:
        keep = {v for v, _ in self.in_flight.values()} | {current}
        for v in [v for v in self.versions if v not in keep]:
            del self.versions[v]
