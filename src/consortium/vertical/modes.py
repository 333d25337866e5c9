"""The vertical protocol's modes, chosen once per job: what each mode's master and member
do beyond what every mode does (join, align, standardise, save or load parts, predict).

=============  ========================================  =====================================
mode           job settings                              module
=============  ========================================  =====================================
``plain``      ``mode: honest``, ``solver: gradient``    :mod:`~consortium.vertical.gradient`
``exact``      ``mode: honest``, ``solver: exact``       :mod:`~consortium.vertical.exact`
``arbitered``  ``mode: arbitered``                       :mod:`~consortium.vertical.arbitered`
=============  ========================================  =====================================

A mode is a pair: a :class:`MasterMode` the master's driver calls through an
:class:`~consortium.vertical.exchange.Exchange`, and a :class:`MemberMode` the member's
actor hands the messages of the mode's own kinds to (``messages.ACCEPTS[mode]`` says which,
stage by stage). Neither touches a transport, so a test can drive either by hand. What
the two bases do themselves is what the modes in the clear (plain and exact) share; the
arbitered mode overrides what it encrypts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from consortium.clock import Clock
from consortium.errors import ConfigError
from consortium.ml.datasets import Task
from consortium.registry import Registry
from consortium.tracking import RoundRecord, Tracker
from consortium.vertical.exchange import Exchange, Expect, Outbox, outputs
from consortium.vertical.local import Alignment, MasterPart, MemberPart, batches
from consortium.vertical.messages import Kind, MemberStage
from consortium.vertical.parts import score
from consortium.vertical.settings import VerticalSettings
from consortium.wire import Message

__all__ = ["MODES", "MasterMode", "MemberMode", "Mode", "Rounds", "mode_name"]


@dataclass(frozen=True, kw_only=True)
class Rounds:
    """What a master's mode needs from the run besides the other parties: the randomness of
    each epoch's batch order, the clock, and the tracker (on the party that records)."""

    rng: Callable[[int], np.random.Generator]
    clock: Clock
    tracker: Tracker | None

    def record(
        self, epoch: int, metrics: dict[str, float], members: tuple[str, ...], duration_s: float
    ) -> None:
        if self.tracker is not None:
            self.tracker.round(
                RoundRecord(
                    round=epoch,
                    metrics=metrics,
                    party_metrics={},
                    participants=members,
                    failures={},
                    duration_s=duration_s,
                )
            )


@dataclass(kw_only=True, eq=False)
class MemberMode:
    """A member's state machine for one mode, built before the alignment: by default ready
    once aligned, needing nobody but the master, its outputs sent in the clear."""

    settings: VerticalSettings
    hub: str
    arbiter: str | None
    part: MemberPart = field(init=False, repr=False)  # no request of the mode comes before

    @property
    def ready(self) -> bool:
        """Whether the member, once aligned, may tell the master so."""
        return True

    def aligned(self, part: MemberPart) -> None:
        """The member's part over the aligned records."""
        self.part = part

    def handle(self, out: Outbox, msg: Message, stage: MemberStage) -> MemberStage:
        """One message of the mode's own kinds, accepted at ``stage``; the next stage."""
        raise NotImplementedError

    def reply_outputs(self, out: Outbox, request: Message, values: np.ndarray) -> None:
        """Answer ``vfl.predict`` with the bottom's output for its rows."""
        out.reply(request, Kind.PREDICT_REPLY, tensors={"out": values})

    def lost(self, out: Outbox, party: str) -> None:
        """``party`` (not the master) disconnected: RunFailed if the mode needs it."""

    def close(self) -> None:
        """Release what the mode holds."""


@dataclass(kw_only=True, eq=False)
class MasterMode:
    """The master's side of one mode. By default it trains :meth:`train_step` by batches,
    epoch after epoch, and predicts by asking every member for its bottom's output
    (``vfl.predict``) and running the top over them and its own."""

    settings: VerticalSettings
    members: tuple[str, ...]
    arbiter: str | None
    task: Task
    width: int  # of every bottom's output

    def prepare(self, io: Exchange) -> None:
        """Before the alignment (the arbitered mode has the arbiter make the keys)."""

    def close(self) -> None:
        """Release what the mode holds."""

    def min_batch(self, alignment: Alignment) -> int:
        """The fewest rows a batch may have (a shorter last batch joins the one before)."""
        return 1

    def train_step(self, io: Exchange, part: MasterPart, rows: np.ndarray) -> float | None:
        """One step on the training ``rows``; the batch's loss, if the master may see it."""
        raise NotImplementedError

    def fit(
        self, io: Exchange, part: MasterPart, alignment: Alignment, rounds: Rounds
    ) -> tuple[dict[str, float], int]:
        """Train on the aligned training rows, ``settings.rounds`` epochs, each scored on
        the held-out rows and recorded; the last metrics and the rounds run."""
        settings = self.settings
        metrics: dict[str, float] = {}
        min_size = self.min_batch(alignment)
        for epoch in range(1, settings.rounds + 1):
            started = rounds.clock.now()
            rng = rounds.rng(epoch) if settings.shuffle else None
            total: float | None = 0.0
            for rows in batches(alignment.n_train, settings.batch_size, rng, min_size=min_size):
                loss = self.train_step(io, part, rows)
                total = None if loss is None or total is None else total + loss * len(rows)
            metrics = {} if total is None else {"train_loss": total / alignment.n_train}
            self.score_held_out(io, part, alignment, metrics)
            rounds.record(epoch, metrics, self.members, rounds.clock.now() - started)
        return metrics, settings.rounds

    def score_held_out(
        self, io: Exchange, part: MasterPart, alignment: Alignment, metrics: dict[str, float]
    ) -> None:
        """Add the scores of the held-out aligned rows to ``metrics``."""
        test = np.arange(alignment.n_train, len(alignment.rows))
        if len(test):
            metrics.update(score(self.predict(io, part, test), part.y[test], self.task))

    def predict(self, io: Exchange, part: MasterPart, rows: np.ndarray) -> np.ndarray:
        """The model's scores for aligned ``rows`` (see ``parts.Top.predict``)."""
        step = io.new_round()
        for member in self.members:
            io.send(Kind.PREDICT, member, round=step, tensors={"rows": rows})
        own = part.outputs(rows, train=False)
        (outs,) = io.collect(step, Expect(Kind.PREDICT_REPLY, self.members, outputs(len(rows))))
        return part.top.predict([*own, *outs])


@dataclass(frozen=True, slots=True)
class Mode:
    """A mode's two sides."""

    master: type[MasterMode]
    member: type[MemberMode]


MODES: Registry[Mode] = Registry("vertical mode")
"""Mode name -> its two sides; each mode's module registers its own."""

_NAMES = {
    ("honest", "gradient"): "plain",
    ("honest", "exact"): "exact",
    ("arbitered", "gradient"): "arbitered",
}


def mode_name(settings: VerticalSettings) -> str:
    """The mode a job's settings choose."""
    try:
        return _NAMES[settings.mode, settings.solver]
    except KeyError:
        raise ConfigError(
            f"algorithm: no vertical mode trains {settings.mode!r} with the "
            f"{settings.solver!r} solver"
        ) from None
