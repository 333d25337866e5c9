"""The seams through which the vertical state machines talk, so that each can be driven in
a test without a network: a member's modes send through an :class:`Outbox` (a
:class:`~consortium.runtime.PartyContext` in a run, a recorder in a test); the master's
start every exchange and wait for its replies through an :class:`Exchange`
(:class:`ContextExchange` in a run; in a test, a stand-in that hands the messages to the
members' programs on the same thread).

Each reply is *read* as it arrives (:class:`Expect`): the reader checks it and returns what
the mode needs; a reply it refuses (``RunFailed``) is a failure that names its sender.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from consortium.errors import RunFailed
from consortium.runtime import PartyContext, gather
from consortium.wire import Message, MetaValue

__all__ = [
    "ContextExchange",
    "Exchange",
    "Expect",
    "Outbox",
    "Reader",
    "outputs",
    "positions",
    "scalar",
]

Reader = Callable[[Message], Any]
"""What a mode needs from a reply; raises RunFailed (the reason) for a reply it refuses."""


def _as_is(msg: Message) -> Message:
    return msg


@dataclass(frozen=True, slots=True)
class Expect:
    """One reply of ``kind`` from each of ``parties``, each turned by ``read`` into what the
    mode needs (by default, the message itself)."""

    kind: str
    parties: tuple[str, ...]
    read: Reader = field(default=_as_is)


class Outbox(Protocol):
    """Where a member's state machine sends (a PartyContext satisfies it)."""

    @property
    def name(self) -> str: ...

    def send(
        self, kind: str, to: str, *, round: int, tensors: Mapping[str, np.ndarray] | None = None
    ) -> None: ...

    def reply(
        self,
        request: Message,
        kind: str,
        *,
        meta: Mapping[str, MetaValue] | None = None,
        tensors: Mapping[str, np.ndarray] | None = None,
    ) -> None: ...


class Exchange(Protocol):
    """How the master's modes talk to the other parties. Every exchange the master starts
    has a round number of its own (:meth:`new_round`); replies carry it back."""

    def new_round(self) -> int: ...

    def send(
        self,
        kind: str,
        to: str,
        *,
        round: int,
        meta: Mapping[str, MetaValue] | None = None,
        tensors: Mapping[str, np.ndarray] | None = None,
    ) -> None: ...

    def collect(self, round: int, *expects: Expect) -> list[list[Any]]:
        """Wait for every reply ``expects`` names, for ``round``, in whatever order they
        come; for each :class:`Expect`, what its reader made of them, in party order."""


class ContextExchange:
    """:class:`Exchange` over a party's context: sends on its endpoint, waits with
    :func:`~consortium.runtime.gather` (``timeout`` per wait, every party needed)."""

    def __init__(self, ctx: PartyContext, *, timeout: float) -> None:
        self.ctx = ctx
        self.timeout = timeout
        self.round = 0
        self.send = ctx.send

    def new_round(self) -> int:
        self.round += 1
        return self.round

    def collect(self, round: int, *expects: Expect) -> list[list[Any]]:
        """The first expectation is waited for with the others' replies kept as they come
        (a member may say it stepped before the arbiter answers); then what is still
        missing of the others."""
        got: list[dict[str, Any]] = [{} for _ in expects]

        def on_other(msg: Message) -> None:
            for i, expect in enumerate(expects[1:], 1):
                if msg.kind == expect.kind and msg.round == round and msg.sender in expect.parties:
                    got[i].setdefault(msg.sender, expect.read(msg))

        for i, expect in enumerate(expects):
            waiting = [p for p in expect.parties if p not in got[i]]
            gather(
                self.ctx,
                expected=waiting,
                kind=expect.kind,
                round=round,
                timeout=self.timeout,
                quorum=len(waiting),
                on_reply=functools.partial(_keep, expect.read, got[i]),
                on_other=on_other if i == 0 and len(expects) > 1 else None,
            )
        return [
            [into[p] for p in expect.parties] for into, expect in zip(got, expects, strict=True)
        ]


def _keep(read: Reader, into: dict[str, Any], msg: Message) -> str | None:
    """A gather's reply handler: what ``read`` makes of a reply, kept by its sender, or the
    reason it refused it."""
    try:
        into[msg.sender] = read(msg)
    except RunFailed as exc:
        return str(exc)
    return None


def positions(msg: Message, name: str, limit: int) -> np.ndarray:
    """Aligned positions from a request, checked to lie in ``[0, limit)``."""
    rows = np.asarray(msg.tensors.get(name, np.zeros(0)))
    if rows.ndim != 1 or rows.dtype.kind not in "iu" or len(rows) == 0:
        raise RunFailed(f"{msg.kind} from {msg.sender}: {name} must be a 1-D integer array")
    if rows.min() < 0 or rows.max() >= limit:
        raise RunFailed(f"{msg.kind} from {msg.sender}: {name} outside the {limit} rows allowed")
    return rows.astype(np.int64)


def scalar(msg: Message, name: str) -> float:
    """A finite number from a message."""
    value = np.asarray(msg.tensors.get(name, np.float64("nan")), dtype=np.float64)
    if value.shape != () or not np.isfinite(value):
        raise RunFailed(f"{msg.kind} from {msg.sender}: {name} must be a finite number")
    return float(value)


def outputs(rows: int) -> Reader:
    """A reader of a member's bottom output ``out`` for ``rows`` rows."""

    def read(msg: Message) -> np.ndarray:
        out = np.asarray(msg.tensors.get("out", np.zeros(0)))
        if out.ndim != 2 or out.shape[0] != rows or not np.all(np.isfinite(out)):
            raise RunFailed(f"out must be a finite ({rows}, width) array, got shape {out.shape}")
        return out

    return read
