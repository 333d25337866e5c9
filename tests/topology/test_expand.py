"""Golden tests: expansion is deterministic and exactly as documented."""

import re

import pytest

from consortium.errors import ConfigError
from consortium.topology import ChannelDecl, RoleDecl, TopologyDecl, expand


def test_star_golden():
    topo = expand(
        TopologyDecl(template="star", roles=(RoleDecl("trainer", 3), RoleDecl("aggregator")))
    )
    assert [(p.name, p.role, p.index, p.rank) for p in topo.parties] == [
        ("aggregator", "aggregator", 0, 0),
        ("trainer-0", "trainer", 0, 1),
        ("trainer-1", "trainer", 1, 2),
        ("trainer-2", "trainer", 2, 3),
    ]
    assert dict(topo.channels) == {
        "updates": (
            ("aggregator", "trainer-0"),
            ("aggregator", "trainer-1"),
            ("aggregator", "trainer-2"),
        )
    }
    assert topo.hub == "aggregator"
    assert topo.neighbours("trainer-1") == ["aggregator"]
    assert topo.neighbours("aggregator", role="trainer") == ["trainer-0", "trainer-1", "trainer-2"]


def test_graph_golden_with_same_role_channel():
    topo = expand(
        TopologyDecl(
            template="graph",
            roles=(RoleDecl("coordinator"), RoleDecl("worker", 3)),
            channels=(
                ChannelDecl("control", ("coordinator", "worker")),
                ChannelDecl("gossip", ("worker", "worker")),
            ),
            hub="coordinator",
        )
    )
    assert topo.names() == ["coordinator", "worker-0", "worker-1", "worker-2"]
    assert topo.channels["gossip"] == (
        ("worker-0", "worker-1"),
        ("worker-0", "worker-2"),
        ("worker-1", "worker-2"),
    )
    assert topo.neighbours("worker-1") == ["coordinator", "worker-0", "worker-2"]


def test_expansion_is_deterministic():
    decl = TopologyDecl(template="star", roles=(RoleDecl("aggregator"), RoleDecl("trainer", 50)))
    assert expand(decl) == expand(decl)


@pytest.mark.parametrize(
    ("decl", "match"),
    [
        (
            TopologyDecl(
                template="star", roles=(RoleDecl("aggregator", 2), RoleDecl("trainer", 2))
            ),
            "exactly one aggregator",
        ),
        (
            TopologyDecl(template="star", roles=(RoleDecl("server"), RoleDecl("trainer"))),
            "'aggregator' and 'trainer'",
        ),
        (
            TopologyDecl(template="mesh", roles=(RoleDecl("a"),)),
            # the built-in templates of this layer (protocols may register more)
            r"unknown topology template 'mesh'; choose one of: .*graph, hierarchical, ring, star",
        ),
        (
            TopologyDecl(
                template="graph", roles=(RoleDecl("a"),), channels=(ChannelDecl("c", ("a", "b")),)
            ),
            "unknown role 'b'",
        ),
        (TopologyDecl(template="graph", roles=(RoleDecl("a", 2),), hub="a"), "exactly one party"),
        (TopologyDecl(template="graph", roles=(RoleDecl("a"), RoleDecl("a"))), "declared twice"),
    ],
)
def test_bad_declarations_name_the_problem(decl, match):
    with pytest.raises(ConfigError, match=match):
        expand(decl)


