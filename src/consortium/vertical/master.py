"""The master's program (the hub's driver): what every mode does, around the mode's own
steps (:mod:`consortium.vertical.modes`).

The master waits for every party to join and lets its mode prepare. It aligns the records:
a :class:`~consortium.privacy.psi.PsiReceiver` per member (:mod:`consortium.privacy.psi`
says who learns what), the shared records in its own row order, the test records drawn, and
each member sent the aligned records' positions in its own shuffled list; from then on every
request names the aligned positions it is about. It builds its part, trains (or, with
``algorithm.task: predict``, predicts for every aligned record) through its mode, records
each round, and has every member save its part, then saves its own. Every wait has the
round deadline and needs every member: vertical training cannot go on without one.
"""

from __future__ import annotations

import functools

import numpy as np

from consortium.errors import RunFailed
from consortium.privacy.psi import Match, PsiError, PsiReceiver, intersect
from consortium.runtime import JOIN, PROGRAMS, Outcome, PartyContext, gather
from consortium.tracking import RoundRecord
from consortium.vertical.data import VerticalData
from consortium.vertical.exchange import ContextExchange, Exchange, Expect
from consortium.vertical.local import (
    EPOCH_KEY,
    SPLIT_KEY,
    Alignment,
    MasterPart,
    master_part,
    save_part,
    split_records,
)
from consortium.vertical.messages import Kind
from consortium.vertical.modes import MODES, mode_name
from consortium.vertical.parts import score
from consortium.vertical.settings import VerticalSettings
from consortium.wire import Message

__all__ = ["Master"]


class Master:
    """Holds the labels (and maybe columns), the top of the model, and the schedule."""

    def __init__(self, ctx: PartyContext) -> None:
        self.settings: VerticalSettings = ctx.settings
        self.data: VerticalData = ctx.data
        if self.data.y is None:
            raise RunFailed(f"the master {ctx.name} holds no labels")
        self.mode = MODES.get(mode_name(self.settings))
        self.members: tuple[str, ...] = ()

    def run(self, ctx: PartyContext) -> Outcome:
        everyone = [*ctx.peers("member"), *ctx.peers("arbiter")]
        gather(
            ctx,
            expected=everyone,
            kind=JOIN,
            round=0,
            timeout=self.settings.join_timeout,
            quorum=len(everyone),
            on_reply=lambda msg: None,
        )
        try:
            return self.conduct(ctx, ContextExchange(ctx, timeout=self.settings.round_timeout))
        finally:
            ctx.stop(everyone)

    def conduct(self, ctx: PartyContext, io: Exchange) -> Outcome:
        """The run once every party has joined, every exchange through ``io``; ``ctx`` gives
        the master's name, peers, seed, clock and tracker."""
        settings, data = self.settings, self.data
        self.members = tuple(ctx.peers("member"))
        arbiters = ctx.peers("arbiter")
        width = data.model.kind.width(data.model.args, data)
        mode = self.mode.master(
            settings=settings,
            members=self.members,
            arbiter=arbiters[0] if arbiters else None,
            task=data.task,
            width=width,
        )
        try:
            mode.prepare(io)
            alignment = self._align(io, ctx, width)
            if ctx.tracker is not None:
                ctx.tracker.event("aligned", records=len(alignment.rows), train=alignment.n_train)
            part = master_part(ctx, alignment, width=width)
            if settings.task == "predict":
                scores = mode.predict(io, part, np.arange(len(alignment.rows)))
                self._finish(io, part, ctx.name)
                return Outcome(
                    metrics=score(scores, part.y, data.task),
                    rounds_completed=0,
                    model={"rows": alignment.rows, "scores": scores},
                )
            metrics: dict[str, float] = {}
            completed, started = 0, ctx.clock.now()
            epochs = mode.fit(io, part, alignment, functools.partial(ctx.rng, EPOCH_KEY))
            for completed, metrics in enumerate(epochs, 1):
                if ctx.tracker is not None:
                    record = RoundRecord(
                        round=completed,
                        metrics=metrics,
                        party_metrics={},
                        participants=self.members,
                        failures={},
                        duration_s=ctx.clock.now() - started,
                    )
                    ctx.tracker.round(record)
                started = ctx.clock.now()
            return Outcome(
                metrics=metrics, rounds_completed=completed, model=self._finish(io, part, ctx.name)
            )
        finally:
            mode.close()

    def _align(self, io: Exchange, ctx: PartyContext, width: int) -> Alignment:
        """The intersection with every member, then each member's aligned positions (all in
        round 0). To predict, no record trains: every aligned record is one to predict for."""
        receiver = PsiReceiver(self.data.ids, domain=ctx.job_id)
        offer = receiver.offer()
        for member in self.members:
            io.send(Kind.PSI_OFFER, member, round=0, tensors={"points": offer})

        def match(msg: Message) -> Match:
            try:
                return receiver.match(msg.tensors["ids"], msg.tensors["points"])
            except (PsiError, KeyError):
                raise RunFailed("invalid intersection reply") from None

        (matches,) = io.collect(0, Expect(Kind.PSI_REPLY, self.members, match))
        rows, positions = intersect(matches)
        if len(rows) == 0:
            raise RunFailed("the parties share no records: the private intersection is empty")
        if self.settings.task == "predict":
            order, n_train = np.arange(len(rows)), 0
        else:
            order, n_train = split_records(len(rows), self.data.test_fraction, ctx.rng(SPLIT_KEY))
        meta = {"train": n_train, "width": width}
        for member, pos in zip(self.members, positions, strict=True):
            io.send(Kind.ALIGN, member, round=0, meta=meta, tensors={"positions": pos[order]})

        def features(msg: Message) -> int:
            count = msg.meta.get("features")
            if not isinstance(count, int) or isinstance(count, bool) or count < 1:
                raise RunFailed(f"features must be a positive integer, got {count!r}")
            return count

        (counts,) = io.collect(0, Expect(Kind.READY, self.members, features))
        features_of = dict(zip(self.members, counts, strict=True))
        return Alignment(rows=rows[order], n_train=n_train, features=features_of)

    def _finish(self, io: Exchange, part: MasterPart, name: str) -> dict[str, np.ndarray]:
        """Every member saves its own part; the master saves (and returns) its own."""
        step = io.new_round()
        for member in self.members:
            io.send(Kind.FINISH, member, round=step)
        io.collect(step, Expect(Kind.FINISH_REPLY, self.members))
        state = part.state()
        save_part(self.settings, name, state)
        return state


PROGRAMS.register("vertical/master", Master)
