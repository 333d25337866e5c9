"""The in-process actor pool: where and in what order actors' work runs.

Events, not sleeps: a test waits for an event with a generous timeout that only guards
against a hang; nothing here depends on how fast the machine is.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

import pytest

from consortium.errors import TransportClosed, TransportTimeout
from consortium.runtime import PartyContext
from consortium.runtime.host import ActorPool, ActorSlot, serve_actor
from consortium.topology import RoleDecl, TopologyDecl, expand
from consortium.transport import InprocNetwork
from consortium.wire import Message

HANG = 30.0  # seconds; only ever reached when the pool is broken


class Recorder:
    """An actor that records what it handled, on which thread, and runs ``react``."""

    def __init__(self, log: list[tuple[str, str, str]], react: Callable[..., None] | None = None):
        self.log, self.react = log, react

    def start(self, ctx: PartyContext) -> None:
        self.log.append((ctx.name, "start", threading.current_thread().name))

    def handle(self, ctx: PartyContext, msg: Message) -> bool:
        self.log.append((ctx.name, msg.kind, threading.current_thread().name))
        if self.react is not None:
            self.react(ctx, msg)
        return msg.kind != "stop"


@pytest.fixture
def crashes() -> dict[str, str]:
    return {}


def build(workers: int, crashes: dict[str, str], actors: dict[str, Recorder], **kw):
    """A pool hosting ``actors`` (a star: ``hub`` plus the actors), and the hub's endpoint."""
    decl = TopologyDecl(
        template="star",
        roles=(RoleDecl(name="aggregator", count=1), RoleDecl(name="trainer", count=len(actors))),
    )
    topology = expand(decl)
    network = InprocNetwork()
    pool = ActorPool(workers=workers, on_crash=lambda p, e: crashes.__setitem__(p, str(e)), **kw)
    hub = network.endpoint(topology.hub)
    slots: list[tuple[ActorSlot, PartyContext, Recorder]] = []
    for party, actor in zip(topology.with_role("trainer"), actors.values(), strict=True):
        slot = pool.slot()
        ctx = PartyContext(
            party=topology.party(party),
            topology=topology,
            endpoint=network.endpoint(party, mailbox=slot.mailbox),
            job_id="j",
            seed=0,
            settings=None,
        )
        slots.append((slot, ctx, actor))
    for slot, ctx, actor in slots:
        slot.bind(ctx, actor)
    return pool, hub, topology


def send(hub, to: str, kind: str, seq: int = 1) -> None:
    hub.send(Message(kind=kind, sender=hub.party, receiver=to, job="j", seq=seq))


def test_one_worker_handles_a_message_before_the_send_returns(crashes):
    log: list[tuple[str, str, str]] = []
    pool, hub, topo = build(1, crashes, {"a": Recorder(log)})
    me = threading.current_thread().name
    trainer = topo.with_role("trainer")[0]
    assert log == [(trainer, "start", me)]  # started as it was bound
    send(hub, trainer, "fit")
    assert log[-1] == (trainer, "fit", me)
    send(hub, trainer, "stop", seq=2)
    assert pool.wait_all_done(HANG)
    pool.close()
    assert crashes == {}


def test_one_worker_queues_a_handlers_sends_until_it_returns(crashes):
    """A handler that sends to another actor does not run it inside itself: the message
    waits until the handler returns, then runs on the same thread (no recursion)."""
    log: list[tuple[str, str, str]] = []

    def pass_on(ctx: PartyContext, msg: Message) -> None:
        if msg.kind == "fit":
            nxt = ctx.topology.with_role("trainer")[1]
            ctx.send("relay", nxt)
            log.append((ctx.name, "fit-done", threading.current_thread().name))

    pool, hub, topo = build(1, crashes, {"a": Recorder(log, pass_on), "b": Recorder(log)})
    first, second = topo.with_role("trainer")
    send(hub, first, "fit")
    me = threading.current_thread().name
    assert log[2:] == [(first, "fit", me), (first, "fit-done", me), (second, "relay", me)]
    pool.close()


