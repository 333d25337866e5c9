"""Quorum and deadlines on a fake clock: no test here sleeps or depends on timing."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from consortium.clock import FakeClock
from consortium.errors import PartyCrashed, QuorumLost
from consortium.runtime import CRASHED, JOIN, PartyContext, gather, quorum_size
from consortium.topology import RoleDecl, TopologyDecl, expand
from consortium.transport import PEER_BACK, InprocNetwork

TRAINERS = ["trainer-0", "trainer-1", "trainer-2"]


@pytest.fixture
def world() -> tuple[FakeClock, dict[str, PartyContext]]:
    clock = FakeClock()
    topo = expand(
        TopologyDecl(template="star", roles=(RoleDecl("aggregator"), RoleDecl("trainer", 3)))
    )
    net = InprocNetwork(clock=clock)
    ctxs = {
        p.name: PartyContext(
            party=p,
            topology=topo,
            endpoint=net.endpoint(p.name),
            job_id="j",
            seed=1,
            settings=None,
            clock=clock,
        )
        for p in topo.parties
    }
    return clock, ctxs


def run_in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    return thread, box


def gather_replies(
    ctx: PartyContext, quorum: int, accept: Callable[..., str | None] = lambda m: None
):
    return gather(
        ctx,
        expected=TRAINERS,
        kind="fit.reply",
        round=1,
        timeout=10.0,
        quorum=quorum,
        on_reply=accept,
    )


def test_all_reply(world):
    _, ctxs = world
    for t in TRAINERS:
        ctxs[t].send("fit.reply", "aggregator", round=1)
    result = gather_replies(ctxs["aggregator"], quorum=3)
    assert sorted(result.replied) == TRAINERS
    assert result.failures == {}


def test_silent_party_is_a_failure_when_quorum_holds(world):
    clock, ctxs = world
    for t in TRAINERS[:2]:
        ctxs[t].send("fit.reply", "aggregator", round=1)
    thread, box = run_in_thread(lambda: gather_replies(ctxs["aggregator"], quorum=2))
    assert clock.wait_for_waiters(1)
    clock.advance(9.0)  # not yet past the deadline: still waiting
    assert thread.is_alive() or "result" not in box
    clock.advance(2.0)
    thread.join(timeout=10)
    assert not thread.is_alive()
    result = box["result"]
    assert sorted(result.replied) == TRAINERS[:2]
    assert result.failures == {"trainer-2": "no reply within 10 s"}


def test_quorum_lost_names_missing_parties(world):
    clock, ctxs = world
    ctxs["trainer-1"].send("fit.reply", "aggregator", round=1)
    thread, box = run_in_thread(lambda: gather_replies(ctxs["aggregator"], quorum=2))
    assert clock.wait_for_waiters(1)
    clock.advance(10.5)
    thread.join(timeout=10)
    err = box["error"]
    assert isinstance(err, QuorumLost)
    assert err.missing == ("trainer-0", "trainer-2")
    assert "trainer-0" in str(err) and "trainer-2" in str(err) and "quorum is 2" in str(err)


def test_disconnect_fails_fast_without_deadline(world):
    _, ctxs = world
    ctxs["trainer-2"].send("hello", "aggregator")  # makes the two parties contacts
    assert ctxs["aggregator"].recv(0).kind == "hello"
    ctxs["trainer-0"].send("fit.reply", "aggregator", round=1)
    ctxs["trainer-1"].send("fit.reply", "aggregator", round=1)
    ctxs["trainer-2"].endpoint.close()
    result = gather_replies(ctxs["aggregator"], quorum=2)  # returns without the clock moving
    assert result.failures == {"trainer-2": "disconnected"}
    assert result.lost == {"trainer-2"}


def test_rejected_reply_is_recorded(world):
    _, ctxs = world
    for t in TRAINERS:
        ctxs[t].send("fit.reply", "aggregator", round=1)
    result = gather_replies(
        ctxs["aggregator"],
        quorum=2,
        accept=lambda m: "contains NaN" if m.sender == "trainer-1" else None,
    )
    assert result.failures == {"trainer-1": "contains NaN"}
    assert sorted(result.replied) == ["trainer-0", "trainer-2"]


def test_stale_round_replies_are_ignored(world):
    clock, ctxs = world
    ctxs["trainer-0"].send("fit.reply", "aggregator", round=0)  # from an earlier round
    for t in TRAINERS[1:]:
        ctxs[t].send("fit.reply", "aggregator", round=1)
    thread, box = run_in_thread(lambda: gather_replies(ctxs["aggregator"], quorum=2))
    assert clock.wait_for_waiters(1)
    clock.advance(11)
    thread.join(timeout=10)
    assert box["result"].failures == {"trainer-0": "no reply within 10 s"}


def test_crash_notice_fails_at_once(world):
    _, ctxs = world
    ctxs["trainer-1"].send(CRASHED, "aggregator", meta={"reason": "ValueError: boom"})
    with pytest.raises(PartyCrashed, match="trainer-1.*boom"):
        gather_replies(ctxs["aggregator"], quorum=1)


@pytest.mark.parametrize(
    ("fraction", "expected", "need"),
    [(1.0, 10, 10), (0.8, 10, 8), (0.81, 10, 9), (0.5, 3, 2), (0.01, 5, 1), (0.3, 10, 3)],
)
def test_quorum_size(fraction, expected, need):
    assert quorum_size(fraction, expected) == need


def back_again(ctxs: dict[str, PartyContext], name: str) -> PartyContext:
    """``name`` leaves (after talking to the aggregator) and comes back on a new endpoint."""
    old = ctxs[name]
    old.send("hello", "aggregator")
    old.endpoint.close()
    network = old.endpoint.network  # type: ignore[attr-defined]
    return PartyContext(
        party=old.party,
        topology=old.topology,
        endpoint=network.endpoint(name),
        job_id="j",
        seed=1,
        settings=None,
        clock=old.clock,
    )


def test_a_party_lost_and_back_is_asked_again_while_the_quorum_needs_it(world):
    _, ctxs = world
    for t in TRAINERS[:2]:
        ctxs[t].send("fit.reply", "aggregator", round=1)
    again = back_again(ctxs, "trainer-2")
    again.send(JOIN, "aggregator")
    asked: list[str] = []

    def on_back(msg) -> bool:
        asked.append(msg.sender)
        again.send("fit.reply", "aggregator", round=1)  # the answer to the request anew
        return True

    result = gather(
        ctxs["aggregator"],
        expected=TRAINERS,
        kind="fit.reply",
        round=1,
        timeout=10.0,
        quorum=3,
        on_reply=lambda m: None,
        on_back=on_back,
    )
    assert asked == ["trainer-2"]
    assert sorted(result.replied) == TRAINERS
    assert result.failures == {} and result.lost == set()


def test_a_party_that_replied_and_came_back_counts_once(world):
    _, ctxs = world
    ctxs["trainer-2"].send("fit.reply", "aggregator", round=1)
    again = back_again(ctxs, "trainer-2")
    again.send(JOIN, "aggregator")
    again.send("fit.reply", "aggregator", round=1)  # a stray second answer
    for t in TRAINERS[:2]:
        ctxs[t].send("fit.reply", "aggregator", round=1)
    others: list[str] = []
    result = gather(
        ctxs["aggregator"],
        expected=TRAINERS,
        kind="fit.reply",
        round=1,
        timeout=10.0,
        quorum=3,
        on_reply=lambda m: None,
        on_other=lambda m: others.append(m.kind),
        on_back=lambda m: pytest.fail("a party that replied is not asked again"),
    )
    assert result.replied == ["trainer-2", *TRAINERS[:2]]
    assert result.lost == {"trainer-2"} and result.failures == {}
    assert others == ["hello", PEER_BACK, JOIN, "fit.reply"]  # the JOIN is the caller's


def test_a_lost_party_is_not_waited_for_once_the_quorum_holds(world):
    _, ctxs = world
    for t in TRAINERS[:2]:
        ctxs[t].send("fit.reply", "aggregator", round=1)
    ctxs["trainer-2"].send("hello", "aggregator")
    ctxs["trainer-2"].endpoint.close()
    result = gather(  # returns without the clock moving
        ctxs["aggregator"],
        expected=TRAINERS,
        kind="fit.reply",
        round=1,
        timeout=10.0,
        quorum=2,
        on_reply=lambda m: None,
        on_back=lambda m: True,
    )
    assert result.failures == {"trainer-2": "disconnected"}


def test_a_join_gather_takes_a_returning_partys_join_as_its_reply(world):
    _, ctxs = world
    for t in TRAINERS[:2]:
        ctxs[t].send(JOIN, "aggregator")
    again = back_again(ctxs, "trainer-2")  # lost before joining
    again.send(JOIN, "aggregator")
    result = gather(
        ctxs["aggregator"],
        expected=TRAINERS,
        kind=JOIN,
        round=0,
        timeout=10.0,
        quorum=3,
        on_reply=lambda m: None,
        on_back=lambda m: True,
    )
    assert sorted(result.replied) == TRAINERS and result.failures == {}
