"""The party API that programs are written against: who am I, who are my peers, send,
receive with deadlines, and randomness derived from (seed, round, party)."""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from consortium.clock import Clock, SystemClock
from consortium.errors import TransportClosed
from consortium.runtime.checkpoint import Checkpoints
from consortium.runtime.program import STOP
from consortium.runtime.seeding import derive_rng
from consortium.topology import Party, Topology
from consortium.transport import Endpoint
from consortium.wire import Message, MetaValue

__all__ = ["PartyContext"]


@dataclass(kw_only=True)
class PartyContext:
    """Everything a program may use. Built by a launcher, one per party.

    ``settings`` is the job's validated configuration (read-only by convention); ``data``
    holds this party's local data binding; ``tracker`` is set only on the party that records
    the run (the hub), and ``checkpoints`` where the run keeps them (see
    :mod:`consortium.runtime.checkpoint`).
    """

    party: Party
    topology: Topology
    endpoint: Endpoint
    job_id: str
    seed: int
    settings: Any
    data: Any = None
    tracker: Any = None
    checkpoints: Checkpoints | None = None
    interrupted: str | None = None
    """Why the run was stopped from outside (a signal), once it has been."""
    clock: Clock = field(default_factory=SystemClock)
    _seq: dict[str, itertools.count[int]] = field(default_factory=dict, repr=False)
    _seq_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def name(self) -> str:
        return self.party.name

    def peers(self, role: str | None = None) -> list[str]:
        """Parties this one shares a channel with (optionally of one role)."""
        return self.topology.neighbours(self.party.name, role=role)

    def rng(self, *keys: int) -> np.random.Generator:
        """Randomness for ``(seed, *keys, party rank)``, e.g. ``ctx.rng(round)``."""
        return derive_rng(self.seed, *keys, self.party.rank)

    def message(
        self,
        kind: str,
        to: str,
        *,
        round: int = 0,
        meta: Mapping[str, MetaValue] | None = None,
        tensors: Mapping[str, np.ndarray] | None = None,
    ) -> Message:
        with self._seq_lock:
            counter = self._seq.get(to)
            if counter is None:
                counter = self._seq[to] = itertools.count(1)
            seq = next(counter)
        return Message(
            kind=kind,
            sender=self.party.name,
            receiver=to,
            job=self.job_id,
            round=round,
            seq=seq,
            meta=dict(meta or {}),
            tensors=dict(tensors or {}),
        )

    def send(
        self,
        kind: str,
        to: str,
        *,
        round: int = 0,
        meta: Mapping[str, MetaValue] | None = None,
        tensors: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        self.endpoint.send(self.message(kind, to, round=round, meta=meta, tensors=tensors))

    def reply(
        self,
        request: Message,
        kind: str,
        *,
        meta: Mapping[str, MetaValue] | None = None,
        tensors: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        self.send(kind, request.sender, round=request.round, meta=meta, tensors=tensors)

    def recv(self, timeout: float | None = None) -> Message:
        return self.endpoint.recv(timeout)

    def stop(self, parties: Iterable[str]) -> None:
        """End the run for ``parties`` (:data:`~consortium.runtime.STOP`); those already
        gone are skipped."""
        for party in parties:
            with contextlib.suppress(TransportClosed):
                self.send(STOP, party)
