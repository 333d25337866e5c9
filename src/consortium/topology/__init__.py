"""Topologies: roles, channels and their deterministic expansion into parties."""

from consortium.topology.graph import (
    TEMPLATES,
    ChannelDecl,
    Party,
    RoleDecl,
    Topology,
    TopologyDecl,
    expand,
)

__all__ = [
    "TEMPLATES",
    "ChannelDecl",
    "Party",
    "RoleDecl",
    "Topology",
    "TopologyDecl",
    "expand",
]
