"""Paillier work spread over worker processes.

Modular exponentiation holds the GIL in gmpy2, so threads do not help; processes do.
:class:`ParallelPaillier` cuts big jobs (obfuscators, decryptions, the rows or the
terms of ``X^T [[d]]``) into chunks for a :class:`concurrent.futures.ProcessPoolExecutor` and
puts the answers back in order, so results equal the serial ones (decryptions and
products exactly; encryptions up to their randomness).

What crosses the process boundary, both ways: Python ints (the modulus; the primes, for
decryption, which therefore only ever go to worker processes of the key holder on its own
host), lists of ints (plaintext exponents) and bytes (ciphertexts as fixed-width rows).
Never a pickled object of this library: a task that meets an invalid ciphertext returns
``None`` rather than raise. Workers start with ``spawn`` (fork is unsafe in a process that
already runs threads, as the gRPC transport does); they use no BLAS.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import threading
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np

from consortium.privacy.paillier._gmp import gmpy2
from consortium.privacy.paillier.arrays import EncryptedArray, encrypt, matvec_with
from consortium.privacy.paillier.encoding import Encoding, from_residues, object_array
from consortium.privacy.paillier.errors import InvalidCiphertext
from consortium.privacy.paillier.keys import PrivateKey, PublicKey
from consortium.privacy.paillier.multiexp import exponent_bits, multiexp_rows, split_across
from consortium.privacy.paillier.obfuscators import FixedBase, ObfuscatorPool, fresh_obfuscators
from consortium.privacy.paillier.rows import join_rows, split_rows

__all__ = ["ParallelPaillier"]


class ParallelPaillier:
    """Encrypt, decrypt and compute ``X^T [[d]]`` across worker processes.

    ``ParallelPaillier(workers=4)`` owns a process pool (started on first use, closed by
    :meth:`close` or ``with``); ``ParallelPaillier(executor=ex)`` borrows one.
    ``chunks_per_worker`` (for obfuscators and decryptions, whose chunks cost no extra
    work) trades load balance against per-task overhead. Workers are spawned, so a script
    using this must guard its entry point with ``if __name__ == "__main__":``."""

    def __init__(
        self,
        *,
        workers: int | None = None,
        executor: Executor | None = None,
        chunks_per_worker: int = 4,
    ) -> None:
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.workers = workers or (os.cpu_count() or 1)
        self.chunks_per_worker = max(1, chunks_per_worker)
        self._executor = executor
        self._owned = executor is None
        self._lock = threading.Lock()  # guards starting and replacing the executor

    def __enter__(self) -> ParallelPaillier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Shut down the pool this object started, cancelling work not yet begun (a
        borrowed executor is left alone)."""
        if not self._owned:
            return
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(cancel_futures=True)

    def _submit(self, fn: Any, *args: Any) -> Future[Any]:
        """``fn(*args)`` in a worker. An owned pool found broken (a worker died, e.g.
        killed for memory: every task it had pending then fails) is replaced, so the next
        calls work again; a borrowed one is its owner's to replace."""
        with self._lock:
            if self._executor is None:
                self._executor = self._start()
            try:
                return self._executor.submit(fn, *args)
            except BrokenProcessPool:
                if not self._owned:
                    raise
                self._executor.shutdown(wait=False, cancel_futures=True)
                self._executor = self._start()
                return self._executor.submit(fn, *args)

    def _start(self) -> Executor:
        return ProcessPoolExecutor(
            max_workers=self.workers, mp_context=multiprocessing.get_context("spawn")
        )

    def _spans(self, total: int) -> list[tuple[int, int]]:
        return _even_spans(total, self.workers * self.chunks_per_worker)

    def obfuscators(
        self, public_key: PublicKey, count: int, *, method: str = "textbook"
    ) -> list[Any]:
        """``count`` fresh obfuscators for ``public_key`` (see
        :class:`~consortium.privacy.paillier.ObfuscatorPool` for the methods)."""
        width = public_key.ciphertext_bytes
        chunks = self.obfuscators_async(public_key, count, method=method)
        return [v for f, _ in chunks for v in split_rows(f.result(), width)]

    def obfuscators_async(
        self, public_key: PublicKey, count: int, *, method: str = "textbook"
    ) -> list[tuple[Future[bytes], int]]:
        """Start computing ``count`` obfuscators: (future, count) chunks, each future's result
        fixed-width rows of ``public_key.ciphertext_bytes`` (``rows.split_rows`` reads them)."""
        width = public_key.ciphertext_bytes
        n = int(public_key.n)
        return [
            (self._submit(_obfuscators_task, n, b - a, width, method), b - a)
            for a, b in self._spans(count)
        ]

    def encrypt(
        self, public_key: PublicKey, values: Any, *, encoding: Encoding | None = None
    ) -> EncryptedArray:
        """``encrypt(public_key, values)`` with the obfuscators computed by the workers."""
        pool = ObfuscatorPool(public_key, size=np.size(values), parallel=self, method="textbook")
        return encrypt(public_key, values, encoding=encoding, obfuscators=pool)

    def decrypt_residues(self, private_key: PrivateKey, encrypted: EncryptedArray) -> np.ndarray:
        """``decrypt_residues(private_key, encrypted)``, across the workers."""
        public = private_key.public_key
        if encrypted.public_key != public:
            raise InvalidCiphertext()
        width, out_width = public.ciphertext_bytes, public.plaintext_bytes
        blob = join_rows(encrypted.ciphertext_list(), width)
        p, q = private_key.primes
        futures = [
            self._submit(_decrypt_task, p, q, blob[a * width : b * width], width, out_width)
            for a, b in self._spans(encrypted.size)
        ]
        residues: list[Any] = []
        for f in futures:
            part = f.result()
            if part is None:
                raise InvalidCiphertext()
            residues.extend(split_rows(part, out_width))
        return object_array(residues, encrypted.shape)

    def decrypt_encoded(self, private_key: PrivateKey, encrypted: EncryptedArray) -> np.ndarray:
        """``decrypt_encoded(private_key, encrypted)``, across the workers."""
        residues = self.decrypt_residues(private_key, encrypted).ravel().tolist()
        ints = from_residues(residues, private_key.public_key.n)
        return object_array(ints, encrypted.shape)

    def decrypt(self, private_key: PrivateKey, encrypted: EncryptedArray) -> np.ndarray:
        """``decrypt(private_key, encrypted)``, across the workers."""
        return Encoding.decode(self.decrypt_encoded(private_key, encrypted), encrypted.exponent)

    def matvec(
        self, matrix: Any, vector: EncryptedArray, *, method: str = "auto"
    ) -> EncryptedArray:
        """``matrix @ vector`` (see ``arrays.matvec``) spread over the workers: one job per
        worker, each with some of the rows, or with some of the ciphertexts and every row
        (then the partial products are multiplied here), whichever the cost model of
        ``multiexp.split_across`` finds faster. Extra jobs would each tabulate or square
        again, so there are no more jobs than workers."""
        return matvec_with(matrix, vector, lambda rows: self._multiexp(vector, rows, method))

    def _multiexp(self, vector: EncryptedArray, rows: list[list[int]], method: str) -> list[Any]:
        nsq, width = vector.public_key.nsq, vector.public_key.ciphertext_bytes
        cts = vector.ciphertext_list()
        parts = min(self.workers, max(len(rows), len(cts)))
        how = (
            split_across(len(rows), len(cts), exponent_bits(rows), parts)
            if method in ("auto", "subsets")
            else "rows"  # one product per row: cutting the terms would only add folds
        )
        if how == "rows":  # every job all the ciphertexts, some of the rows
            every = join_rows(cts, width)
            jobs = [(every, rows[a:b]) for a, b in _even_spans(len(rows), parts)]
        else:  # every job some of the ciphertexts, every row: partial products
            spans = _even_spans(len(cts), parts)
            jobs = [(join_rows(cts[a:b], width), [r[a:b] for r in rows]) for a, b in spans]
        futures = [
            self._submit(_multiexp_task, int(nsq), data, width, part, method) for data, part in jobs
        ]
        results = [split_rows(f.result(), width) for f in futures]
        if how == "rows":
            return [v for result in results for v in result]
        out = results[0]
        for partial in results[1:]:
            out = [u * v % nsq for u, v in zip(out, partial, strict=True)]
        return out

    def rmatvec(
        self, matrix: Any, vector: EncryptedArray, *, method: str = "auto"
    ) -> EncryptedArray:
        """``matrix.T @ vector``: the encrypted gradient ``X^T [[d]]`` across the workers."""
        x = np.asarray(matrix)
        return self.matvec(x.T if x.ndim == 2 else x, vector, method=method)


