"""Topologies: roles, channels between roles, and their expansion into concrete parties.

A job declares roles (with a party count each) and channels between roles; a template such
as ``star`` fills them in. Expansion is deterministic: the same declaration always gives the
same party names in the same order, which seeding and golden tests rely on.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from consortium.errors import ConfigError
from consortium.registry import Registry

__all__ = [
    "TEMPLATES",
    "ChannelDecl",
    "Party",
    "RoleDecl",
    "Topology",
    "TopologyDecl",
    "expand",
]


@dataclass(frozen=True, slots=True)
class RoleDecl:
    name: str
    count: int = 1
    program: str | None = None  # the protocol's program the role runs; default: its name


ChannelMode = Literal["all", "tree", "ring"]


@dataclass(frozen=True, slots=True)
class ChannelDecl:
    """A named link between two roles.

    ``all``: every party of one role talks to every party of the other (every pair, when
    both ends name the same role). ``tree``: the parties of the second role are split into
    contiguous blocks, one per party of the first role, which becomes their *parent*.
    ``ring``: the parties of one role in a cycle, each linked to the next.
    """

    name: str
    between: tuple[str, str]
    mode: ChannelMode = "all"


@dataclass(frozen=True, slots=True)
class TopologyDecl:
    template: str
    roles: tuple[RoleDecl, ...]
    channels: tuple[ChannelDecl, ...] = ()
    hub: str | None = None


@dataclass(frozen=True, slots=True)
class Party:
    name: str
    role: str
    index: int  # position within its role, from 0
    rank: int  # position among all parties, from 0; used to derive per-party seeds
    program: str  # the program it runs (its role's name unless the job says otherwise)


@dataclass(frozen=True, slots=True)
class Topology:
    """The concrete graph of one run."""

    parties: tuple[Party, ...]
    channels: Mapping[str, tuple[tuple[str, str], ...]]
    hub: str
    parents: Mapping[str, str] = field(default_factory=dict)  # from ``tree`` channels
    _by_name: Mapping[str, Party] = field(init=False, repr=False, compare=False)
    _neighbours: Mapping[str, frozenset[str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {p.name: p for p in self.parties})
        neighbours: dict[str, set[str]] = {p.name: set() for p in self.parties}
        for links in self.channels.values():
            for a, b in links:
                neighbours[a].add(b)
                neighbours[b].add(a)
        object.__setattr__(self, "_neighbours", {k: frozenset(v) for k, v in neighbours.items()})

    def party(self, name: str) -> Party:
        try:
            return self._by_name[name]
        except KeyError:
            raise ConfigError(
                f"no party {name!r} in this job; parties are: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        return [p.name for p in self.parties]

    def with_role(self, role: str) -> list[str]:
        return [p.name for p in self.parties if p.role == role]

    def neighbours(self, name: str, *, role: str | None = None) -> list[str]:
        """Parties linked to ``name`` by a channel, in topology order."""
        linked = self._neighbours[name]
        return [p.name for p in self.parties if p.name in linked and role in (None, p.role)]

    def parent(self, name: str) -> str | None:
        """The party ``name`` reports to along a ``tree`` channel (None at the root)."""
        return self.parents.get(name)

    def children(self, name: str) -> list[str]:
        """The parties that report to ``name``, in topology order."""
        return [p.name for p in self.parties if self.parents.get(p.name) == name]


TEMPLATES: Registry[Callable[[TopologyDecl], TopologyDecl]] = Registry("topology template")


@TEMPLATES.decorator("star")
def _star(decl: TopologyDecl) -> TopologyDecl:
    """One aggregator, N trainers, a channel between the aggregator and each trainer."""
    roles = {r.name: r for r in decl.roles}
    if set(roles) != {"aggregator", "trainer"}:
        raise ConfigError(
            "topology.roles: the star template takes exactly the roles 'aggregator' and "
            f"'trainer', got {sorted(roles)}"
        )
    if roles["aggregator"].count != 1:
        raise ConfigError("topology.roles.aggregator.count: a star has exactly one aggregator")
    if decl.channels:
        raise ConfigError("topology.channels: the star template defines its own channels")
    return TopologyDecl(
        template="graph",
        roles=(roles["aggregator"], roles["trainer"]),
        channels=(ChannelDecl(name="updates", between=("aggregator", "trainer"), mode="tree"),),
        hub="aggregator",
    )


@TEMPLATES.decorator("hierarchical")
def _hierarchical(decl: TopologyDecl) -> TopologyDecl:
    """Levels in the order the roles are declared: the first role is the single root
    aggregator, the last the trainers, any roles between are intermediate aggregators
    (program ``regional`` unless declared). Each level's parties are split into contiguous
    blocks, one block per party of the level above."""
    if len(decl.roles) < 2:
        raise ConfigError("topology.roles: a hierarchy needs at least two levels")
    if decl.roles[0].count != 1:
        raise ConfigError(
            f"topology.roles.{decl.roles[0].name}.count: the root level has one party"
        )
    if decl.channels:
        raise ConfigError("topology.channels: the hierarchical template defines its own channels")
    middle = decl.roles[1:-1]
    roles = (
        decl.roles[0],
        *(RoleDecl(r.name, r.count, r.program or "regional") for r in middle),
        decl.roles[-1],
    )
    channels = tuple(
        ChannelDecl(
            name=f"{upper.name}-{lower.name}", between=(upper.name, lower.name), mode="tree"
        )
        for upper, lower in itertools.pairwise(roles)
    )
    return TopologyDecl(template="graph", roles=roles, channels=channels, hub=roles[0].name)


@TEMPLATES.decorator("ring")
def _ring(decl: TopologyDecl) -> TopologyDecl:
    """An aggregator and N trainers in a ring: the aggregator starts each round with one
    trainer, each trainer passes the model to the next, the last gives it back."""
    star = _star(decl)
    aggregator, trainer = star.roles
    return TopologyDecl(
        template="graph",
        roles=(RoleDecl(aggregator.name, 1, aggregator.program or "ring_aggregator"), trainer),
        channels=(
            *star.channels,
            ChannelDecl(name="ring", between=("trainer", "trainer"), mode="ring"),
        ),
        hub=star.hub,
    )


@TEMPLATES.decorator("vertical")
def _vertical(decl: TopologyDecl) -> TopologyDecl:
    """Vertical FL: one master (labels, maybe features), members (features) linked to the
    master, and optionally one arbiter (key holder) linked to everyone. The master is the hub;
    members are not linked to each other."""
    roles = {r.name: r for r in decl.roles}
    if not {"master", "member"} <= set(roles) or not set(roles) <= {"master", "member", "arbiter"}:
        raise ConfigError(
            "topology.roles: the vertical template takes the roles 'master' and 'member' and "
            f"optionally 'arbiter', got {sorted(roles)}"
        )
    for single in ("master", "arbiter"):
        if single in roles and roles[single].count != 1:
            raise ConfigError(f"topology.roles.{single}.count: a vertical job has one {single}")
    if decl.channels:
        raise ConfigError("topology.channels: the vertical template defines its own channels")
    channels = [ChannelDecl(name="master-member", between=("master", "member"))]
    ordered = [roles["master"], roles["member"]]
    if "arbiter" in roles:
        ordered.append(roles["arbiter"])
        channels += [
            ChannelDecl(name="arbiter-master", between=("arbiter", "master")),
            ChannelDecl(name="arbiter-member", between=("arbiter", "member")),
        ]
    return TopologyDecl(
        template="graph", roles=tuple(ordered), channels=tuple(channels), hub="master"
    )


@TEMPLATES.decorator("graph")
def _graph(decl: TopologyDecl) -> TopologyDecl:
    """Free-form: the job lists roles and channels itself."""
    return decl


def expand(decl: TopologyDecl) -> Topology:
    """Turn a declaration into concrete parties and links, deterministically."""
    decl = TEMPLATES.get(decl.template)(decl)
    parties: list[Party] = []
    by_role: dict[str, list[str]] = {}
    for role in decl.roles:
        if role.name in by_role:
            raise ConfigError(f"topology.roles: role {role.name!r} is declared twice")
        if role.count < 1:
            raise ConfigError(f"topology.roles.{role.name}.count must be at least 1")
        names = [f"{role.name}-{i}" for i in range(role.count)] if role.count > 1 else [role.name]
        by_role[role.name] = names
        program = role.program or role.name
        for i, name in enumerate(names):
            parties.append(
                Party(name=name, role=role.name, index=i, rank=len(parties), program=program)
            )
    channels: dict[str, tuple[tuple[str, str], ...]] = {}
    parents: dict[str, str] = {}
    for ch in decl.channels:
        if ch.name in channels:
            raise ConfigError(f"topology.channels: channel {ch.name!r} is declared twice")
        for end in ch.between:
            if end not in by_role:
                raise ConfigError(
                    f"topology.channels.{ch.name}: unknown role {end!r}; roles are: "
                    f"{', '.join(by_role)}"
                )
        upper, lower = by_role[ch.between[0]], by_role[ch.between[1]]
        channels[ch.name] = _CHANNEL_MODES[ch.mode](ch, upper, lower)
        if ch.mode == "tree":
            for a, b in channels[ch.name]:
                if b in parents:
                    raise ConfigError(
                        f"topology.channels.{ch.name}: {b!r} already reports to {parents[b]!r}"
                    )
                parents[b] = a
    hub = decl.hub or decl.roles[0].name
    if hub not in by_role or len(by_role[hub]) != 1:
        raise ConfigError(f"topology.hub: {hub!r} must name a role with exactly one party")
    return Topology(parties=tuple(parties), channels=channels, hub=by_role[hub][0], parents=parents)


Links = tuple[tuple[str, str], ...]


def _all_links(ch: ChannelDecl, a: Sequence[str], b: Sequence[str]) -> Links:
    same = ch.between[0] == ch.between[1]  # every pair of one role, each pair once
    return tuple(itertools.combinations(a, 2) if same else itertools.product(a, b))


def _tree_links(ch: ChannelDecl, upper: Sequence[str], lower: Sequence[str]) -> Links:
    if ch.between[0] == ch.between[1]:
        raise ConfigError(f"topology.channels.{ch.name}: a tree links two different roles")
    if len(lower) < len(upper):
        raise ConfigError(
            f"topology.roles.{ch.between[1]}.count: {len(lower)} parties cannot report to "
            f"{len(upper)} parties of {ch.between[0]!r} (channel {ch.name!r}); each needs at "
            "least one"
        )
    # Block j of the lower role goes to upper[j]; block sizes differ by at most one.
    return tuple((upper[i * len(upper) // len(lower)], child) for i, child in enumerate(lower))


def _ring_links(ch: ChannelDecl, a: Sequence[str], b: Sequence[str]) -> Links:
    if ch.between[0] != ch.between[1]:
        raise ConfigError(f"topology.channels.{ch.name}: a ring links the parties of one role")
    back = a[:1] if len(a) > 2 else []  # the link that closes the cycle; two parties have one
    return tuple(itertools.pairwise([*a, *back]))


_CHANNEL_MODES: dict[str, Callable[[ChannelDecl, Sequence[str], Sequence[str]], Links]] = {
    "all": _all_links,
    "tree": _tree_links,
    "ring": _ring_links,
}
