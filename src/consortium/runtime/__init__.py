"""The runtime: what programs are written against (the party context, rounds with quorum and
deadlines, seeding, the program and protocol registries). How launchers host programs lives
in :mod:`consortium.runtime.host`."""

from consortium.runtime.checkpoint import Checkpoints, Snapshot
from consortium.runtime.context import PartyContext
from consortium.runtime.data import BINDERS, DataBinder, LocalData
from consortium.runtime.gather import GatherResult, gather, quorum_size
from consortium.runtime.program import (
    CRASHED,
    JOIN,
    LEAVE,
    PROGRAMS,
    PROTOCOLS,
    STOP,
    Actor,
    Driver,
    Outcome,
    ProgramFactory,
    ProtocolSettings,
    program_for,
)
from consortium.runtime.seeding import derive_rng, derive_seed

__all__ = [
    "BINDERS",
    "CRASHED",
    "JOIN",
    "LEAVE",
    "PROGRAMS",
    "PROTOCOLS",
    "STOP",
    "Actor",
    "Checkpoints",
    "DataBinder",
    "Driver",
    "GatherResult",
    "LocalData",
    "Outcome",
    "PartyContext",
    "ProgramFactory",
    "ProtocolSettings",
    "Snapshot",
    "derive_rng",
    "derive_seed",
    "gather",
    "program_for",
    "quorum_size",
]
