"""Transports move messages between parties: ``inproc`` in one process, ``grpc`` across (the
hosting party's :class:`GrpcHub` relays between the :class:`GrpcSpoke` endpoints that dial it).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from consortium.transport.base import PEER_BACK, PEER_LOST, Endpoint, Mailbox
from consortium.transport.inproc import InprocEndpoint, InprocNetwork

if TYPE_CHECKING:
    from consortium.transport.grpc_hub import GrpcHub
    from consortium.transport.grpc_spoke import GrpcSpoke

__all__ = [
    "PEER_BACK",
    "PEER_LOST",
    "Endpoint",
    "GrpcHub",
    "GrpcSpoke",
    "InprocEndpoint",
    "InprocNetwork",
    "Mailbox",
]

# Importing grpc costs ~0.2 s: the gRPC modules load on first use, so in-process runs never pay.
_LAZY = {"GrpcHub": "grpc_hub", "GrpcSpoke": "grpc_spoke"}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
