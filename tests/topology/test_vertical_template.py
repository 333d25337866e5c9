"""Golden tests of the vertical template: master hub, members, optional arbiter."""

import pytest

from consortium.errors import ConfigError
from consortium.topology import ChannelDecl, RoleDecl, TopologyDecl, expand


def test_vertical_golden_with_arbiter():
    topo = expand(
        TopologyDecl(
            template="vertical",
            roles=(RoleDecl("arbiter"), RoleDecl("member", 2), RoleDecl("master")),
        )
    )
    assert [(p.name, p.role, p.index, p.rank, p.program) for p in topo.parties] == [
        ("master", "master", 0, 0, "master"),
        ("member-0", "member", 0, 1, "member"),
        ("member-1", "member", 1, 2, "member"),
        ("arbiter", "arbiter", 0, 3, "arbiter"),
    ]
    assert dict(topo.channels) == {
        "master-member": (("master", "member-0"), ("master", "member-1")),
        "arbiter-master": (("arbiter", "master"),),
        "arbiter-member": (("arbiter", "member-0"), ("arbiter", "member-1")),
    }
    assert topo.hub == "master"
    assert topo.neighbours("member-0") == ["master", "arbiter"]  # never another member
    assert topo.neighbours("arbiter") == ["master", "member-0", "member-1"]
    assert topo.parents == {}


def test_vertical_golden_without_arbiter():
    topo = expand(
        TopologyDecl(template="vertical", roles=(RoleDecl("master"), RoleDecl("member", 1)))
    )
    assert topo.names() == ["master", "member"]
    assert dict(topo.channels) == {"master-member": (("master", "member"),)}
    assert topo.hub == "master"


def test_vertical_keeps_declared_programs():
    topo = expand(
        TopologyDecl(
            template="vertical",
            roles=(RoleDecl("master", 1, "custom_master"), RoleDecl("member", 2)),
        )
    )
    assert topo.party("master").program == "custom_master"
    assert topo.party("member-1").program == "member"


@pytest.mark.parametrize(
    ("roles", "channels", "match"),
    [
        ((RoleDecl("master"),), (), "'master' and 'member'"),
        ((RoleDecl("master"), RoleDecl("member"), RoleDecl("trainer")), (), "'arbiter'"),
        ((RoleDecl("master", 2), RoleDecl("member")), (), r"roles\.master\.count"),
        (
            (RoleDecl("master"), RoleDecl("member"), RoleDecl("arbiter", 2)),
            (),
            r"roles\.arbiter\.count",
        ),
        (
            (RoleDecl("master"), RoleDecl("member")),
            (ChannelDecl("x", ("master", "member")),),
            "defines its own channels",
        ),
    ],
)
def test_vertical_rejects(roles, channels, match):
    with pytest.raises(ConfigError, match=match):
        expand(TopologyDecl(template="vertical", roles=roles, channels=channels))
