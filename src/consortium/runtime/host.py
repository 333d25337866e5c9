"""Hosting programs: a thread per driver, and actors either on their own thread
(:func:`serve_actor`, one party per process) or many on a shared pool (:class:`ActorPool`,
the in-process launcher, so a thousand simulated trainers cost a thousand small objects,
not a thousand threads).

A program that raises is a crash: the party tells the hub (:data:`CRASHED`, with the
reason) so the driver fails the run naming it, and the launcher is told as well.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections import deque
from collections.abc import Callable

from consortium.errors import ConsortiumError, TransportClosed
from consortium.runtime.context import PartyContext
from consortium.runtime.governor import Governor
from consortium.runtime.program import CRASHED, Actor, Driver, Outcome
from consortium.transport import Mailbox

__all__ = ["ActorPool", "ActorSlot", "report_crash", "serve_actor", "serve_driver"]

log = logging.getLogger(__name__)

CrashCallback = Callable[[str, BaseException], None]


def report_crash(ctx: PartyContext, exc: BaseException) -> None:
    """Tell the hub that this party's program failed (best effort)."""
    reason = f"{type(exc).__name__}: {exc}"
    log.error(
        "party %s crashed: %s\n%s", ctx.name, reason, "".join(traceback.format_exception(exc))
    )
    if ctx.topology.hub != ctx.name:
        try:
            ctx.send(CRASHED, ctx.topology.hub, meta={"reason": reason[:2000]})
        except ConsortiumError:
            log.warning("party %s could not report its crash to the hub", ctx.name)


def serve_actor(ctx: PartyContext, actor: Actor) -> None:
    """Run an actor on the calling thread until it is done or its endpoint closes."""
    try:
        actor.start(ctx)
        while True:
            try:
                msg = ctx.recv()
            except TransportClosed:
                return
            if not actor.handle(ctx, msg):
                return
    except BaseException as exc:
        report_crash(ctx, exc)
        raise


def serve_driver(ctx: PartyContext, driver: Driver) -> Outcome:
    """Run a driver that is not the hub (e.g. an intermediate aggregator) on this thread."""
    try:
        return driver.run(ctx)
    except BaseException as exc:
        report_crash(ctx, exc)
        raise


class ActorSlot:
    """One actor's place in the pool: its messages are handled one at a time, in order."""

    def __init__(self, *, pool: ActorPool) -> None:
        self._pool = pool
        self._lock = threading.Lock()
        self._scheduled = False
        self._done = False
        self._ctx: PartyContext | None = None
        self._actor: Actor | None = None
        self._mailbox: Mailbox | None = None

    def notify(self) -> None:
        """Mailbox hook: a message arrived; make sure a drain is scheduled."""
        with self._lock:
            if self._scheduled or self._done or self._ctx is None:
                return
            self._scheduled = True
        self._pool.submit(self._drain)

    def bind(self, ctx: PartyContext, actor: Actor, mailbox: Mailbox) -> None:
        with self._lock:
            self._ctx, self._actor, self._mailbox = ctx, actor, mailbox
            self._scheduled = True
        self._pool.party_started()
        self._pool.submit(self._start)

    def _start(self) -> None:
        assert self._ctx is not None and self._actor is not None
        try:
            self._actor.start(self._ctx)
        except BaseException as exc:
            self._crash(exc)
            return
        self._drain()

    def _drain(self) -> None:
        ctx, actor, mailbox = self._ctx, self._actor, self._mailbox
        assert ctx is not None and actor is not None and mailbox is not None
        while True:
            msg = mailbox.get_nowait()
            if msg is None:
                with self._lock:
                    if len(mailbox) == 0:
                        self._scheduled = False
                        return
                continue
            try:
                more = actor.handle(ctx, msg)
            except TransportClosed as exc:
                # A peer has left (or this endpoint closed): the run is over, or the peer's
                # failure is reported by the peer and counted by the hub. Nothing is left to
                # do here and this party did nothing wrong, so it stops without a crash
                # (trainers finishing in-flight work at the end of an asynchronous run).
                log.info("party %s stops: %s", ctx.name, exc)
                self._finish()
                return
            except BaseException as exc:
                self._crash(exc)
                return
            if not more:
                self._finish()
                return

    def _finish(self) -> None:
        with self._lock:
            self._done = True
        assert self._ctx is not None
        self._ctx.endpoint.close()
        self._pool.party_done()

    def _crash(self, exc: BaseException) -> None:
        """The actor raised: report the crash and stop it."""
        assert self._ctx is not None
        report_crash(self._ctx, exc)
        self._pool.crashed(self._ctx.name, exc)
        self._finish()


