"""Injectable time. Every wait in Consortium goes through a clock, so deadline logic can be
tested with :class:`FakeClock` instead of sleeping.

A clock waits on a :class:`threading.Condition` the caller holds; it never polls.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import Protocol

__all__ = ["Clock", "FakeClock", "SystemClock"]


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic scale."""
        ...

    def wait(self, cond: threading.Condition, timeout: float | None) -> None:
        """Block on ``cond`` (held by the caller) until notified or ``timeout`` passes."""
        ...


class SystemClock:
    """Real monotonic time."""

    def now(self) -> float:
        return time.monotonic()

    def wait(self, cond: threading.Condition, timeout: float | None) -> None:
        cond.wait(timeout)


class FakeClock:
    """Time that moves only when a test calls :meth:`advance`.

    Waiters block without a timeout and are woken by ``advance`` (or by whoever notifies
    their condition), then recheck their deadline against :meth:`now`.
    """

    def __init__(self, *, start: float = 0.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self._waiting: weakref.WeakSet[threading.Condition] = weakref.WeakSet()
        self._waiter_arrived = threading.Condition(self._lock)
        self._waiters = 0

    def now(self) -> float:
        with self._lock:
            return self._now

    def wait(self, cond: threading.Condition, timeout: float | None) -> None:
        with self._lock:
            self._waiting.add(cond)
            self._waiters += 1
            self._waiter_arrived.notify_all()
        try:
            cond.wait()
        finally:
            with self._lock:
                self._waiters -= 1

    def wait_for_waiters(self, count: int = 1, timeout: float = 10.0) -> bool:
        """Block (in real time) until ``count`` threads wait on this clock. For tests."""
        with self._lock:
            return self._waiter_arrived.wait_for(lambda: self._waiters >= count, timeout)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds
            conds = list(self._waiting)
        for cond in conds:
            with cond:
                cond.notify_all()
