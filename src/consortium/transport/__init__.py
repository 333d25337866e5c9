"""Transports move messages between parties: ``inproc`` in one process, ``grpc`` across."""

from __future__ import annotations

from typing import TYPE_CHECKING

from consortium.transport.base import PEER_LOST, Endpoint, Mailbox
from consortium.transport.inproc import InprocEndpoint, InprocNetwork

if TYPE_CHECKING:
    from consortium.transport._grpc import GrpcHub, GrpcSpoke

__all__ = [
    "PEER_LOST",
    "Endpoint",
    "GrpcHub",
    "GrpcSpoke",
    "InprocEndpoint",
    "InprocNetwork",
    "Mailbox",
]

_LAZY = frozenset(["GrpcHub", "GrpcSpoke"])  # importing grpc costs ~0.2 s: only on first use


def __getattr__(name: str) -> object:
    if name in _LAZY:
        from consortium.transport import _grpc

        return getattr(_grpc, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
