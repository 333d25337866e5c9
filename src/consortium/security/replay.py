"""Replay protection: each message names its job and carries a sequence number per channel.

A party numbers what it sends to each receiver 1, 2, 3, ... (the runtime does). A receiver
admits a message only if it is for this job and its number has not been seen on that
channel (sender to receiver) before. Numbers are checked against a sliding window, as in
IPsec's anti-replay check (RFC 4303, section 3.4.3): a number above the highest seen is
admitted and moves the window; a number inside the window is admitted once; anything older
than the window is refused. The window admits messages that two threads of one party
numbered in one order and queued in the other; it never admits the same number twice.

A channel's numbering is per session: when a party connects anew (a restarted process counts
from 1 again) the transport calls :meth:`ReplayGuard.forget` for it.
"""

from __future__ import annotations

import threading

__all__ = ["DEFAULT_WINDOW", "ReplayGuard"]

DEFAULT_WINDOW = 1024  # numbers a message may lag behind the newest on its channel


class ReplayGuard:
    """Admits each (job, sender, receiver, seq) once. Thread-safe."""

    def __init__(self, *, job: str, window: int = DEFAULT_WINDOW) -> None:
        if not job:
            raise ValueError("a replay guard needs the job id")
        if window < 1:
            raise ValueError("the window must hold at least one number")
        self._job = job
        self._window = window
        self._mask = (1 << window) - 1
        # (sender, receiver) -> (the highest number admitted, bits: bit i set when number
        # ``top - i`` was admitted); a channel not yet used is (0, 0)
        self._channels: dict[tuple[str, str], tuple[int, int]] = {}
        self._lock = threading.Lock()

    def check(self, *, job: str, sender: str, receiver: str, seq: int) -> str | None:
        """None if the message is admitted (and recorded); else why it is refused."""
        if job != self._job:
            return f"it is for job {job!r}, not this job ({self._job!r})"
        if seq < 1:
            return "it has no sequence number"
        key = (sender, receiver)
        with self._lock:
            top, seen = self._channels.get(key, (0, 0))
            if seq > top:
                shift = seq - top
                seen = ((seen << shift) | 1) & self._mask if shift < self._window else 1
                self._channels[key] = (seq, seen)
                return None
            lag = top - seq
            if lag >= self._window:
                return (
                    f"sequence number {seq} is too old (newest {top}, "
                    f"window {self._window}): a replay or a very late message"
                )
            if seen >> lag & 1:
                return f"sequence number {seq} was already received: a replay or a duplicate"
            self._channels[key] = (top, seen | 1 << lag)
            return None

    def forget(self, sender: str) -> None:
        """Start the numbering of every channel from ``sender`` afresh (a new session)."""
        with self._lock:
            for key in [k for k in self._channels if k[0] == sender]:
                del self._channels[key]