def test_hierarchical_golden_three_levels():
    topo = expand(
        TopologyDecl(
            template="hierarchical",
            roles=(RoleDecl("aggregator"), RoleDecl("region", 2), RoleDecl("trainer", 5)),
        )
    )
    assert [(p.name, p.role, p.program) for p in topo.parties] == [
        ("aggregator", "aggregator", "aggregator"),
        ("region-0", "region", "regional"),
        ("region-1", "region", "regional"),
        ("trainer-0", "trainer", "trainer"),
        ("trainer-1", "trainer", "trainer"),
        ("trainer-2", "trainer", "trainer"),
        ("trainer-3", "trainer", "trainer"),
        ("trainer-4", "trainer", "trainer"),
    ]
    assert dict(topo.channels) == {
        "aggregator-region": (("aggregator", "region-0"), ("aggregator", "region-1")),
        "region-trainer": (
            ("region-0", "trainer-0"),
            ("region-0", "trainer-1"),
            ("region-0", "trainer-2"),
            ("region-1", "trainer-3"),
            ("region-1", "trainer-4"),
        ),
    }
    assert topo.hub == "aggregator"
    assert topo.parent("trainer-3") == "region-1" and topo.parent("aggregator") is None
    assert topo.children("region-0") == ["trainer-0", "trainer-1", "trainer-2"]
    assert topo.children("aggregator") == ["region-0", "region-1"]
    assert topo.neighbours("trainer-4") == ["region-1"]


def test_hierarchical_any_depth_and_declared_programs():
    topo = expand(
        TopologyDecl(
            template="hierarchical",
            roles=(
                RoleDecl("root"),
                RoleDecl("zone", 2),
                RoleDecl("site", 4, program="site_aggregator"),
                RoleDecl("trainer", 8),
            ),
        )
    )
    assert [topo.parent(f"trainer-{i}") for i in range(8)] == [f"site-{i // 2}" for i in range(8)]
    assert [topo.parent(f"site-{i}") for i in range(4)] == ["zone-0", "zone-0", "zone-1", "zone-1"]
    assert topo.party("zone-1").program == "regional"
    assert topo.party("site-0").program == "site_aggregator"


def test_ring_golden():
    topo = expand(
        TopologyDecl(template="ring", roles=(RoleDecl("aggregator"), RoleDecl("trainer", 4)))
    )
    assert topo.channels["ring"] == (
        ("trainer-0", "trainer-1"),
        ("trainer-1", "trainer-2"),
        ("trainer-2", "trainer-3"),
        ("trainer-3", "trainer-0"),
    )
    assert topo.children("aggregator") == [f"trainer-{i}" for i in range(4)]
    assert topo.party("aggregator").program == "ring_aggregator"
    assert topo.neighbours("trainer-0") == ["aggregator", "trainer-1", "trainer-3"]


def test_star_trainers_report_to_the_aggregator():
    topo = expand(
        TopologyDecl(template="star", roles=(RoleDecl("aggregator"), RoleDecl("trainer", 2)))
    )
    assert topo.parents == {"trainer-0": "aggregator", "trainer-1": "aggregator"}


@pytest.mark.parametrize(
    ("decl", "match"),
    [
        (
            TopologyDecl(
                template="hierarchical",
                roles=(RoleDecl("top"), RoleDecl("mid", 3), RoleDecl("trainer", 2)),
            ),
            "topology.roles.trainer.count: 2 parties cannot report to 3 parties of 'mid'",
        ),
        (
            TopologyDecl(template="hierarchical", roles=(RoleDecl("top", 2), RoleDecl("t", 4))),
            "topology.roles.top.count: the root level has one party",
        ),
        (
            TopologyDecl(
                template="graph",
                roles=(RoleDecl("a"), RoleDecl("b", 2)),
                channels=(ChannelDecl("x", ("b", "b"), mode="tree"),),
            ),
            "topology.channels.x: a tree links two different roles",
        ),
        (
            TopologyDecl(
                template="graph",
                roles=(RoleDecl("a"), RoleDecl("b", 2)),
                channels=(ChannelDecl("x", ("a", "b"), mode="ring"),),
            ),
            "topology.channels.x: a ring links the parties of one role",
        ),
        (
            TopologyDecl(
                template="graph",
                roles=(RoleDecl("a"), RoleDecl("c"), RoleDecl("b", 2)),
                channels=(
                    ChannelDecl("x", ("a", "b"), mode="tree"),
                    ChannelDecl("y", ("c", "b"), mode="tree"),
                ),
            ),
            "topology.channels.y: 'b-0' already reports to 'a'",
        ),
    ],
)
def test_bad_trees_and_rings_name_the_problem(decl, match):
    with pytest.raises(ConfigError, match=re.escape(match)):
        expand(decl)
