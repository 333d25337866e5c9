"""The vertical protocol's modes, chosen once per job: what each mode's master and member
do beyond what every mode does (join, align, standardise, save or load parts, predict).

=============  ========================================  =====================================
mode           job settings                              module
=============  ========================================  =====================================
``plain``      ``mode: honest``, ``solver: gradient``    :mod:`~consortium.vertical.gradient`
``exact``      ``mode: honest``, ``solver: exact``       :mod:`~consortium.vertical.exact`
``arbitered``  ``mode: arbitered``                       :mod:`~consortium.vertical.arbitered`
=============  ========================================  =====================================

Plain gradient training serves linear models and split networks alike: the two exchange
the same messages and differ only in their parts (``models.MODELS`` builds a linear or a
torch bottom and top), so they share one pair of state machines.

A mode is a pair: a :class:`MasterMode` the master's driver calls through an
:class:`~consortium.vertical.exchange.Exchange`, and a :class:`MemberMode` the member's
actor hands the messages of the mode's own kinds to (``messages.ACCEPTS[mode]`` says which,
stage by stage). Neither touches a transport, so a test can drive either by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from consortium.clock import Clock
from consortium.errors import ConfigError
from consortium.ml.datasets import Task
from consortium.registry import Registry
from consortium.tracking import RoundRecord
from consortium.vertical.align import Alignment
from consortium.vertical.exchange import Exchange, Expect, Outbox, outputs
from consortium.vertical.local import MasterPart, MemberPart
from consortium.vertical.messages import Kind, MemberStage
from consortium.vertical.settings import VerticalSettings
from consortium.wire import Message

__all__ = [
    "MODES",
    "ClearMaster",
    "ClearMember",
    "MasterMode",
    "MemberMode",
    "Mode",
    "Rounds",
    "mode_name",
]


@dataclass(frozen=True, kw_only=True)
class Rounds:
    """What a master's mode needs from the run besides the other parties: the randomness of
    each epoch's batch order, the clock, and where each round's record goes."""

    rng: Callable[[int], np.random.Generator]
    clock: Clock
    record: Callable[[RoundRecord], None]


class MemberMode(Protocol):
    """A member's state machine for one mode, built before the alignment."""

    @property
    def ready(self) -> bool:
        """Whether the member, once aligned, may tell the master so (arbitered: once it
        also holds the arbiter's public key)."""
        ...

    def aligned(self, part: MemberPart) -> None:
        """The member's part over the aligned records."""
        ...

    def handle(self, out: Outbox, msg: Message, stage: MemberStage) -> MemberStage:
        """One message of the mode's own kinds, accepted at ``stage``; the next stage."""
        ...

    def reply_outputs(self, out: Outbox, request: Message, values: np.ndarray) -> None:
        """Answer ``vfl.predict`` with the bottom's output for its rows."""
        ...

    def lost(self, out: Outbox, party: str) -> None:
        """``party`` (not the master) disconnected: RunFailed if the mode needs it."""
        ...

    def close(self) -> None: ...


class MasterMode(Protocol):
    """The master's side of one mode."""

    def prepare(self, io: Exchange) -> None:
        """Before the alignment (arbitered: have the arbiter make the keys)."""
        ...

    def fit(
        self, io: Exchange, part: MasterPart, alignment: Alignment, rounds: Rounds
    ) -> tuple[dict[str, float], int]:
        """Train on the aligned training rows; the last metrics and the rounds run."""
        ...

    def predict(self, io: Exchange, part: MasterPart, rows: np.ndarray) -> np.ndarray:
        """The model's scores for aligned ``rows`` (see ``parts.Top.predict``)."""
        ...

    def close(self) -> None: ...


class MemberFactory(Protocol):
    def __call__(
        self, *, settings: VerticalSettings, hub: str, arbiter: str | None
    ) -> MemberMode: ...


class MasterFactory(Protocol):
    def __call__(
        self,
        *,
        settings: VerticalSettings,
        members: Sequence[str],
        arbiter: str | None,
        task: Task,
        width: int,
    ) -> MasterMode: ...


@dataclass(frozen=True, slots=True)
class Mode:
    """A mode's two sides."""

    master: MasterFactory
    member: MemberFactory


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


# -- what the modes whose outputs travel in the clear share --------------------------------


class ClearMember:
    """A member whose outputs travel in the clear (plain and exact modes): ready once
    aligned, needing nobody but the master."""

    def __init__(self, *, settings: VerticalSettings, hub: str, arbiter: str | None) -> None:
        self.settings = settings
        self._part: MemberPart | None = None

    @property
    def ready(self) -> bool:
        return True

    @property
    def part(self) -> MemberPart:
        if self._part is None:
            raise RuntimeError("the member is not aligned yet")
        return self._part

    def aligned(self, part: MemberPart) -> None:
        self._part = part

    def reply_outputs(self, out: Outbox, request: Message, values: np.ndarray) -> None:
        out.reply(request, Kind.PREDICT_REPLY, tensors={"out": values})

    def lost(self, out: Outbox, party: str) -> None:
        return None

    def close(self) -> None:
        return None


class ClearMaster:
    """The master's side of the modes in the clear: predicting asks every member for its
    bottom's output (``vfl.predict``) and runs the top over them and its own."""

    def __init__(
        self,
        *,
        settings: VerticalSettings,
        members: Sequence[str],
        arbiter: str | None,
        task: Task,
        width: int,
    ) -> None:
        self.settings = settings
        self.members = tuple(members)
        self.task: Task = task

    def prepare(self, io: Exchange) -> None:
        return None

    def close(self) -> None:
        return None

    def predict(self, io: Exchange, part: MasterPart, rows: np.ndarray) -> np.ndarray:
        step = io.new_round()
        for member in self.members:
            io.send(Kind.PREDICT, member, round=step, tensors={"rows": rows})
        own_x = part.own_x(rows)
        own = [] if part.own is None or own_x is None else [part.own.forward(own_x, train=False)]
        (outs,) = io.collect(step, Expect(Kind.PREDICT_REPLY, self.members, outputs(len(rows))))
        return part.top.predict([*own, *outs])
