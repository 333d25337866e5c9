"""Obfuscators computed ahead of time: encryption at the cost of one multiplication.

A Paillier encryption ``(1 + m n) r^n mod n^2`` spends almost all its time on ``r^n mod
n^2``, which does not depend on the message. An :class:`ObfuscatorPool` computes these
powers beforehand (in idle time, or in worker processes) and hands each out once.

Security:

- each ``r`` is drawn uniformly from Z_n^* with the operating system's CSPRNG and each
  ``r^n`` is used for exactly one ciphertext, then dropped: a reused obfuscator lets
  anyone divide two ciphertexts and read the difference of their plaintexts;
- the pool lives only in this process's memory; it is never written, logged or sent, and
  is not shared between keys or parties (an obfuscator known to someone else makes the
  ciphertext it blinds decryptable by them);
- when the pool runs dry it computes fresh obfuscators on the spot rather than reuse one.

Two ways to compute them (``method``):

- ``"fixed-base"`` (the default): ``h_s^a mod n^2`` with ``h_s = h^n`` for one random unit
  ``h`` per pool and a fresh uniform ``a`` of ``ceil(|n| / 2)`` bits for each obfuscator,
  the variant of Damgård, Jurik and Nielsen ("A generalization of Paillier's public-key
  system with applications to electronic voting", Int. J. Inf. Secur. 9(6), 2010).
  ``h_s^a = (h^a)^n`` is an ``n``-th power like ``r^n``; that it is as good as one for a
  uniform ``r`` rests on the decisional composite residuosity assumption together with
  the assumption that ``h^a`` with a half-length exponent cannot be told from a uniform
  element of the group ``h`` generates (the short-exponent assumption the paper states).
  With ``h_s`` fixed, a table of its powers (``2^window`` per digit, ~16 MiB for 2048-bit
  keys at the default window of 8 bits) turns each obfuscator into one multiplication per
  8-bit digit of ``a``: ~128 products instead of a 2048-bit power (~0.8 ms against ~11 ms
  at 2048 bits; ``bench/paillier.py``). ``h``, ``h_s`` and the table stay in the pool like
  the obfuscators; a worker process of the pool's owner keeps one table of its own per key.
- ``"textbook"``: ``r^n mod n^2`` for a uniform ``r`` in Z_n^* (Paillier's own), for those
  who want no assumption beyond composite residuosity.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections import deque
from concurrent.futures import BrokenExecutor, CancelledError
from typing import TYPE_CHECKING, Any, Literal

from consortium.privacy.paillier import primitives
from consortium.privacy.paillier._gmp import gmpy2
from consortium.privacy.paillier.rows import split_rows

if TYPE_CHECKING:
    from concurrent.futures import Future

    from consortium.privacy.paillier.keys import PublicKey
    from consortium.privacy.paillier.pool import ParallelPaillier

__all__ = ["FixedBase", "ObfuscatorMethod", "ObfuscatorPool", "fresh_obfuscators"]

ObfuscatorMethod = Literal["fixed-base", "textbook"]

log = logging.getLogger(__name__)


class FixedBase:
    """Obfuscators ``h_s^a mod n^2`` for one random ``h`` and fresh short exponents ``a``,
    from a table of ``h_s``'s powers (see the module's docstring)."""

    __slots__ = ("_bits", "_nsq", "_table", "_window")

    def __init__(self, n: Any, *, window: int = 8) -> None:
        g = gmpy2()
        n = g.mpz(n)
        nsq = n * n
        self._nsq, self._window = nsq, window
        self._bits = (int(n).bit_length() + 1) // 2
        base = g.powmod(primitives.random_unit(n), n, nsq)  # h_s = h^n
        table = []
        for _ in range(-(-self._bits // window)):
            row = [g.mpz(1), base]
            for _ in range((1 << window) - 2):
                row.append(row[-1] * base % nsq)
            table.append(row)
            base = row[-1] * base % nsq  # h_s^(2^(window * (digit + 1)))
        self._table = table

    def draw(self) -> Any:
        """A fresh obfuscator, from a fresh exponent drawn from the CSPRNG."""
        a = secrets.randbits(self._bits)
        mask, window, nsq = (1 << self._window) - 1, self._window, self._nsq
        out = None
        for row in self._table:
            digit = a & mask
            a >>= window
            if digit:
                out = row[digit] if out is None else out * row[digit] % nsq
        return self._table[0][1] if out is None else out  # a = 0: never, in practice


class ObfuscatorPool:
    """Precomputed obfuscators for one public key, each handed out once.
    ``ObfuscatorPool(public_key, size=1000)`` computes 1,000 now, in this process;
    ``fill(count, parallel=..., wait=False)`` has worker processes compute more while the
    party waits for the others (:meth:`take` waits for them only when it needs them). Pass
    the pool as ``obfuscators=`` to ``encrypt``, ``encrypt_packed``, ``rerandomize`` or
    ``ciphertexts_to_array``. Thread-safe."""

    __slots__ = ("_fixed", "_generation", "_items", "_lock", "_pending", "method", "public_key")

    def __init__(
        self,
        public_key: PublicKey,
        *,
        size: int = 0,
        parallel: ParallelPaillier | None = None,
        method: ObfuscatorMethod = "fixed-base",
    ) -> None:
        if method not in ("fixed-base", "textbook"):
            raise ValueError(f"method must be 'fixed-base' or 'textbook', got {method!r}")
        self.public_key = public_key
        self.method: ObfuscatorMethod = method
        self._items: deque[Any] = deque()
        self._pending: deque[tuple[Future[bytes], int]] = deque()  # (chunk, its count)
        self._lock = threading.Lock()
        self._generation = 0  # bumped by clear(): chunks collected across it are dropped
        self._fixed: FixedBase | None = None
        if size:
            self.fill(size, parallel=parallel)

    def _compute(self, count: int) -> list[Any]:
        if self.method == "textbook":
            return fresh_obfuscators(self.public_key, count)
        with self._lock:
            if self._fixed is None:
                self._fixed = FixedBase(self.public_key.n)
            fixed = self._fixed
        return [fixed.draw() for _ in range(count)]

    def __len__(self) -> int:
        """Obfuscators ready to take (not counting those the workers are computing)."""
        return len(self._items)

    @property
    def pending(self) -> int:
        """Obfuscators the workers are computing for this pool."""
        with self._lock:
            return sum(count for _, count in self._pending)

    def __repr__(self) -> str:
        return (
            f"ObfuscatorPool(key={self.public_key.fingerprint}, available={len(self)}, "
            f"pending={self.pending})"
        )

    def fill(
        self, count: int, *, parallel: ParallelPaillier | None = None, wait: bool = True
    ) -> None:
        """Compute ``count`` more obfuscators (across ``parallel``'s workers when given;
        with ``wait=False``, in the background: only with ``parallel``)."""
        if count < 0:
            raise ValueError(f"count must be non-negative, got {count}")
        if parallel is None:
            if not wait:
                raise ValueError("filling in the background needs worker processes")
            fresh = self._compute(count)
            with self._lock:
                self._items.extend(fresh)
            return
        chunks = parallel.obfuscators_async(self.public_key, count, method=self.method)
        with self._lock:
            self._pending.extend(chunks)
        if wait:
            self._collect(count=None)

    def _collect(self, *, count: int | None) -> None:
        """Move finished chunks into the pool, waiting for chunks in order until ``count``
        are ready (``None``: all of them). A chunk lost with its workers (a worker died, the
        executor was shut down, the chunk was cancelled) is dropped with a warning, for
        :meth:`take` to compute here. Any other error is raised."""
        width = self.public_key.ciphertext_bytes
        while True:
            with self._lock:
                if not self._pending:
                    return
                future, _ = self._pending[0]
                enough = count is not None and len(self._items) >= count
                if enough and not future.done():
                    return
                self._pending.popleft()
                generation = self._generation
            try:
                values = split_rows(future.result(), width)  # waits if still running
            except (BrokenExecutor, CancelledError) as exc:  # take() makes the shortfall
                log.warning("obfuscators from a worker were lost (%r); computing here", exc)
                continue
            with self._lock:
                if generation == self._generation:  # not cleared while we waited
                    self._items.extend(values)

    def take(self, count: int) -> list[Any]:
        """``count`` obfuscators, removed from the pool: ready ones first, then those the
        workers are computing; any shortfall is computed now."""
        self._collect(count=count)
        with self._lock:
            got = min(count, len(self._items))
            out = [self._items.popleft() for _ in range(got)]
        if got < count:
            log.debug("obfuscator pool short by %d: computing them now", count - got)
            out.extend(self._compute(count - got))
        return out

    def clear(self) -> None:
        """Drop every precomputed obfuscator, and those still being computed."""
        with self._lock:
            self._generation += 1
            self._items.clear()
            for future, _ in self._pending:
                future.cancel()
            self._pending.clear()


def fresh_obfuscators(
    public_key: PublicKey, count: int, pool: ObfuscatorPool | None = None
) -> list[Any]:
    """``count`` obfuscators ``r^n mod n^2``: from ``pool`` when given, else computed now."""
    if pool is not None:
        if pool.public_key != public_key:
            raise ValueError("the obfuscator pool was made for another public key")
        return pool.take(count)
    n, nsq = public_key.n, public_key.nsq
    return [primitives.obfuscator(n, nsq) for _ in range(count)]
