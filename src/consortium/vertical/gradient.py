"""The plain mode: gradient training with outputs and gradients in the clear, of linear
models and split networks alike (Vepakomma et al., "Split learning for health", 2018;
for linear models this is minibatch gradient descent on ``z = sum_p X_p W_p + b``).

For every batch the master names the aligned rows (``vfl.forward``), waits for every
member's output, steps the top, and sends each member the gradient w.r.t. its own output
(``vfl.backward``). A member's messages arrive in the order sent, so the next forward finds
its bottom already stepped. After each epoch the master predicts the held-out aligned
records the same way, without training (``vfl.predict``).

:func:`train_epochs` is the epoch loop the arbitered mode shares.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from consortium.errors import RunFailed
from consortium.ml.datasets import Task
from consortium.tracking import RoundRecord
from consortium.vertical.align import Alignment, batches
from consortium.vertical.exchange import Exchange, Expect, Outbox, outputs, positions
from consortium.vertical.local import MasterPart
from consortium.vertical.messages import Kind, MemberStage
from consortium.vertical.modes import MODES, ClearMaster, ClearMember, Mode, Rounds
from consortium.vertical.parts import score
from consortium.vertical.settings import VerticalSettings
from consortium.wire import Message

__all__ = ["GradientMaster", "GradientMember", "TrainStep", "train_epochs"]


class GradientMember(ClearMember):
    """A member in plain mode: a training forward for the rows a request names, then the
    gradient w.r.t. that output for the same step."""

    def __init__(self, *, settings: VerticalSettings, hub: str, arbiter: str | None) -> None:
        super().__init__(settings=settings, hub=hub, arbiter=arbiter)
        self.step: tuple[int, int] | None = None  # (round, rows) of the last training forward

    def handle(self, out: Outbox, msg: Message, stage: MemberStage) -> MemberStage:
        if msg.kind == Kind.FORWARD:
            self.forward(out, msg)
        else:
            self.backward(msg)
        return stage

    def forward(self, out: Outbox, msg: Message) -> None:
        part = self.part
        rows = positions(msg, "rows", part.n_train)
        values = part.bottom.forward(part.x[rows], train=True)
        self.step = (msg.round, len(rows))
        out.reply(msg, Kind.FORWARD_REPLY, tensors={"out": values})

    def backward(self, msg: Message) -> None:
        grad = np.asarray(msg.tensors.get("grad", np.zeros(0)))
        if self.step is None or msg.round != self.step[0]:
            raise RunFailed(f"{msg.kind} from {msg.sender} for a step this member did not run")
        if grad.ndim != 2 or grad.shape[0] != self.step[1] or not np.all(np.isfinite(grad)):
            raise RunFailed(f"{msg.kind} from {msg.sender}: grad has shape {grad.shape}")
        try:
            self.part.bottom.backward(grad)
        except ValueError as exc:
            raise RunFailed(f"{msg.kind} from {msg.sender}: {exc}") from None
        self.step = None


class TrainStep(Protocol):
    """A master's mode that trains batch by batch."""

    members: tuple[str, ...]

    def min_batch(self, alignment: Alignment) -> int:
        """The fewest rows a batch may have (a shorter last batch joins the one before)."""
        ...

    def train_step(self, io: Exchange, part: MasterPart, rows: np.ndarray) -> float | None:
        """One step on the training ``rows``; the batch's loss, if the master may see it."""
        ...

    def predict(self, io: Exchange, part: MasterPart, rows: np.ndarray) -> np.ndarray: ...


def train_epochs(
    mode: TrainStep,
    io: Exchange,
    part: MasterPart,
    alignment: Alignment,
    rounds: Rounds,
    *,
    settings: VerticalSettings,
    task: Task,
) -> tuple[dict[str, float], int]:
    """``settings.rounds`` epochs over the training rows in batches, each scored on the
    held-out rows; a round record per epoch."""
    test = np.arange(alignment.n_train, len(alignment.rows))
    metrics: dict[str, float] = {}
    min_size = mode.min_batch(alignment)
    for epoch in range(1, settings.rounds + 1):
        started = rounds.clock.now()
        rng = rounds.rng(epoch) if settings.shuffle else None
        total: float | None = 0.0
        for rows in batches(alignment.n_train, settings.batch_size, rng, min_size=min_size):
            loss = mode.train_step(io, part, rows)
            total = None if loss is None or total is None else total + loss * len(rows)
        metrics = {} if total is None else {"train_loss": total / alignment.n_train}
        if len(test):
            metrics.update(score(mode.predict(io, part, test), part.y[test], task))
        rounds.record(
            RoundRecord(
                round=epoch,
                metrics=metrics,
                party_metrics={},
                participants=mode.members,
                failures={},
                duration_s=rounds.clock.now() - started,
            )
        )
    return metrics, settings.rounds


class GradientMaster(ClearMaster):
    """The master in plain mode."""

    def fit(
        self, io: Exchange, part: MasterPart, alignment: Alignment, rounds: Rounds
    ) -> tuple[dict[str, float], int]:
        return train_epochs(
            self, io, part, alignment, rounds, settings=self.settings, task=self.task
        )

    def min_batch(self, alignment: Alignment) -> int:
        return 1

    def train_step(self, io: Exchange, part: MasterPart, rows: np.ndarray) -> float:
        step = io.new_round()
        for member in self.members:
            io.send(Kind.FORWARD, member, round=step, tensors={"rows": rows})
        own_x = part.own_x(rows)
        own = [] if part.own is None or own_x is None else [part.own.forward(own_x, train=True)]
        (outs,) = io.collect(step, Expect(Kind.FORWARD_REPLY, self.members, outputs(len(rows))))
        loss, grads = part.top.step([*own, *outs], part.y[rows])
        for member, grad in zip(self.members, grads[len(own) :], strict=True):
            io.send(Kind.BACKWARD, member, round=step, tensors={"grad": grad})
        if part.own is not None:
            part.own.backward(grads[0])
        return loss


MODES.register("plain", Mode(master=GradientMaster, member=GradientMember))