class ActorPool:
    """Runs many actors on ``workers`` threads: ``workers - 1`` helper threads plus the
    threads that wait for results (the drivers), which run queued work instead of blocking
    (:meth:`run_one` is their mailboxes' idle hook). With one worker everything runs on the
    drivers' threads: no thread hand-offs, no lock convoys, and a fixed order of events.

    With more, a :class:`~consortium.runtime.governor.Governor` measures whether the helpers
    make the work faster and turns them off while they do not (work that holds the
    interpreter lock runs slower on two threads than on one). Off means that helpers leave
    the work the drivers queue to the drivers. Work queued by a task running on a helper
    stays the helpers' in either state: a driver asleep on its mailbox would never see it.
    A driver queues work and then waits for the answers, running queued work while it
    waits; a driver thread that ends runs what is queued before it goes. So no work waits
    for a thread that will not come.

    Work is event-driven: helper threads sleep on a condition until work is queued for them.
    """

    def __init__(
        self,
        *,
        workers: int,
        on_crash: CrashCallback,
        adaptive: bool = True,
        governor: Governor | None = None,
        thread_init: Callable[[], None] | None = None,
    ) -> None:
        """``adaptive=False`` keeps every helper on; ``governor`` replaces the default one
        (tests give one with a fake clock); ``thread_init`` runs first on every thread the
        pool starts (helpers and drivers), e.g. to apply per-thread limits."""
        self._on_crash = on_crash
        self._active = 0
        self._cond = threading.Condition()
        self._tasks: deque[Callable[[], None]] = deque()  # queued by drivers and the like
        self._from_helpers: deque[Callable[[], None]] = deque()  # queued by helpers' tasks
        self._work = threading.Condition()
        self._stopping = False
        self._thread_init = thread_init
        helpers = max(0, workers - 1)
        self._governor = (governor or Governor()) if helpers and adaptive else None
        self._unleashed = False  # the run is ending: every helper takes every task
        self._pending = 0  # tasks queued or running, counted while a governor decides
        self._local = threading.local()  # .helper: True on this pool's helper threads
        self._threads = [
            threading.Thread(target=self._serve, name=f"party-pool-{i}", daemon=True)
            for i in range(helpers)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def governor(self) -> Governor | None:
        return self._governor

    def slot(self) -> ActorSlot:
        return ActorSlot(pool=self)

    def start_driver(self, ctx: PartyContext, driver: Driver) -> threading.Thread:
        """Run a non-hub driver on a thread of its own; while it waits for messages, its
        mailbox's idle hook should be :meth:`run_one`, so it lends a hand with queued work."""
        self.party_started()

        def host() -> None:
            try:
                self._init_thread()
                serve_driver(ctx, driver)
            except BaseException as exc:
                self.crashed(ctx.name, exc)
            finally:
                ctx.endpoint.close()  # tells its peers, which queues work for them
                while self.run_one():
                    pass
                self.party_done()

        thread = threading.Thread(target=host, name=f"driver-{ctx.name}", daemon=True)
        thread.start()
        return thread

    def party_started(self) -> None:
        with self._cond:
            self._active += 1

    def submit(self, fn: Callable[[], None]) -> None:
        with self._work:
            helping = self._count_in()
            on_helper = getattr(self._local, "helper", False)
            (self._from_helpers if on_helper else self._tasks).append(fn)
            if helping:  # when off, a helper queuing work comes back for it itself
                self._work.notify()

    def run_one(self) -> bool:
        """Run one queued task on the calling thread; False when none is queued."""
        with self._work:
            if self._tasks:
                task = self._tasks.popleft()
            elif self._from_helpers:
                task = self._from_helpers.popleft()
            else:
                return False
        try:
            task()
        finally:
            if self._governor is not None:
                with self._work:
                    self._count_out()
        return True

    def _count_in(self) -> bool:
        """Count a queued task (the caller holds ``_work``); whether helpers are on."""
        governor = self._governor
        if governor is None or self._unleashed:
            return True
        if self._pending == 0 and governor.busy() and governor.helpers:
            self._work.notify_all()
        self._pending += 1
        return governor.helpers

    def _count_out(self) -> None:
        """Count a finished task (the caller holds ``_work``)."""
        governor = self._governor
        if governor is None or self._unleashed:
            return
        self._pending -= 1
        changed = governor.completed()
        if self._pending == 0:
            governor.quiet()
        if changed and governor.helpers:
            self._work.notify_all()

    def _helping(self) -> bool:
        return self._governor is None or self._unleashed or self._governor.helpers

    def _init_thread(self) -> None:
        if self._thread_init is not None:
            self._thread_init()

    def _serve(self) -> None:
        self._local.helper = True
        try:
            self._init_thread()
        except Exception:  # the thread still serves, without whatever the hook sets
            log.exception("the pool's thread hook failed on %s", threading.current_thread().name)
        ran = False
        while True:
            with self._work:
                if ran:
                    self._count_out()
                while True:
                    if self._stopping:
                        return
                    if self._from_helpers:
                        task = self._from_helpers.popleft()
                        break
                    if self._tasks and self._helping():
                        task = self._tasks.popleft()
                        break
                    self._work.wait()
            try:
                task()
            except BaseException:  # tasks report their own failures; this is a last resort
                log.exception("a task failed on %s", threading.current_thread().name)
            ran = True

    def crashed(self, party: str, exc: BaseException) -> None:
        self._on_crash(party, exc)

    def party_done(self) -> None:
        with self._cond:
            self._active -= 1
            self._cond.notify_all()

    def drain(self) -> bool:
        """Run queued work on this thread until every actor is done or nothing is queued.
        Returns True when every actor is done."""
        while self.run_one():
            pass
        with self._cond:
            return self._active == 0

    def wait_all_done(self, timeout: float | None = None) -> bool:
        self._unleash()
        if self.drain():
            return True
        with self._cond:
            return self._cond.wait_for(lambda: self._active == 0, timeout)

    def _unleash(self) -> None:
        """Helpers take every task from now on: the run is ending, and its last messages
        must not wait for a driver."""
        with self._work:
            self._unleashed = True
            self._work.notify_all()

    def close(self) -> None:
        with self._work:
            self._stopping = True
            self._work.notify_all()
        for thread in self._threads:
            thread.join()
