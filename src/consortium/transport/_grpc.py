"""The gRPC transport: hub and spoke over one bidirectional stream per spoke.

The hosting party (the aggregator, as the launcher arranges it) runs a :class:`GrpcHub`;
every other party dials it with a :class:`GrpcSpoke`. Messages between two spokes are
relayed by the hub. Messages move as frames of at most ``chunk_bytes`` (see
:mod:`consortium.transport.grpc_framing`), so a model of any size moves over the same path.

This module imports ``grpc``; :mod:`consortium.transport` loads it only when a gRPC name is
first used, so in-process runs never pay for it.
"""

from consortium.transport.grpc_hub import GrpcHub
from consortium.transport.grpc_spoke import GrpcSpoke

__all__ = ["GrpcHub", "GrpcSpoke"]
