"""The in-process actor pool: where work runs while its governor has the helpers on or off.

Events, not sleeps: a test waits for an event with a generous timeout that only guards
against a hang; nothing here depends on how fast the machine is.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from consortium.clock import FakeClock
from consortium.runtime.governor import Governor
from consortium.runtime.host import ActorPool

HANG = 30.0  # seconds; only ever reached when the pool is broken


def crash(party: str, exc: BaseException) -> None:
    raise AssertionError(f"{party}: {exc}")


def off_governor() -> Governor:
    """A governor that has decided to keep the helpers off (and never measures)."""
    gov = Governor()
    gov.helpers = False
    return gov


@pytest.fixture
def pools():
    made: list[ActorPool] = []

    def make(**kw) -> ActorPool:
        made.append(ActorPool(on_crash=crash, **kw))
        return made[-1]

    yield make
    for pool in made:
        pool.close()


def recorder() -> tuple[Callable[[], None], list[str], threading.Event]:
    ran: list[str] = []
    done = threading.Event()

    def task() -> None:
        ran.append(threading.current_thread().name)
        done.set()

    return task, ran, done


def test_one_worker_or_a_fixed_pool_has_no_governor(pools):
    assert pools(workers=1).governor is None
    assert pools(workers=2, adaptive=False).governor is None
    assert isinstance(pools(workers=2).governor, Governor)


def test_helpers_on_take_queued_work(pools):
    pool = pools(workers=2)
    task, ran, done = recorder()
    pool.submit(task)
    assert done.wait(HANG)
    assert ran == ["party-pool-0"]


def test_helpers_off_leave_queued_work_to_the_drivers(pools):
    pool = pools(workers=3, governor=off_governor())
    task, ran, _ = recorder()
    pool.submit(task)
    assert pool.run_one()
    assert ran == [threading.current_thread().name]
    assert not pool.run_one()


def test_a_helper_runs_the_work_its_task_queued_while_helpers_are_off(pools):
    """A driver asleep on its mailbox never sees work queued by a helper's task, so the
    helper must run it, or it would wait until the run's deadline."""
    gov = Governor()
    pool = pools(workers=2, governor=gov)
    follow_up, ran, done = recorder()

    def first() -> None:
        gov.helpers = False  # as if the governor decided while this task ran
        pool.submit(follow_up)

    pool.submit(first)
    assert done.wait(HANG)  # this thread never runs queued work
    assert ran == ["party-pool-0"]


def test_work_a_helper_queued_stays_the_helpers_when_they_turn_off(pools):
    """Queued while the helpers were on, and the governor turns them off before any helper
    comes back for it: a helper still runs it (the drivers may all be asleep)."""
    gov = Governor()
    pool = pools(workers=2, governor=gov)
    follow_up, ran, done = recorder()

    def first() -> None:
        pool.submit(follow_up)  # helpers on: no helper is free, so it waits in the queue
        gov.helpers = False  # as if this task's completion ended a window

    pool.submit(first)
    assert done.wait(HANG)
    assert ran == ["party-pool-0"]


class _TurnsOn(Governor):
    """Off until the first task completes, then on."""

    def __init__(self) -> None:
        super().__init__()
        self.helpers = False

    def completed(self) -> bool:
        was, self.helpers = self.helpers, True
        return not was


def test_helpers_turned_back_on_wake_and_take_queued_work(pools):
    pool = pools(workers=2, governor=_TurnsOn())
    first, first_ran, _ = recorder()
    second, second_ran, second_done = recorder()
    pool.submit(first)
    pool.submit(second)
    assert pool.run_one()  # runs the first here; its completion turns the helpers on
    assert first_ran == [threading.current_thread().name]
    assert second_done.wait(HANG)  # this thread runs nothing more
    assert second_ran == ["party-pool-0"]


def test_waiting_for_the_end_turns_the_helpers_back_on(pools):
    pool = pools(workers=2, governor=off_governor())
    assert pool.wait_all_done(timeout=HANG)
    task, ran, done = recorder()
    pool.submit(task)
    assert done.wait(HANG)
    assert ran == ["party-pool-0"]


def test_the_pool_reports_busy_spells_and_tasks_to_its_governor(pools):
    """Rounds of tasks that cost 3 s each with the helpers on and 1 s with them off (on a
    fake clock): the pool's reports let the governor find that off is cheaper."""
    clock = FakeClock()
    gov = Governor(window_tasks=4, window_s=0.0, pairs=1, now=clock.now)
    pool = pools(workers=2, governor=gov)
    cond = threading.Condition()
    finished = [0]

    def task() -> None:
        clock.advance(3.0 if gov.helpers else 1.0)
        with cond:
            finished[0] += 1
            cond.notify()

    for _ in range(6):  # rounds of four tasks, the driver lending a hand as a hub does
        finished[0] = 0
        for _ in range(4):
            pool.submit(task)
        while True:
            if pool.run_one():
                continue
            with cond:
                if finished[0] == 4 or not cond.wait_for(lambda: finished[0] == 4, HANG):
                    break
        assert finished[0] == 4
    assert gov.decisions and gov.decisions[0][2] is False
    cost_on, cost_off, _ = gov.decisions[0]
    assert cost_off == pytest.approx(1.0) and cost_on > cost_off


def test_every_helper_runs_the_thread_init_first(pools):
    started: list[str] = []
    lock = threading.Lock()
    ready = threading.Barrier(3)

    def init() -> None:
        with lock:
            started.append(threading.current_thread().name)
        ready.wait(HANG)

    pools(workers=3, thread_init=init)
    ready.wait(HANG)
    assert sorted(started) == ["party-pool-0", "party-pool-1"]
