"""Whether the in-process pool's helper threads should take work: measured, not guessed.

Threads of one process run Python in parallel only while the work has released the
interpreter lock. Work that releases it for long stretches (torch operations, large BLAS
calls) or that waits (I/O, simulated delays) goes faster on more threads. Work made of many
small numpy calls is the opposite: each BLAS call releases the lock and takes it back, and
two threads doing that hand the lock to each other through the kernel thousands of times a
second. Two threads training this project's softmax regression on 32-row batches ran 1.5-2.8x
slower than one thread doing all of it (``bench/pool_threads.py``). Neither the pool nor a
model can tell in advance which kind a job's work is (the same model changes side with its
batch size), so :class:`Governor` measures it.

It compares the two ways of running by their cost a task:

- *probe*: windows of work alternating between helpers on and helpers off (the helpers
  leave the work the drivers queue to the drivers, as with one worker, and run only what
  their own tasks queue), ``pairs`` of each, every window at least
  ``window_tasks`` tasks and ``window_s`` seconds long, so that each way sees every part of
  a round and the same drift of the machine's speed;
- *hold*: the cheaper way for ``hold_factor`` times the probe's duration, then probe again.
  The helpers are turned off only when that is at least ``margin`` cheaper, so work that
  gains nothing either way keeps every worker, as configured.

The cost of a window is its busy wall time (time during which tasks were queued or running,
whoever ran them) divided by the tasks it completed, so the gaps between rounds do not count
and a driver too busy to run queued work counts against the way that left the work to it.
Thread CPU time would not do: two threads bouncing the lock burn CPU in the kernel, so their
CPU time grows with the waste. Measuring starts when the pool first goes quiet: the work of
setting a job up (thousands of trivial starts queued while the parties are built) says
nothing about the rounds.

The governor does no locking and no I/O: the pool calls it under its own lock. Its clock is
the wall clock, never a job's injected clock, since what it measures is real time.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

__all__ = ["Governor"]


class Governor:
    """Decides, from measured cost a task, whether helper threads take work.

    The pool reports :meth:`busy` when its first task is queued after a quiet spell,
    :meth:`quiet` when its last task finishes, and :meth:`completed` after every task;
    :attr:`helpers` says whether helpers may take work now.
    """

    def __init__(
        self,
        *,
        window_tasks: int = 16,
        window_s: float = 0.02,
        pairs: int = 2,
        hold_factor: float = 10.0,
        margin: float = 0.1,
        now: Callable[[], float] = time.perf_counter,
    ) -> None:
        if window_tasks < 1 or pairs < 1:
            raise ValueError(
                f"window_tasks and pairs must be at least 1, got {window_tasks}, {pairs}"
            )
        if window_s < 0.0 or hold_factor < 0.0:
            raise ValueError(
                f"window_s and hold_factor must be >= 0, got {window_s}, {hold_factor}"
            )
        if not 0.0 <= margin < 1.0:
            raise ValueError(f"margin must lie in [0, 1), got {margin}")
        self._window_tasks, self._window_s = window_tasks, window_s
        self._windows = 2 * pairs
        self._hold_factor, self._margin, self._now = hold_factor, margin, now
        self.helpers = True
        self._measuring = False  # until the pool first goes quiet
        self._probing = True
        self._window = 0  # windows of this probe closed so far
        self._count = 0  # tasks completed in the current window
        self._busy = 0.0  # busy seconds of the current window, closed spells only
        self._since: float | None = None  # start of the open busy spell
        self._hold_s = 0.0
        self._sums = {True: [0.0, 0], False: [0.0, 0]}  # helpers -> [busy s, tasks]
        # the latest decisions: (cost a task with helpers, without, helpers kept)
        self.decisions: deque[tuple[float, float, bool]] = deque(maxlen=64)

    def busy(self) -> None:
        self._since = self._now()

    def quiet(self) -> None:
        if self._since is not None:
            self._busy += self._now() - self._since
            self._since = None
        if not self._measuring:
            self._measuring = True
            self._busy, self._count = 0.0, 0

    def completed(self) -> bool:
        """Count a finished task; True when :attr:`helpers` changed."""
        if not self._measuring:
            return False
        self._count += 1
        if self._count < (self._window_tasks if self._probing else 1):
            return False
        busy = self._busy
        if self._since is not None:
            now = self._now()
            busy += now - self._since
        if busy < (self._window_s if self._probing else self._hold_s):
            return False
        # the window ends here; the next one starts now
        count = self._count
        self._busy, self._count = 0.0, 0
        if self._since is not None:
            self._since = now
        before = self.helpers
        if self._probing:
            total = self._sums[self.helpers]
            total[0] += busy
            total[1] += count
            self._window += 1
            if self._window < self._windows:
                self.helpers = not self.helpers
            else:
                self._decide()
        else:  # the hold is over: probe again, helpers first
            self._probing, self._window, self.helpers = True, 0, True
        return self.helpers != before

    def _decide(self) -> None:
        (on_s, on_n), (off_s, off_n) = self._sums[True], self._sums[False]
        cost_on, cost_off = on_s / on_n, off_s / off_n
        self.helpers = not cost_off < cost_on * (1.0 - self._margin)
        self.decisions.append((cost_on, cost_off, self.helpers))
        self._hold_s = self._hold_factor * (on_s + off_s)
        self._sums = {True: [0.0, 0], False: [0.0, 0]}
        self._probing = False
