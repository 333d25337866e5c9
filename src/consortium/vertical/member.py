"""The member's program (an actor): what every mode does, around the mode's own state
machine (:mod:`consortium.vertical.modes`).

A member answers the master's requests one at a time, stage by stage
(:class:`~consortium.vertical.messages.MemberStage`). A request that does not fit the stage
(``messages.ACCEPTS``), or rows outside the aligned records, is a protocol error: the
member fails and the run fails naming it.
"""

from __future__ import annotations

import logging

from consortium.errors import RunFailed
from consortium.privacy.psi import PsiSender
from consortium.runtime import JOIN, PROGRAMS, STOP, PartyContext
from consortium.transport import PEER_LOST
from consortium.vertical.data import VerticalData
from consortium.vertical.exchange import Outbox, positions
from consortium.vertical.local import MemberPart, member_part, save_part, saved_part
from consortium.vertical.messages import ACCEPTS, FROM_ARBITER, Kind, MemberStage
from consortium.vertical.modes import MODES, MemberMode, mode_name
from consortium.vertical.settings import VerticalSettings
from consortium.wire import Message

__all__ = ["Member"]

log = logging.getLogger(__name__)


class Member:
    """Holds some columns of the aligned records and its bottom of the model."""

    def __init__(self, ctx: PartyContext) -> None:
        self.ctx = ctx
        self.settings: VerticalSettings = ctx.settings
        self.data: VerticalData = ctx.data
        self.stage = MemberStage.OFFER
        self.hub = ctx.topology.hub
        arbiters = ctx.peers("arbiter")
        self.arbiter = arbiters[0] if arbiters else None
        name = mode_name(self.settings)
        self.accepts = ACCEPTS[name]
        self.mode: MemberMode = MODES.get(name).member(
            settings=self.settings, hub=self.hub, arbiter=self.arbiter
        )
        self._psi: PsiSender | None = None
        self._alignment: Message | None = None  # answered once the mode is ready

    @property
    def part(self) -> MemberPart:
        """The member's part, once aligned."""
        return self.mode.part

    def start(self, ctx: PartyContext) -> None:
        if self.data.x is None:
            raise RunFailed(f"member {ctx.name} holds no feature columns")
        ctx.send(JOIN, self.hub)

    def handle(self, ctx: PartyContext, msg: Message) -> bool:
        if msg.kind == STOP or (msg.kind == PEER_LOST and msg.sender == self.hub):
            self.mode.close()
            return False
        return self.receive(ctx, msg)

    def receive(self, out: Outbox, msg: Message) -> bool:
        """One message of the protocol (the runtime's own are :meth:`handle`'s)."""
        if msg.kind == PEER_LOST:
            self.mode.lost(out, msg.sender)
        if msg.sender != (self.arbiter if msg.kind in FROM_ARBITER else self.hub):
            log.debug("%s ignored %s from %s", out.name, msg.kind, msg.sender)
            return True
        if msg.kind not in self.accepts[self.stage]:
            raise RunFailed(f"{out.name} got {msg.kind} while {self.stage.value}")
        if msg.kind == Kind.PSI_OFFER:
            self._psi = PsiSender(self.data.ids, domain=self.ctx.job_id)
            reblinded = self._psi.reblind(msg.tensors["points"])
            ids = self._psi.blinded()
            out.reply(msg, Kind.PSI_REPLY, tensors={"ids": ids, "points": reblinded})
            self.stage = MemberStage.ALIGN
        elif msg.kind == Kind.ALIGN:
            self._align(msg)
        elif msg.kind == Kind.PREDICT:
            rows = positions(msg, "rows", len(self.part.x))
            values = self.part.bottom.forward(self.part.x[rows], train=False)
            self.mode.reply_outputs(out, msg, values)
        elif msg.kind == Kind.FINISH:
            saved = save_part(self.settings, out.name, self.part.state())
            out.reply(msg, Kind.FINISH_REPLY, meta={"saved": saved})
            self.stage = MemberStage.DONE
        else:
            self.stage = self.mode.handle(out, msg, self.stage)
        if self.stage == MemberStage.KEY and self.mode.ready:
            assert self._alignment is not None
            out.reply(self._alignment, Kind.READY, meta={"features": self.data.n_features})
            self._alignment = None
            self.stage = MemberStage.READY
        return True

    def _align(self, msg: Message) -> None:
        assert self._psi is not None
        rows = self._psi.rows(msg.tensors["positions"])
        n_train, width = msg.meta.get("train"), msg.meta.get("width")
        if not isinstance(n_train, int) or not isinstance(width, int) or width < 1:
            raise RunFailed(f"{msg.kind} from {msg.sender}: train and width must be integers")
        saved = saved_part(self.settings, self.ctx.name)
        part = member_part(self.ctx, rows, n_train=n_train, width=width, saved=saved)
        self.mode.aligned(part)
        self._alignment = msg
        self.stage = MemberStage.KEY  # ready as soon as the mode is


PROGRAMS.register("vertical/member", Member)
