"""Obfuscators computed ahead of time: encryption at the cost of one multiplication.

A Paillier encryption ``(1 + m n) r^n mod n^2`` spends almost all its time on ``r^n mod
n^2`` (a 2048-bit power modulo a 4096-bit number for the default key), which does not
depend on the message. An :class:`ObfuscatorPool` computes these powers beforehand (in
idle time, or in worker processes through a ``ParallelPaillier``) and hands each out once.

Security:

- each ``r`` is drawn uniformly from Z_n^* with the operating system's CSPRNG and each
  ``r^n`` is used for exactly one ciphertext, then dropped: a reused obfuscator lets
  anyone divide two ciphertexts and read the difference of their plaintexts;
- the pool lives only in this process's memory; it is never written, logged or sent, and
  is not shared between keys or parties (an obfuscator known to someone else makes the
  ciphertext it blinds decryptable by them);
- when the pool runs dry it computes fresh obfuscators on the spot rather than reuse one.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import TYPE_CHECKING, Any

from consortium.privacy.paillier import primitives

if TYPE_CHECKING:
    from consortium.privacy.paillier.keys import PublicKey
    from consortium.privacy.paillier.pool import ParallelPaillier

__all__ = ["ObfuscatorPool"]

log = logging.getLogger(__name__)


class ObfuscatorPool:
    """Precomputed ``r^n mod n^2`` values for one public key, each handed out once.

    ``ObfuscatorPool(public_key, size=1000)`` computes 1,000 now, in this process;
    ``fill(count, parallel=...)`` computes more, in worker processes if given. Pass the
    pool as ``obfuscators=`` to ``PublicKey.encrypt``, ``EncryptedArray.rerandomize`` or
    the serialisation functions. Thread-safe.
    """

    __slots__ = ("_items", "_lock", "public_key")

    def __init__(
        self, public_key: PublicKey, *, size: int = 0, parallel: ParallelPaillier | None = None
    ) -> None:
        self.public_key = public_key
        self._items: deque[Any] = deque()
        self._lock = threading.Lock()
        if size:
            self.fill(size, parallel=parallel)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"ObfuscatorPool(key={self.public_key.fingerprint}, available={len(self)})"

    def fill(self, count: int, *, parallel: ParallelPaillier | None = None) -> None:
        """Compute ``count`` more obfuscators (across ``parallel``'s workers when given)."""
        if count < 0:
            raise ValueError(f"count must be non-negative, got {count}")
        if parallel is not None:
            fresh = parallel.obfuscators(self.public_key, count)
        else:
            n, nsq = self.public_key.n, self.public_key.nsq
            fresh = [primitives.obfuscator(n, nsq) for _ in range(count)]
        with self._lock:
            self._items.extend(fresh)

    def take(self, count: int) -> list[Any]:
        """``count`` obfuscators, removed from the pool; any shortfall is computed now."""
        with self._lock:
            got = min(count, len(self._items))
            out = [self._items.popleft() for _ in range(got)]
        if got < count:
            log.debug("obfuscator pool short by %d: computing them now", count - got)
            n, nsq = self.public_key.n, self.public_key.nsq
            out.extend(primitives.obfuscator(n, nsq) for _ in range(count - got))
        return out

    def clear(self) -> None:
        """Drop every precomputed obfuscator."""
        with self._lock:
            self._items.clear()
