"""The member's program (an actor): what every mode does, around the mode's own state
machine (:mod:`consortium.vertical.modes`).

A member answers the master's requests one at a time, stage by stage
(:class:`~consortium.vertical.messages.MemberStage`). A request that does not fit the stage
(``messages.ACCEPTS``), or rows outside the aligned records, is a protocol error: the
member fails and the run fails naming it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

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
        self.part: MemberPart | None = None
        self._psi: PsiSender | None = None
        self._alignment: Message | None = None  # answered once the mode is ready
        self._shared: dict[str, Callable[[Outbox, Message], None]] = {
            Kind.PSI_OFFER: self._offer,
            Kind.ALIGN: self._align,
            Kind.PREDICT: self._predict,
            Kind.FINISH: self._finish,
        }

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
        shared = self._shared.get(msg.kind)
        if shared is not None:
            shared(out, msg)
        else:
            self.stage = self.mode.handle(out, msg, self.stage)
        if self.stage == MemberStage.KEY and self.mode.ready:
            assert self._alignment is not None
            out.reply(self._alignment, Kind.READY, meta={"features": self.data.n_features})
            self._alignment = None
            self.stage = MemberStage.READY
        return True

    def _offer(self, out: Outbox, msg: Message) -> None:
        self._psi = PsiSender(self.data.ids, domain=self.ctx.job_id)
        reblinded = self._psi.reblind(msg.tensors["points"])
        out.reply(msg, Kind.PSI_REPLY, tensors={"ids": self._psi.blinded(), "points": reblinded})
        self.stage = MemberStage.ALIGN

    def _align(self, out: Outbox, msg: Message) -> None:
        assert self._psi is not None
        rows = self._psi.rows(msg.tensors["positions"])
        n_train, width = msg.meta.get("train"), msg.meta.get("width")
        if not isinstance(n_train, int) or not isinstance(width, int) or width < 1:
            raise RunFailed(f"{msg.kind} from {msg.sender}: train and width must be integers")
        saved = saved_part(self.settings, self.ctx.name)
        self.part = member_part(self.ctx, rows, n_train=n_train, width=width, saved=saved)
        self.mode.aligned(self.part)
        self._alignment = msg
        self.stage = MemberStage.KEY  # ready as soon as the mode is

    def _predict(self, out: Outbox, msg: Message) -> None:
        assert self.part is not None
        rows = positions(msg, "rows", len(self.part.x))
        values = self.part.bottom.forward(self.part.x[rows], train=False)
        self.mode.reply_outputs(out, msg, values)

    def _finish(self, out: Outbox, msg: Message) -> None:
        assert self.part is not None
        saved = save_part(self.settings, out.name, self.part.state())
        out.reply(msg, Kind.FINISH_REPLY, meta={"saved": saved})
        self.stage = MemberStage.DONE


PROGRAMS.register("vertical/member", Member)