def test_more_workers_run_handlers_on_pool_threads_after_their_init(crashes):
    log: list[tuple[str, str, str]] = []
    inits: list[str] = []
    done = threading.Event()

    def finished(ctx: PartyContext, msg: Message) -> None:
        done.set()

    pool, hub, topo = build(
        2,
        crashes,
        {"a": Recorder(log, finished)},
        thread_init=lambda: inits.append(threading.current_thread().name),
    )
    trainer = topo.with_role("trainer")[0]
    send(hub, trainer, "fit")
    assert done.wait(HANG)
    threads = {thread for _, _, thread in log}
    assert threads <= set(inits)
    assert all(name.startswith("party-pool") for name in threads)
    send(hub, trainer, "stop", seq=2)
    assert pool.wait_all_done(HANG)
    pool.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_crashing_actor_is_reported_to_the_hub_and_the_pool(crashes, workers):
    def boom(ctx: PartyContext, msg: Message) -> None:
        raise ValueError("bad rows")

    pool, hub, topo = build(workers, crashes, {"a": Recorder([], boom), "b": Recorder([])})
    first, second = topo.with_role("trainer")
    send(hub, first, "fit")
    report = hub.recv(timeout=HANG)
    assert report.kind == "party.crashed" and report.sender == first
    assert "ValueError: bad rows" in str(report.meta["reason"])
    send(hub, second, "stop", seq=2)
    assert pool.wait_all_done(HANG)
    assert crashes == {first: "bad rows"}
    pool.close()


def test_an_interrupt_reaches_the_sender_and_the_pool_keeps_working(crashes):
    log: list[tuple[str, str, str]] = []

    def interrupt(ctx: PartyContext, msg: Message) -> None:
        if msg.kind == "fit":
            raise KeyboardInterrupt

    pool, hub, topo = build(1, crashes, {"a": Recorder(log, interrupt)})
    trainer = topo.with_role("trainer")[0]
    with pytest.raises(KeyboardInterrupt):
        send(hub, trainer, "fit")
    assert crashes == {}
    send(hub, topo.with_role("trainer")[0], "again", seq=2)
    assert log[-1][:2] == (trainer, "again")
    pool.close()


def kinds_waiting(endpoint) -> list[str]:
    kinds = []
    with contextlib.suppress(TransportTimeout):
        while True:
            kinds.append(endpoint.recv(timeout=0.2).kind)
    return kinds


def _hub_has_left(ctx: PartyContext, msg: Message) -> None:
    raise TransportClosed("the hub has left")  # as a reply sent after the run ended


def test_an_actor_whose_reply_finds_the_run_over_stops_without_a_crash(crashes):
    pool, hub, topo = build(1, crashes, {"a": Recorder([], _hub_has_left)})
    send(hub, topo.with_role("trainer")[0], "fit")
    assert pool.wait_all_done(HANG)
    assert crashes == {}
    assert "party.crashed" not in kinds_waiting(hub)
    pool.close()


def test_a_served_actor_whose_reply_finds_the_run_over_returns_without_a_crash():
    roles = (RoleDecl(name="aggregator", count=1), RoleDecl(name="trainer", count=1))
    topology = expand(TopologyDecl(template="star", roles=roles))
    network = InprocNetwork()
    hub = network.endpoint(topology.hub)
    party = topology.with_role("trainer")[0]
    ctx = PartyContext(
        party=topology.party(party),
        topology=topology,
        endpoint=network.endpoint(party),
        job_id="j",
        seed=0,
        settings=None,
    )
    send(hub, party, "fit")
    serve_actor(ctx, Recorder([], _hub_has_left))  # returns: does not raise
    assert "party.crashed" not in kinds_waiting(hub)


def test_an_interrupt_stops_the_work_through_stop_and_is_raised_again():
    import os
    import signal

    from consortium.runtime.host import run_interruptibly

    released = threading.Event()
    seen: list[str] = []

    def work() -> str:
        threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT)).start()
        assert released.wait(HANG)
        return "ended by its own path"

    def stop(reason: str) -> None:
        seen.append(reason)
        released.set()

    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        run_interruptibly(work, stop)
    assert seen == ["interrupted"]
    assert signal.getsignal(signal.SIGINT) is handler  # put back after the stop


def test_without_an_interrupt_the_works_result_or_error_comes_back():
    from consortium.runtime.host import run_interruptibly

    assert run_interruptibly(lambda: 7, lambda reason: None) == 7
    with pytest.raises(ValueError, match="bad rows"):
        run_interruptibly(lambda: (_ for _ in ()).throw(ValueError("bad rows")), lambda r: None)
