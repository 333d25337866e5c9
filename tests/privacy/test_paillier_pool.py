"""Worker processes give the same results as the serial code."""

from __future__ import annotations

import numpy as np
import pytest

gmpy2 = pytest.importorskip("gmpy2")

from consortium.privacy.paillier import (  # noqa: E402
    InvalidCiphertext,
    ObfuscatorPool,
    PaillierKeypair,
    ParallelPaillier,
)
from consortium.privacy.paillier.arrays import EncryptedArray  # noqa: E402
from consortium.privacy.paillier.encoding import object_array  # noqa: E402


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
    d = keys.public_key.encrypt(rng.normal(size=40))
    serial = d @ X
    for method in ("buckets", "naive"):
        par = parallel.rmatvec(X, d, method=method)
        assert par.ciphertext_list() == serial.ciphertext_list()
        assert (par.exponent, par.bound, par.shape) == (serial.exponent, serial.bound, serial.shape)
    assert parallel.matvec(X.T, d).ciphertext_list() == serial.ciphertext_list()


def test_decryption_is_identical_to_serial(keys, parallel):
    x = np.linspace(-5, 5, 23).reshape(23, 1)
    enc = keys.public_key.encrypt(x)
    np.testing.assert_array_equal(
        parallel.decrypt(keys.private_key, enc), keys.private_key.decrypt(enc)
    )
    assert (
        parallel.decrypt_residues(keys.private_key, enc).tolist()
        == keys.private_key.decrypt_residues(enc).tolist()
    )


def test_encryption_and_obfuscators_in_workers(keys, parallel):
    x = np.arange(9.0) - 4
    enc = parallel.encrypt(keys.public_key, x)
    np.testing.assert_array_equal(keys.private_key.decrypt(enc), x)
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


def test_a_worker_builds_one_fixed_base_table_per_key(keys):
    from consortium.privacy.paillier import _worker

    n, width = int(keys.public_key.n), keys.public_key.ciphertext_bytes
    _worker._fixed_base.cache_clear()
    one = _worker._split(_worker.obfuscators_task(n, 3, width, "fixed-base"), width)
    two = _worker._split(_worker.obfuscators_task(n, 3, width, "fixed-base"), width)
    info = _worker._fixed_base.cache_info()
    assert (info.misses, info.hits) == (1, 1)
    assert len({int(v) for v in one + two}) == 6  # fresh exponents every time


def test_invalid_ciphertexts_are_refused_in_workers(keys, parallel):
    p, _ = keys.private_key.primes
    good = keys.public_key.encrypt([1.0, 2.0, 3.0]).ciphertext_list()
    forged = EncryptedArray(keys.public_key, object_array([*good, gmpy2.mpz(p)], (4,)), exponent=32)
    with pytest.raises(InvalidCiphertext):
        parallel.decrypt(keys.private_key, forged)
    other = PaillierKeypair.generate(512, allow_small=True)
    with pytest.raises(InvalidCiphertext):
        parallel.decrypt(other.private_key, keys.public_key.encrypt([1.0]))