def _even_spans(total: int, parts: int) -> list[tuple[int, int]]:
    """``[a, b)`` spans cutting ``range(total)`` into at most ``parts`` pieces of equal size
    (the last one possibly shorter)."""
    parts = min(total, parts)
    if parts <= 0:
        return []
    step = -(-total // parts)
    return [(i, min(i + step, total)) for i in range(0, total, step)]


# ----- tasks run in the worker processes ----------------------------------------------
@functools.lru_cache(maxsize=4)
def _fixed_base(n: int) -> FixedBase:
    """This process's fixed-base table for ``n``: built on its first task for the key (about
    0.2 s at 2048 bits), then drawn from by every later one. Worker processes belong to one
    party, so the table's secret base never serves anyone else."""
    return FixedBase(n)


def _obfuscators_task(n: int, count: int, width: int, method: str) -> bytes:
    if method == "fixed-base":
        fixed = _fixed_base(n)
        return join_rows([fixed.draw() for _ in range(count)], width)
    return join_rows(fresh_obfuscators(PublicKey(n), count), width)


@functools.lru_cache(maxsize=4)
def _private_key(p: int, q: int) -> PrivateKey:
    """This process's key, with its CRT values (~3 ms at 2048 bits): made on its first
    task, kept for the later ones. Worker processes belong to the key's owner."""
    return PrivateKey(PublicKey(p * q), p, q)


def _decrypt_task(p: int, q: int, blob: bytes, width: int, out_width: int) -> bytes | None:
    try:
        return join_rows(_private_key(p, q).raw_decrypt(split_rows(blob, width)), out_width)
    except InvalidCiphertext:
        return None


def _multiexp_task(nsq: int, blob: bytes, width: int, rows: list[list[int]], method: str) -> bytes:
    bases = split_rows(blob, width)
    return join_rows(multiexp_rows(bases, rows, gmpy2().mpz(nsq), method=method), width)
