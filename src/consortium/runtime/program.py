"""What a role runs: a *driver* (an active loop, e.g. an aggregator's rounds) or an *actor*
(reacts to each message, e.g. a trainer). Programs register under ``"protocol/role"``.

Programs see only their :class:`~consortium.runtime.context.PartyContext`; they never touch
a transport, a launcher or an address, so the same program runs on every launcher.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from consortium.registry import Registry
from consortium.spec import Strict
from consortium.topology import Topology
from consortium.wire import Message

if TYPE_CHECKING:
    from consortium.runtime.context import PartyContext

__all__ = [
    "CRASHED",
    "JOIN",
    "LEAVE",
    "PROGRAMS",
    "PROTOCOLS",
    "STOP",
    "Actor",
    "Driver",
    "Outcome",
    "ProgramFactory",
    "ProtocolSettings",
    "program_for",
]

JOIN = "party.join"  # a party announces itself to the hub when it starts
LEAVE = "party.leave"  # a party says goodbye before closing
STOP = "run.stop"  # the driver ends the run for a party
CRASHED = "party.crashed"  # a party's program raised; meta["reason"] says what


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a driver hands back when its run ends."""

    metrics: Mapping[str, float]
    rounds_completed: int
    dropouts: Mapping[str, str] = field(default_factory=dict)
    model: Mapping[str, Any] | None = None


class Driver(Protocol):
    def run(self, ctx: PartyContext) -> Outcome: ...


class Actor(Protocol):
    def start(self, ctx: PartyContext) -> None:
        """Called once before the first message (e.g. to send JOIN)."""
        ...

    def handle(self, ctx: PartyContext, msg: Message) -> bool:
        """React to one message. Return False when the party is done."""
        ...


class ProtocolSettings(Strict):
    """The base of every protocol's settings: the job file's ``algorithm`` section."""

    protocol: str

    def check_topology(self, topology: Topology) -> None:
        """Check these settings against the job's expanded topology when the job loads;
        raise ConfigError naming the field. Nothing to check by default."""


ProgramFactory = Callable[["PartyContext"], Driver | Actor]
PROGRAMS: Registry[ProgramFactory] = Registry("program")
PROTOCOLS: Registry[type[ProtocolSettings]] = Registry("protocol")
"""Protocol name -> the model of its settings (the job file's ``algorithm``)."""


def program_for(protocol: str, role: str) -> ProgramFactory:
    return PROGRAMS.get(f"{protocol}/{role}")
