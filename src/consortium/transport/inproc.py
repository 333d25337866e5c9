"""In-process transport: one mailbox per party, messages passed by reference.

Zero copy: tensors are not encoded. To keep parties from sharing mutable state through a
message, every tensor is delivered as a read-only view; a party that wants to change an
array copies it first (as it would after decoding from the network).
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Mapping

import numpy as np

from consortium.clock import Clock, SystemClock
from consortium.errors import TransportClosed, TransportError
from consortium.transport.base import PEER_BACK, PEER_LOST, Mailbox
from consortium.wire import Message

__all__ = ["InprocEndpoint", "InprocNetwork"]


def _read_only(tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray] | None:
    """``tensors`` as read-only numpy arrays (views of writable ones), or None when every one
    is a read-only array already."""
    out: dict[str, np.ndarray] | None = None
    for name, t in tensors.items():
        arr = np.asarray(t)
        if arr is t and not arr.flags.writeable:
            continue
        if arr.flags.writeable:
            arr = arr.view()
            arr.flags.writeable = False
        if out is None:
            out = dict(tensors)
        out[name] = arr
    return out


class InprocNetwork:
    """The set of in-process mailboxes of one run."""

    def __init__(self, *, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        self._mailboxes: dict[str, Mailbox] = {}
        self._senders: dict[str, set[str]] = {}  # receiver -> who has sent to it
        self._told: dict[str, set[str]] = {}  # a party that left -> who was told it was lost
        self._lock = threading.Lock()

    def endpoint(self, party: str, *, mailbox: Mailbox | None = None) -> InprocEndpoint:
        """A new endpoint for ``party``, receiving into ``mailbox`` (a new one by default;
        the in-process launcher gives actors a mailbox that schedules them on each put). A
        party that left and comes back is announced with PEER_BACK to whom was told it left."""
        with self._lock:
            if party in self._mailboxes and not self._mailboxes[party].closed:
                raise TransportError(f"party {party!r} already has an open endpoint")
            box = mailbox if mailbox is not None else Mailbox(clock=self._clock)
            self._mailboxes[party] = box
            told = [(n, self._mailboxes[n]) for n in sorted(self._told.pop(party, ()))]
        for name, other in told:
            with contextlib.suppress(TransportClosed):
                other.put(Message(kind=PEER_BACK, sender=party, receiver=name))
        return InprocEndpoint(party=party, network=self, mailbox=box)

    def _deliver(self, msg: Message) -> None:
        box = self._mailboxes.get(msg.receiver)
        if box is None:
            raise TransportError(f"no party named {msg.receiver!r} in this run")
        if box.closed:
            raise TransportClosed(f"party {msg.receiver!r} has left")
        self._senders.setdefault(msg.receiver, set()).add(msg.sender)
        tensors = _read_only(msg.tensors)
        box.put(msg if tensors is None else dataclasses.replace(msg, tensors=tensors))

    def _left(self, party: str, contacts: set[str]) -> None:
        """Tell the parties ``party`` exchanged messages with that it is gone (those that
        sent it something too, even if it never read it)."""
        with self._lock:
            contacts = contacts | self._senders.pop(party, set())
            others = [(n, self._mailboxes[n]) for n in contacts if n in self._mailboxes]
            others = [(n, box) for n, box in others if n != party and not box.closed]
            self._told[party] = {n for n, _ in others}
        # Delivered outside the lock: an actor may run (and close) on the put.
        for name, box in others:
            with contextlib.suppress(TransportClosed):
                box.put(Message(kind=PEER_LOST, sender=party, receiver=name))


class InprocEndpoint:
    def __init__(self, *, party: str, network: InprocNetwork, mailbox: Mailbox) -> None:
        self._party = party
        self._network = network
        self._mailbox = mailbox
        self._contacts: set[str] = set()

    @property
    def party(self) -> str:
        return self._party

    @property
    def network(self) -> InprocNetwork:
        """The network this endpoint belongs to (a party that left may join it again)."""
        return self._network

    def send(self, msg: Message) -> None:
        if self._mailbox.closed:
            raise TransportClosed(f"endpoint of {self._party!r} is closed")
        if msg.sender != self._party:
            raise TransportError(f"{self._party!r} cannot send as {msg.sender!r}")
        self._network._deliver(msg)
        self._contacts.add(msg.receiver)

    def recv(self, timeout: float | None = None) -> Message:
        msg = self._mailbox.get(timeout)
        self._contacts.add(msg.sender)
        return msg

    def close(self) -> None:
        if not self._mailbox.closed:
            self._mailbox.close()
            self._network._left(self._party, self._contacts)
