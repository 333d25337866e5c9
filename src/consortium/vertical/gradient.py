"""The plain mode: gradient training with outputs and gradients in the clear, of linear
models and split networks alike (Vepakomma et al., "Split learning for health", 2018;
for linear models this is minibatch gradient descent on ``z = sum_p X_p W_p + b``): the two
exchange the same messages and differ only in their parts (``models.MODELS`` builds them).

For every batch the master names the aligned rows (``vfl.forward``), waits for every
member's output, steps the top, and sends each member the gradient w.r.t. its own output
(``vfl.backward``). A member's messages arrive in the order sent, so the next forward finds
its bottom already stepped. After each epoch the master predicts the held-out aligned
records the same way, without training (``vfl.predict``).
"""

from __future__ import annotations

import numpy as np

from consortium.errors import RunFailed
from consortium.vertical.exchange import Exchange, Expect, Outbox, outputs, positions
from consortium.vertical.local import MasterPart
from consortium.vertical.messages import Kind, MemberStage
from consortium.vertical.modes import MODES, MasterMode, MemberMode, Mode
from consortium.wire import Message

__all__ = ["GradientMaster", "GradientMember"]


class GradientMember(MemberMode):
    """A member in plain mode: a training forward for the rows a request names, then the
    gradient w.r.t. that output for the same step."""

    step: tuple[int, int] | None = None  # (round, rows) of the last training forward

    def handle(self, out: Outbox, msg: Message, stage: MemberStage) -> MemberStage:
        if msg.kind == Kind.FORWARD:
            rows = positions(msg, "rows", self.part.n_train)
            values = self.part.bottom.forward(self.part.x[rows], train=True)
            self.step = (msg.round, len(rows))
            out.reply(msg, Kind.FORWARD_REPLY, tensors={"out": values})
            return stage
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
        return stage


class GradientMaster(MasterMode):
    """The master in plain mode."""

    def train_step(self, io: Exchange, part: MasterPart, rows: np.ndarray) -> float:
        step = io.new_round()
        for member in self.members:
            io.send(Kind.FORWARD, member, round=step, tensors={"rows": rows})
        own = part.outputs(rows, train=True)
        (outs,) = io.collect(step, Expect(Kind.FORWARD_REPLY, self.members, outputs(len(rows))))
        loss, grads = part.top.step([*own, *outs], part.y[rows])
        for member, grad in zip(self.members, grads[len(own) :], strict=True):
            io.send(Kind.BACKWARD, member, round=step, tensors={"grad": grad})
        if part.own is not None:
            part.own.bottom.backward(grads[0])
        return loss


MODES.register("plain", Mode(master=GradientMaster, member=GradientMember))
