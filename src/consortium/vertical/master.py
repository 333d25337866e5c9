"""The master's program (the hub's driver): what every mode does, around the mode's own
steps (:mod:`consortium.vertical.modes`).

The master waits for every party to join, lets its mode prepare (the arbitered mode has the
arbiter make the keys), aligns the records with every member, builds its part (standardised
columns, its bottom, the top; loaded from its saved part to predict), then trains (or, with
``algorithm.task: predict``, predicts for every aligned record) through its mode, and
finally has every member save its part and saves its own. Every wait has the round
deadline and needs every member: vertical training cannot go on without one.
"""

from __future__ import annotations

import contextlib

import numpy as np

from consortium.errors import RunFailed, TransportClosed
from consortium.runtime import JOIN, PROGRAMS, STOP, Outcome, PartyContext, gather
from consortium.tracking import RoundRecord
from consortium.vertical.align import EPOCH_KEY, SPLIT_KEY, align_as_master
from consortium.vertical.data import VerticalData
from consortium.vertical.exchange import ContextExchange, Exchange, Expect
from consortium.vertical.local import MasterPart, master_part, part_path, save_part, saved_part
from consortium.vertical.messages import Kind
from consortium.vertical.modes import MODES, MasterMode, Rounds, mode_name
from consortium.vertical.parts import score
from consortium.vertical.settings import VerticalSettings

__all__ = ["Master"]


class Master:
    """Holds the labels (and maybe columns), the top of the model, and the schedule."""

    def __init__(self, ctx: PartyContext) -> None:
        self.settings: VerticalSettings = ctx.settings
        self.data: VerticalData = ctx.data
        if self.data.y is None:
            raise RunFailed(f"the master {ctx.name} holds no labels")
        self.mode = MODES.get(mode_name(self.settings))
        self.members: list[str] = []

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
            for party in everyone:
                with contextlib.suppress(TransportClosed):
                    ctx.send(STOP, party)

    def conduct(self, ctx: PartyContext, io: Exchange) -> Outcome:
        """The run once every party has joined, every exchange through ``io``: prepare,
        align, build the master's part, train (or predict), and have every member save its
        part. ``ctx`` gives the master's name, peers, seed, clock and tracker."""
        data = self.data
        self.members = ctx.peers("member")
        arbiters = ctx.peers("arbiter")
        width = data.model.kind.width(data.model.args, task=data.task, n_classes=data.n_classes)
        mode = self.mode.master(
            settings=self.settings,
            members=self.members,
            arbiter=arbiters[0] if arbiters else None,
            task=data.task,
            width=width,
        )
        try:
            return self._conduct(ctx, io, mode, width)
        finally:
            mode.close()

    def _conduct(self, ctx: PartyContext, io: Exchange, mode: MasterMode, width: int) -> Outcome:
        settings, data = self.settings, self.data
        predict = settings.task == "predict"
        mode.prepare(io)
        alignment = align_as_master(
            io,
            self.members,
            ids=data.ids,
            domain=ctx.job_id,
            test_fraction=data.test_fraction,
            width=width,
            rng=ctx.rng(SPLIT_KEY),
            predict=predict,
        )
        if ctx.tracker is not None:
            ctx.tracker.event("aligned", records=len(alignment.rows), train=alignment.n_train)
        part = master_part(
            data,
            alignment.rows,
            n_train=alignment.n_train,
            width=width,
            members=len(self.members),
            settings=settings,
            seed=ctx.seed,
            rank=ctx.party.rank,
            saved=saved_part(settings, ctx.name),
        )
        if predict:
            scores = mode.predict(io, part, np.arange(len(alignment.rows)))
            metrics = score(scores, part.y, data.task)
            self._finish(io, part, ctx.name)
            return Outcome(
                metrics=metrics,
                rounds_completed=0,
                model={"rows": alignment.rows, "scores": scores},
            )
        tracker = ctx.tracker

        def record(entry: RoundRecord) -> None:
            if tracker is not None:
                tracker.round(entry)

        rounds = Rounds(rng=lambda epoch: ctx.rng(EPOCH_KEY, epoch), clock=ctx.clock, record=record)
        metrics, completed = mode.fit(io, part, alignment, rounds)
        saved = self._finish(io, part, ctx.name)
        return Outcome(metrics=metrics, rounds_completed=completed, model=saved)

    def _finish(self, io: Exchange, part: MasterPart, name: str) -> dict[str, np.ndarray]:
        """Every member saves its own part; the master saves (and returns) its own."""
        step = io.new_round()
        for member in self.members:
            io.send(Kind.FINISH, member, round=step)
        io.collect(step, Expect(Kind.FINISH_REPLY, tuple(self.members)))
        state = part.state()
        path = part_path(self.settings, name)
        if path is not None and self.settings.task == "train":
            save_part(path, state)
        return state


PROGRAMS.register("vertical/master", Master)
