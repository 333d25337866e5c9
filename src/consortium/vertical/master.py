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
import functools

import numpy as np

from consortium.errors import RunFailed, TransportClosed
from consortium.runtime import JOIN, PROGRAMS, STOP, Outcome, PartyContext, gather
from consortium.vertical.align import EPOCH_KEY, SPLIT_KEY, align_as_master
from consortium.vertical.data import VerticalData
from consortium.vertical.exchange import ContextExchange, Exchange, Expect
from consortium.vertical.local import MasterPart, master_part, save_part
from consortium.vertical.messages import Kind
from consortium.vertical.modes import MODES, Rounds, mode_name
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
        settings, data = self.settings, self.data
        self.members = ctx.peers("member")
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
            alignment = align_as_master(
                io,
                self.members,
                ids=data.ids,
                domain=ctx.job_id,
                test_fraction=data.test_fraction,
                width=width,
                rng=ctx.rng(SPLIT_KEY),
                predict=settings.task == "predict",
            )
            if ctx.tracker is not None:
                ctx.tracker.event("aligned", records=len(alignment.rows), train=alignment.n_train)
            part = master_part(
                ctx,
                alignment.rows,
                n_train=alignment.n_train,
                width=width,
                members=len(self.members),
            )
            if settings.task == "predict":
                scores = mode.predict(io, part, np.arange(len(alignment.rows)))
                self._finish(io, part, ctx.name)
                return Outcome(
                    metrics=score(scores, part.y, data.task),
                    rounds_completed=0,
                    model={"rows": alignment.rows, "scores": scores},
                )
            rng = functools.partial(ctx.rng, EPOCH_KEY)
            rounds = Rounds(rng=rng, clock=ctx.clock, tracker=ctx.tracker)
            metrics, completed = mode.fit(io, part, alignment, rounds)
            return Outcome(
                metrics=metrics, rounds_completed=completed, model=self._finish(io, part, ctx.name)
            )
        finally:
            mode.close()

    def _finish(self, io: Exchange, part: MasterPart, name: str) -> dict[str, np.ndarray]:
        """Every member saves its own part; the master saves (and returns) its own."""
        step = io.new_round()
        for member in self.members:
            io.send(Kind.FINISH, member, round=step)
        io.collect(step, Expect(Kind.FINISH_REPLY, tuple(self.members)))
        state = part.state()
        save_part(self.settings, name, state)
        return state


PROGRAMS.register("vertical/master", Master)
