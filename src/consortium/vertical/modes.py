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

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from consortium.ml.datasets import Task
from consortium.registry import Registry
from consortium.vertical.exchange import Exchange, Expect, Outbox, outputs
from consortium.vertical.local import Alignment, MasterPart, MemberPart, batches
from consortium.vertical.messages import Kind, MemberStage
from consortium.vertical.parts import score
from consortium.vertical.settings import VerticalSettings
from consortium.wire import Message

__all__ = ["MODES", "EpochRng", "MasterMode", "MemberMode", "Mode", "mode_name"]

EpochRng = Callable[[int], np.random.Generator]
"""The randomness of an epoch's batch order, by epoch."""


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
        self, io: Exchange, part: MasterPart, alignment: Alignment, rng: EpochRng
    ) -> Iterator[dict[str, float]]:
        """Train on the aligned training rows: each epoch's metrics, scored on the held-out
        rows every ``settings.eval_every`` epochs and after the last (``settings.rounds``
        epochs, each in batches of a fresh order from ``rng``)."""
        settings = self.settings
        min_size = self.min_batch(alignment)
        for epoch in range(1, settings.rounds + 1):
            order = rng(epoch) if settings.shuffle else None
            total: float | None = 0.0
            for rows in batches(alignment.n_train, settings.batch_size, order, min_size=min_size):
                loss = self.train_step(io, part, rows)
                total = None if loss is None or total is None else total + loss * len(rows)
            metrics = {} if total is None else {"train_loss": total / alignment.n_train}
            if epoch % settings.eval_every == 0 or epoch == settings.rounds:
                self.score_held_out(io, part, alignment, metrics)
            yield metrics

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
    """The mode a job's settings choose (the binder's check refuses the other pairs)."""
    return _NAMES[settings.mode, settings.solver]
