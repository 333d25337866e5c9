"""Worker processes give the same results as the serial code."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import threading
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np
import pytest

gmpy2 = pytest.importorskip("gmpy2")

from consortium.privacy.paillier import (  # noqa: E402
    InvalidCiphertext,
    ObfuscatorPool,
    PaillierKeypair,
    ParallelPaillier,
    decrypt,
    decrypt_residues,
    encrypt,
)
from consortium.privacy.paillier.arrays import EncryptedArray  # noqa: E402
from consortium.privacy.paillier.encoding import object_array  # noqa: E402
from consortium.privacy.paillier.rows import join_rows  # noqa: E402


@pytest.fixture(scope="module")
def keys():
    return PaillierKeypair.generate(512, allow_small=True)


@pytest.fixture(scope="module")
def parallel():
    with ParallelPaillier(workers=2, chunks_per_worker=2) as par:
        yield par


def test_matrix_products_are_identical_to_serial(keys, parallel):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 5))
    d = encrypt(keys.public_key, rng.normal(size=40))
    serial = d @ X
    for method in ("buckets", "naive"):
        par = parallel.rmatvec(X, d, method=method)
        assert par.ciphertext_list() == serial.ciphertext_list()
        assert (par.exponent, par.bound, par.shape) == (serial.exponent, serial.bound, serial.shape)
    assert parallel.matvec(X.T, d).ciphertext_list() == serial.ciphertext_list()


@pytest.mark.parametrize("split", ["rows", "terms"])
def test_products_split_either_way_are_identical_to_serial(keys, parallel, monkeypatch, split):
    """Jobs with some of the rows, or with some of the ciphertexts and every row (the
    partial products multiplied after): the same residues as one serial product."""
    from consortium.privacy.paillier import pool as pool_module

    picked = []

    def forced(*args):
        picked.append(args)
        return split

    monkeypatch.setattr(pool_module, "split_across", forced)
    rng = np.random.default_rng(2)
    X = rng.normal(size=(9, 7))
    d = encrypt(keys.public_key, rng.normal(size=9))
    serial = d @ X
    got = parallel.rmatvec(X, d)
    assert picked and got.ciphertext_list() == serial.ciphertext_list()
    assert (got.exponent, got.bound, got.shape) == (serial.exponent, serial.bound, serial.shape)


def test_decryption_is_identical_to_serial(keys, parallel):
    x = np.linspace(-5, 5, 23).reshape(23, 1)
    enc = encrypt(keys.public_key, x)
    np.testing.assert_array_equal(
        parallel.decrypt(keys.private_key, enc), decrypt(keys.private_key, enc)
    )
    assert (
        parallel.decrypt_residues(keys.private_key, enc).tolist()
        == decrypt_residues(keys.private_key, enc).tolist()
    )


def test_encryption_and_obfuscators_in_workers(keys, parallel):
    x = np.arange(9.0) - 4
    enc = parallel.encrypt(keys.public_key, x)
    np.testing.assert_array_equal(decrypt(keys.private_key, enc), x)
    pool = ObfuscatorPool(keys.public_key, size=6, parallel=parallel)
    values = pool.take(6)
    p, q = keys.private_key.primes
    assert len({int(v) for v in values}) == 6
    assert all(pow(int(v), (p - 1) * (q - 1), int(keys.public_key.nsq)) == 1 for v in values)


def test_obfuscators_made_in_the_background_are_valid_and_taken_once(keys, parallel):
    p, q = keys.private_key.primes
    phi, nsq = (p - 1) * (q - 1), int(keys.public_key.nsq)
    pool = ObfuscatorPool(keys.public_key)
    pool.fill(10, parallel=parallel, wait=False)  # returns before they exist
    assert len(pool) + pool.pending == 10
    first = pool.take(3)  # waits only for the chunks it needs
    assert len(pool) + pool.pending == 7
    rest = pool.take(9)  # the 7 from the workers, 2 computed on the spot
    assert len(pool) == 0 and pool.pending == 0
    values = [int(v) for v in first + rest]
    assert len(set(values)) == 12
    assert all(pow(v, phi, nsq) == 1 for v in values)
    pool.fill(8, parallel=parallel, wait=False)
    pool.clear()  # drops what is in the making too
    assert len(pool) == 0 and pool.pending == 0
    with pytest.raises(ValueError, match="worker processes"):
        pool.fill(2, wait=False)


def _is_nth_residue_unit(keys, values):
    p, q = keys.private_key.primes
    phi, nsq = (p - 1) * (q - 1), int(keys.public_key.nsq)
    return all(pow(int(v), phi, nsq) == 1 for v in values)


def test_obfuscators_lost_with_a_dead_worker_are_computed_here(keys, caplog):
    ex = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    try:
        ex.submit(os._exit, 1)  # runs first, in the only worker: the pool breaks
        pool = ObfuscatorPool(keys.public_key)
        pool.fill(6, parallel=ParallelPaillier(executor=ex), wait=False)
        assert pool.pending == 6
        with caplog.at_level(logging.WARNING):
            values = pool.take(6)  # no BrokenProcessPool: the chunks are made here
    finally:
        ex.shutdown()
    assert len({int(v) for v in values}) == 6 and _is_nth_residue_unit(keys, values)
    assert pool.pending == 0 and "lost" in caplog.text


def test_an_owned_worker_pool_found_broken_is_replaced(keys):
    before = set(multiprocessing.active_children())
    with ParallelPaillier(workers=1) as par:
        assert len(par.obfuscators(keys.public_key, 2)) == 2  # starts the pool
        (worker,) = set(multiprocessing.active_children()) - before
        worker.kill()  # as the kernel does to a worker out of memory
        worker.join()
        # a call that reaches the pool before it is found broken fails...
        with contextlib.suppress(BrokenProcessPool):
            par.obfuscators(keys.public_key, 1)
        values = par.obfuscators(keys.public_key, 3)  # ...the next one has a fresh pool
    assert len(values) == 3 and _is_nth_residue_unit(keys, values)


class _HandFedExecutor(Executor):
    """Hands out futures this test completes itself, and says when one is waited on."""

    def __init__(self) -> None:
        self.futures: list[Future] = []
        self.waited_on = threading.Event()

    def submit(self, fn, /, *args, **kwargs):
        waited_on = self.waited_on

        class _Signalling(Future):
            def result(self, timeout=None):
                waited_on.set()
                return super().result(timeout)

        future = _Signalling()
        future.set_running_or_notify_cancel()  # "running": clear() cannot cancel it
        self.futures.append(future)
        return future


def test_clear_while_a_take_waits_drops_the_chunk_it_waits_for(keys):
    hand = _HandFedExecutor()
    pool = ObfuscatorPool(keys.public_key)
    pool.fill(
        4, parallel=ParallelPaillier(executor=hand, workers=1, chunks_per_worker=1), wait=False
    )
    taken: list = []
    taker = threading.Thread(target=lambda: taken.extend(pool.take(2)))
    taker.start()
    assert hand.waited_on.wait(30)
    pool.clear()  # while the taker waits for the chunk
    width = keys.public_key.ciphertext_bytes
    cleared = ObfuscatorPool(keys.public_key, size=4).take(4)
    hand.futures[0].set_result(join_rows(cleared, width))
    taker.join(30)
    assert len(taken) == 2 and _is_nth_residue_unit(keys, taken)
    assert not {int(v) for v in taken} & {int(v) for v in cleared}  # made after the clear
    assert len(pool) == 0 and pool.pending == 0


def test_a_worker_builds_one_fixed_base_table_per_key(monkeypatch):
    """Worker tasks (here on a thread of this process) keep the fixed-base table of a key
    for their later tasks: one random base drawn for two calls, fresh exponents for each."""
    from consortium.privacy.paillier import primitives

    keys = PaillierKeypair.generate(512, allow_small=True)  # no table for it anywhere yet
    bases_drawn = []
    random_unit = primitives.random_unit
    monkeypatch.setattr(
        primitives, "random_unit", lambda n: bases_drawn.append(n) or random_unit(n)
    )
    with ThreadPoolExecutor(max_workers=1) as ex:
        par = ParallelPaillier(executor=ex, workers=1, chunks_per_worker=1)
        one = par.obfuscators(keys.public_key, 3, method="fixed-base")
        two = par.obfuscators(keys.public_key, 3, method="fixed-base")
    assert bases_drawn == [keys.public_key.n]
    assert len({int(v) for v in one + two}) == 6  # fresh exponents every time
    assert _is_nth_residue_unit(keys, one + two)


def test_invalid_ciphertexts_are_refused_in_workers(keys, parallel):
    p, _ = keys.private_key.primes
    good = encrypt(keys.public_key, [1.0, 2.0, 3.0]).ciphertext_list()
    forged = EncryptedArray(keys.public_key, object_array([*good, gmpy2.mpz(p)], (4,)), exponent=32)
    with pytest.raises(InvalidCiphertext):
        parallel.decrypt(keys.private_key, forged)
    other = PaillierKeypair.generate(512, allow_small=True)
    with pytest.raises(InvalidCiphertext):
        parallel.decrypt(other.private_key, encrypt(keys.public_key, [1.0]))
