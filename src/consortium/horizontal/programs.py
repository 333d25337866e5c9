"""The horizontal protocol: an aggregator drives rounds, trainers train on local rows.

What each role sees: the aggregator receives each selected trainer's updated model and
example count (not its data); a trainer receives the global model only. In a hierarchy an
intermediate aggregator (:mod:`consortium.horizontal.regional`) sees what the root would
see of its own children, and the root sees each intermediate's aggregate only.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from consortium.horizontal.asynchronous import AsyncAggregator
from consortium.horizontal.clients import CLIENTS, Client, FitConfig, split_aux
from consortium.horizontal.evaluation import EVALUATE, evaluate_locally, federated_evaluation
from consortium.horizontal.ring import ROUTE, pass_on
from consortium.horizontal.rounds import (
    FIT,
    FIT_REPLY,
    children_of,
    fit_round,
    join_children,
    parent_of,
    rejoin_if_back,
    run_is_over,
)
from consortium.horizontal.selection import SELECTORS
from consortium.horizontal.settings import HorizontalSettings, LocalTraining, SemiSynchronous
from consortium.horizontal.strategy import ServerState, Strategy
from consortium.registry import Registry
from consortium.runtime import (
    JOIN,
    PROGRAMS,
    Outcome,
    PartyContext,
)
from consortium.tracking import RoundRecord
from consortium.wire import Message, MetaValue

__all__ = ["SCHEDULES", "Aggregator", "SyncAggregator", "Trainer"]

SCHEDULES: Registry[Callable[[PartyContext, Strategy], Any]] = Registry("schedule")
"""How the root aggregator drives a strategy: ``sync`` rounds or ``async`` (buffered)."""

log = logging.getLogger(__name__)


class Aggregator:
    """The root aggregator: runs the strategy on the schedule it declares (synchronous
    rounds unless the strategy says ``schedule = "async"``)."""

    def __init__(self, ctx: PartyContext) -> None:
        settings: HorizontalSettings = ctx.settings
        strategy = settings.strategy.build()
        self._impl = SCHEDULES.get(strategy.schedule)(ctx, strategy)

    def run(self, ctx: PartyContext) -> Outcome:
        return self._impl.run(ctx)


class SyncAggregator:
    """Runs the rounds: select, send the global model, gather with quorum, aggregate, evaluate.

    A trainer that drops out (disconnected, or no reply in time) is recorded as a
    ``dropout`` event and not asked again. One that announces itself again (a restarted
    trainer sends JOIN) is readmitted with a ``rejoined`` event: within the round it was
    lost in, while the quorum needs it, or else from the next round. The alive trainers are
    always the topology's minus the dropouts, in topology order, so selection stays a
    function of the seed and of who is alive. The run's ``dropouts`` name only those still
    out at the end; the events keep the history.
    """

    def __init__(self, ctx: PartyContext, strategy: Strategy) -> None:
        self.settings: HorizontalSettings = ctx.settings
        self.strategy = strategy
        self._epochs: dict[str, int] = {}  # semi-synchronous: local epochs per trainer
        self.selector = SELECTORS.get(self.settings.selection.name)(**self.settings.selection.args)
        self.dropouts: dict[str, str] = {}

    def _drop(self, ctx: PartyContext, party: str, reason: str) -> None:
        if party not in self.dropouts:
            self.dropouts[party] = reason
            if ctx.tracker is not None:
                ctx.tracker.event("dropout", party=party, reason=reason)

    def _rejoined(self, ctx: PartyContext, party: str, rnd: int) -> None:
        self.dropouts.pop(party, None)
        if ctx.tracker is not None:
            ctx.tracker.event("rejoined", party=party, round=rnd)

    def run(self, ctx: PartyContext) -> Outcome:
        model = ctx.data.model_factory()
        state = self.strategy.init(model.get_weights())
        metrics: dict[str, float] = {}
        checkpoints, rounds, first = ctx.checkpoints, self.settings.rounds, 1
        if checkpoints is not None and checkpoints.resumed is not None:
            state, metrics = self._restore(checkpoints.resumed.state)
            first = checkpoints.resumed.round + 1
        alive, missing = join_children(ctx, self.settings)
        for party, reason in missing.items():
            self._drop(ctx, party, f"did not join: {reason}")
        alive = [t for t in alive if t not in self.dropouts]
        children = children_of(ctx)
        try:
            for rnd in range(first, rounds + 1):
                state, metrics = self._round(ctx, rnd, state, model, alive)
                alive = [t for t in children if t not in self.dropouts]
                if checkpoints is not None and checkpoints.due(rnd, last=rnd == rounds):
                    checkpoints.save(rnd, self._saved(state, metrics))
        finally:
            ctx.stop(alive)
        return Outcome(
            metrics=metrics,
            rounds_completed=self.settings.rounds,
            dropouts=dict(self.dropouts),
            model=state.weights,
        )

    def _saved(self, state: ServerState, metrics: Mapping[str, float]) -> dict[str, Any]:
        """What a resumed run needs: the strategy's state, the last round's metrics, who
        dropped out, and the semi-synchronous epochs (selection and local training draw their
        randomness from the seed and the round)."""
        return {
            "round": state.round,
            "weights": dict(state.weights),
            "extra": dict(state.extra),
            "metrics": dict(metrics),
            "dropouts": dict(self.dropouts),
            "epochs": dict(self._epochs),
        }

    def _restore(self, saved: Mapping[str, Any]) -> tuple[ServerState, dict[str, float]]:
        self.dropouts.update(saved["dropouts"])
        self._epochs.update(saved["epochs"])
        state = ServerState(round=saved["round"], weights=saved["weights"], extra=saved["extra"])
        return state, dict(saved["metrics"])

    def _size_epochs(
        self, semi: SemiSynchronous, reported: Mapping[str, Mapping[str, float]]
    ) -> None:
        """Next round's epochs per trainer: as many as fit in the budget at the speed it
        just showed (seconds per epoch), at least one, at most ``max_epochs``."""
        for party, m in reported.items():
            seconds, epochs = m.get("train_seconds"), m.get("epochs")
            if not seconds or not epochs or seconds <= 0:
                continue
            per_epoch = seconds / epochs
            self._epochs[party] = max(1, min(semi.max_epochs, int(semi.budget_s / per_epoch)))

    def _round(
        self, ctx: PartyContext, rnd: int, state: ServerState, model: Any, alive: list[str]
    ) -> tuple[ServerState, dict[str, float]]:
        started = ctx.clock.now()
        selected = self.selector.select(rnd, alive, seed=ctx.seed)
        done = fit_round(
            ctx,
            strategy=self.strategy,
            state=state,
            rnd=rnd,
            selected=selected,
            settings=self.settings,
            epochs=self._epochs,
        )
        for party in done.returned:  # lost and back within the round
            if party not in done.unreachable:
                self._rejoined(ctx, party, rnd)
        for party, reason in done.unreachable.items():
            self._drop(ctx, party, reason)
        for party in done.joined:  # after the drops: a JOIN follows the loss it answers
            if party in self.dropouts:
                self._rejoined(ctx, party, rnd + 1)
        if self.settings.semi_synchronous is not None:
            self._size_epochs(self.settings.semi_synchronous, done.party_metrics)
        model.set_weights(done.state.weights)
        metrics = dict(model.evaluate(ctx.data.test.x, ctx.data.test.y))
        party_metrics, failures = done.party_metrics, dict(done.failures)
        ev = self.settings.evaluation
        if ev.federated and rnd % ev.every == 0:
            scores = federated_evaluation(
                ctx,
                weights=done.state.weights,
                parties=[p for p in alive if p not in self.dropouts],
                rnd=rnd,
                settings=self.settings,
            )
            metrics.update({f"federated_{k}": v for k, v in scores.metrics.items()})
            for party, scored in scores.per_party.items():
                party_metrics.setdefault(party, {}).update(
                    {f"eval_{k}": v for k, v in scored.items()}
                )
            failures.update({p: f"evaluation: {r}" for p, r in scores.failures.items()})
        if ctx.tracker is not None:
            ctx.tracker.round(
                RoundRecord(
                    round=rnd,
                    metrics={**metrics, **done.metrics},
                    party_metrics=party_metrics,
                    participants=tuple(done.replied),
                    failures=failures,
                    duration_s=ctx.clock.now() - started,
                )
            )
        return done.state, metrics


class Trainer:
    """Trains the global model on its own rows with the job's client (``algorithm.client``,
    or ``client`` given here) and sends the result back."""

    def __init__(self, ctx: PartyContext, *, client: Client | None = None) -> None:
        settings: HorizontalSettings = ctx.settings
        self._client = client if client is not None else CLIENTS.get(settings.client.name)
        self._args = settings.client.args
        self._memory: dict[str, Any] = {}  # the client's, kept between rounds
        self._model: Any = None  # for federated evaluation

    def start(self, ctx: PartyContext) -> None:
        ctx.send(JOIN, parent_of(ctx))

    def handle(self, ctx: PartyContext, msg: Message) -> bool:
        if msg.kind == FIT:
            self._fit(ctx, msg)
            return True
        if msg.kind == EVALUATE:
            if self._model is None:
                self._model = ctx.data.model_factory()
            evaluate_locally(ctx, self._model, msg)
            return True
        if run_is_over(ctx, msg):
            return False
        if rejoin_if_back(ctx, msg):
            return True
        log.debug("%s ignored %s from %s", ctx.name, msg.kind, msg.sender)
        return True

    def _fit(self, ctx: PartyContext, msg: Message) -> None:
        local = _local_training(
            msg.meta.get("epochs"), msg.meta.get("batch_size"), msg.meta.get("lr")
        )
        received, aux = split_aux(msg.tensors)
        config = FitConfig(
            round=msg.round,
            epochs=local.epochs,
            batch_size=local.batch_size,
            lr=local.lr,
            instructions={k: v for k, v in msg.meta.items() if k not in _LOCAL_KEYS},
            aux=aux,
            args=self._args,
            memory=self._memory,
        )
        started = ctx.clock.now()
        weights, stats = self._client(received, ctx.data, config, ctx.rng(msg.round))
        reply: dict[str, MetaValue] = {
            "num_examples": len(ctx.data.train.y),
            "epochs": local.epochs,
            "train_seconds": ctx.clock.now() - started,
        }
        reply.update({f"train_{k}": _metric(k, v) for k, v in stats.items()})
        tensors = {k: _tensor(k, v) for k, v in weights.items()}
        if ROUTE in msg.meta:
            pass_on(ctx, msg, tensors, reply)
        else:
            ctx.reply(msg, FIT_REPLY, meta=reply, tensors=tensors)


_LOCAL_KEYS = frozenset({"epochs", "batch_size", "lr"})


def _metric(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise TypeError(f"the client's metric {name!r} must be a number, got {value!r}")
    return float(value)


def _tensor(name: str, value: Any) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"the client returned {name!r} as {arr.dtype}, not a numeric array")
    return arr


@functools.lru_cache(maxsize=64, typed=True)  # typed: True and 1 are different values
def _local_training(
    epochs: MetaValue | None, batch_size: MetaValue | None, lr: MetaValue | None
) -> LocalTraining:
    """Local-training settings, validated once per distinct value for all trainers of the
    process (a thousand simulated trainers get the same values; the model is frozen)."""
    return LocalTraining.model_validate({"epochs": epochs, "batch_size": batch_size, "lr": lr})


SCHEDULES.register("sync", SyncAggregator)
SCHEDULES.register("async", AsyncAggregator)
PROGRAMS.register("horizontal/aggregator", Aggregator)
PROGRAMS.register("horizontal/trainer", Trainer)
