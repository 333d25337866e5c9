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
  their own tasks queue), ``pairs`` of each, so that each way sees the same drift of the
  machine's speed;
  a probe ends after its first pair when one way was ``decisive`` cheaper there (helpers
  on cost twice as much in a job of small numpy calls, and every window of the costly way
  is time lost);
- *hold*: the cheaper way for ``hold_factor`` times the probe's duration (a whole probe's,
  scaled up from the windows taken when it ended early), then probe again.
  The helpers are turned off only when that is at least ``margin`` cheaper, so work that
  gains nothing either way keeps every worker, as configured.

The cost of a window is its wall time divided by the tasks completed in it, everything
counted: the drivers' own work (a hub folding replies, evaluating) is slowed by helpers
holding the lock as much as the tasks are, and often it is what the helpers delay most. A
window ends when work is queued after a quiet moment (nothing queued or running), once it
has lasted ``window_s`` seconds and ``window_tasks`` tasks: in a job of rounds that is the
start of a round, so every window holds whole rounds, each with what its hub did after its
last reply, and the two ways are compared on the same work. Work that is never quiet ends
its windows at a task after ``20 * window_s``. The default window, 25 ms, is one round of
the FedAvg benchmark's 100 small trainers (with 50 ms the window with helpers on, the
costly way there, took two rounds and ~15 ms more a run; ``bench/pool_threads.py`` still
chose right in all four of its workloads). Thread CPU time would not do as a measure:
two threads bouncing the lock burn CPU in the kernel, so their CPU time grows with the
waste. Measuring starts after the pool's first quiet moment: the work of setting a job up
(thousands of trivial starts queued while the parties are built) says nothing about the
rounds.

The governor does no locking and no I/O: the pool calls it under its own lock. Its clock is
the wall clock, never a job's injected clock, since what it measures is real time.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

__all__ = ["Governor"]

# a window (or hold) that never meets a quiet moment ends at a task after this many times
# its length
_NEVER_QUIET = 20.0


class Governor:
    """Decides, from measured cost a task, whether helper threads take work.

    The pool reports :meth:`busy` when work is queued after a quiet moment, :meth:`quiet`
    when its last queued or running task finishes, and :meth:`completed` after every task;
    :meth:`busy` and :meth:`completed` return True when :attr:`helpers` (whether helpers
    may take work now) changed.
    """

    def __init__(
        self,
        *,
        window_tasks: int = 16,
        window_s: float = 0.025,
        pairs: int = 2,
        hold_factor: float = 10.0,
        margin: float = 0.1,
        decisive: float = 0.3,
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
        if not 0.0 < decisive < 1.0:
            raise ValueError(f"decisive must lie in (0, 1), got {decisive}")
        self._window_tasks, self._window_s = window_tasks, window_s
        self._windows = 2 * pairs
        self._hold_factor, self._margin, self._decisive = hold_factor, margin, decisive
        self._now = now
        self.helpers = True
        self._measuring = False  # from the first busy moment after a quiet one
        self._seen_quiet = False
        self._probing = True
        self._window = 0  # windows of this probe closed so far
        self._count = 0  # tasks completed in the current window (or hold)
        self._start = 0.0  # when the current window (or hold) began
        self._hold_s = 0.0
        self._sums = {True: [0.0, 0], False: [0.0, 0]}  # helpers -> [seconds, tasks]
        # the latest decisions: (cost a task with helpers, without, helpers kept)
        self.decisions: deque[tuple[float, float, bool]] = deque(maxlen=64)

    def completed(self) -> bool:
        """Count a finished task."""
        if not self._measuring:
            return False
        self._count += 1
        return self._maybe_close(natural=False)

    def quiet(self) -> None:
        """Nothing is queued or running."""
        self._seen_quiet = True

    def busy(self) -> bool:
        """Work is queued after a quiet moment: the natural end of a window."""
        if not self._measuring:
            if self._seen_quiet:
                self._measuring = True
                self._start, self._count = self._now(), 0
            return False
        return self._maybe_close(natural=True)

    def _maybe_close(self, *, natural: bool) -> bool:
        length = self._window_s if self._probing else self._hold_s
        if self._count < (self._window_tasks if self._probing else 1):
            return False
        now = self._now()
        elapsed = now - self._start
        if elapsed < (length if natural else _NEVER_QUIET * length):
            return False
        count = self._count
        self._start, self._count = now, 0
        before = self.helpers
        if self._probing:
            total = self._sums[self.helpers]
            total[0] += elapsed
            total[1] += count
            self._window += 1
            if self._window >= self._windows or (self._window == 2 and self._clear_cut()):
                self._decide()
            else:
                self.helpers = not self.helpers
        else:  # the hold is over: probe again, helpers first
            self._probing, self._window, self.helpers = True, 0, True
        return self.helpers != before

    def _costs(self) -> tuple[float, float]:
        """The probe's cost a task so far: with helpers, without."""
        (on_s, on_n), (off_s, off_n) = self._sums[True], self._sums[False]
        return on_s / on_n, off_s / off_n

    def _clear_cut(self) -> bool:
        """Whether one way was at least ``decisive`` cheaper than the other."""
        cost_on, cost_off = self._costs()
        keep = 1.0 - self._decisive
        return cost_off < cost_on * keep or cost_on < cost_off * keep

    def _decide(self) -> None:
        cost_on, cost_off = self._costs()
        self.helpers = not cost_off < cost_on * (1.0 - self._margin)
        self.decisions.append((cost_on, cost_off, self.helpers))
        # as long as after a whole probe, even when a clear cut ended it early: the early
        # end is there to spend less time the costly way, not to probe more often
        probed = self._sums[True][0] + self._sums[False][0]
        self._hold_s = self._hold_factor * probed * self._windows / self._window
        self._sums = {True: [0.0, 0], False: [0.0, 0]}
        self._probing = False
