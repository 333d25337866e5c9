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


def test_invalid_ciphertexts_are_refused_in_workers(keys, parallel):
    p, _ = keys.private_key.primes
    good = keys.public_key.encrypt([1.0, 2.0, 3.0]).ciphertext_list()
    forged = EncryptedArray(keys.public_key, object_array([*good, gmpy2.mpz(p)], (4,)), exponent=32)
    with pytest.raises(InvalidCiphertext):
        parallel.decrypt(keys.private_key, forged)
    other = PaillierKeypair.generate(512, allow_small=True)
    with pytest.raises(InvalidCiphertext):
        parallel.decrypt(other.private_key, keys.public_key.encrypt([1.0]))
