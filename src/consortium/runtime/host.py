"""Hosting programs: a thread per driver, and actors either on their own thread
(:func:`serve_actor`, one party per process) or many in one process (:class:`ActorPool`,
the in-process launcher, so a thousand simulated trainers cost a thousand small objects,
not a thousand threads).

A program that raises is a crash: the party tells the hub (:data:`CRASHED`, with the
reason) so the driver fails the run naming it, and the launcher is told as well.
"""

from __future__ import annotations

import logging
import signal
import threading
import traceback
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from consortium.errors import ConsortiumError, TransportClosed
from consortium.runtime.context import PartyContext
from consortium.runtime.program import CRASHED, Actor, Driver, Outcome
from consortium.transport import Mailbox
from consortium.wire import Message

__all__ = [
    "ActorPool",
    "ActorSlot",
    "report_crash",
    "run_interruptibly",
    "serve_actor",
    "serve_driver",
]

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


_T = TypeVar("_T")
STOP_GRACE_S = 10.0
"""How long the work may take to end after an interrupt has closed its endpoints."""


def run_interruptibly(work: Callable[[], _T], stop: Callable[[str], None]) -> _T:
    """``work()`` on a thread of its own while this (the main) thread waits for it. A SIGINT
    or SIGTERM raised here (``KeyboardInterrupt``) calls ``stop(reason)``, which closes the
    parties' endpoints so that the work ends by the transport's own path, waits for it up to
    :data:`STOP_GRACE_S`, and raises the interrupt again. An interrupt raised inside the work
    could land between a lock's acquisition and the block that releases it, and leave every
    other thread waiting on that lock for ever."""
    outcome: dict[str, Any] = {}
    # A bare lock, held until the work is done: Thread.join marks a live thread as ended
    # when an interrupt lands in it, and a Condition's own lock could be left held.
    done = threading.Lock()
    done.acquire()

    def target() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            done.release()

    threading.Thread(target=target, name="party-work", daemon=True).start()
    try:
        done.acquire()
    except KeyboardInterrupt as interrupt:
        # the stop itself is not interrupted (the launcher escalates to SIGKILL if need be)
        handlers = {n: signal.signal(n, signal.SIG_IGN) for n in (signal.SIGINT, signal.SIGTERM)}
        try:
            stop(str(interrupt) or "interrupted")
            if not outcome and not done.acquire(timeout=STOP_GRACE_S):
                log.warning("the work did not end within %.0f s of the interrupt", STOP_GRACE_S)
        finally:
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
        raise
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def serve_actor(ctx: PartyContext, actor: Actor) -> None:
    """Run an actor on the calling thread until it is done or its endpoint closes."""
    try:
        actor.start(ctx)
        while True:
            try:
                msg = ctx.recv()
                if not actor.handle(ctx, msg):
                    return
            except TransportClosed as exc:  # the run is over: as in ActorSlot._drain
                log.info("party %s stops: %s", ctx.name, exc)
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


class _Runner(Protocol):
    def submit(self, fn: Callable[[], None], /) -> object: ...

    def shutdown(self, wait: bool = True) -> None: ...


class _InlineRunner:
    """Runs submitted work on the thread that submits it, one task at a time: a thread that
    submits while another task is running (on it or on another thread) leaves the task
    queued for the thread already running, which runs everything queued before it returns.
    So work never waits for a thread that is not coming, and a party's message is handled
    before the send that delivered it returns, unless a handler is running already."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: deque[Callable[[], None]] = deque()
        self._running = False

    def submit(self, fn: Callable[[], None], /) -> None:
        with self._lock:
            self._queue.append(fn)
            if self._running:
                return
            self._running = True
        try:
            while True:
                with self._lock:
                    if not self._queue:
                        self._running = False
                        return
                    task = self._queue.popleft()
                task()
        except BaseException:  # an interrupt: the next submit runs what is left
            with self._lock:
                self._running = False
            raise

    def shutdown(self, wait: bool = True) -> None:
        return None


class _ActorMailbox(Mailbox):
    """An actor's mailbox: every message put schedules the actor."""

    def __init__(self, slot: ActorSlot) -> None:
        super().__init__()
        self._slot = slot

    def put(self, msg: Message) -> None:
        super().put(msg)
        self._slot.notify()


class ActorSlot:
    """One actor's place in the pool: its messages are handled one at a time, in order.
    Give :attr:`mailbox` to the actor's in-process endpoint, then :meth:`bind` the actor."""

    def __init__(self, *, pool: ActorPool) -> None:
        self._pool = pool
        self._lock = threading.Lock()
        self._scheduled = False
        self._done = False
        self._ctx: PartyContext | None = None
        self._actor: Actor | None = None
        self.mailbox: Mailbox = _ActorMailbox(self)

    def notify(self) -> None:
        """A message arrived: make sure a drain is scheduled."""
        with self._lock:
            if self._scheduled or self._done or self._ctx is None:
                return
            self._scheduled = True
        self._pool.submit(self._drain)

    def bind(self, ctx: PartyContext, actor: Actor) -> None:
        with self._lock:
            self._ctx, self._actor = ctx, actor
            self._scheduled = True
        self._pool.party_started()
        self._pool.submit(self._start)

    def _start(self) -> None:
        assert self._ctx is not None and self._actor is not None
        try:
            self._actor.start(self._ctx)
        except Exception as exc:
            self._crash(exc)
            return
        self._drain()

    def _drain(self) -> None:
        ctx, actor, mailbox = self._ctx, self._actor, self.mailbox
        assert ctx is not None and actor is not None
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
            except Exception as exc:
                self._crash(exc)
                return
            except BaseException:  # an interrupt: a later message schedules the actor again
                with self._lock:
                    self._scheduled = False
                raise
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
    """Runs many actors of one process. With one worker (the default) every actor's work
    runs on the thread whose send delivered its message (see :class:`_InlineRunner`): no
    thread hand-offs and a fixed order of events. With more, on a
    :class:`~concurrent.futures.ThreadPoolExecutor` of that many threads, each started with
    ``thread_init`` (e.g. per-thread BLAS limits). Drivers other than the hub each get a
    thread of their own (:meth:`start_driver`)."""

    def __init__(
        self,
        *,
        workers: int,
        on_crash: CrashCallback,
        thread_init: Callable[[], None] | None = None,
    ) -> None:
        self._on_crash = on_crash
        self._active = 0
        self._cond = threading.Condition()
        self._runner: _Runner = (
            _InlineRunner()
            if workers <= 1
            else ThreadPoolExecutor(
                max_workers=workers, thread_name_prefix="party-pool", initializer=thread_init
            )
        )

    def slot(self) -> ActorSlot:
        return ActorSlot(pool=self)

    def submit(self, fn: Callable[[], None]) -> None:
        self._runner.submit(fn)

    def start_driver(self, ctx: PartyContext, driver: Driver) -> threading.Thread:
        """Run a non-hub driver on a thread of its own."""
        self.party_started()

        def host() -> None:
            try:
                serve_driver(ctx, driver)
            except Exception as exc:
                self.crashed(ctx.name, exc)
            finally:
                ctx.endpoint.close()
                self.party_done()

        thread = threading.Thread(target=host, name=f"driver-{ctx.name}", daemon=True)
        thread.start()
        return thread

    def party_started(self) -> None:
        with self._cond:
            self._active += 1

    def crashed(self, party: str, exc: BaseException) -> None:
        self._on_crash(party, exc)

    def party_done(self) -> None:
        with self._cond:
            self._active -= 1
            self._cond.notify_all()

    def wait_all_done(self, timeout: float | None = None) -> bool:
        """Whether every actor and driver finished within ``timeout`` seconds."""
        with self._cond:
            return self._cond.wait_for(lambda: self._active == 0, timeout)

    def close(self) -> None:
        self._runner.shutdown(wait=True)
