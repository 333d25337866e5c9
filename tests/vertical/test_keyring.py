"""A party's keyring: with worker processes, the next step's obfuscators are made while the
party waits; every encryption still decrypts to what was encrypted."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("gmpy2")

from consortium.errors import RunFailed
from consortium.privacy.paillier import EncryptedArray, PaillierKeypair, decrypt, encrypt
from consortium.vertical.encrypted import (
    VALUE_LIMIT_BITS,
    Keyring,
    residual_bound,
    scaled_residual,
)
from consortium.vertical.settings import PaillierSettings


@pytest.mark.parametrize("workers", [0, 1])
def test_each_step_leaves_the_next_steps_obfuscators_in_the_making(workers):
    keys = PaillierKeypair.generate(512, allow_small=True)
    ring = Keyring(keys.public_key, PaillierSettings(key_bits=512, workers=workers))
    try:
        for step in range(3):
            values = np.linspace(-1, 1, 7) * (step + 1)
            enc = ring.encrypt(values)
            np.testing.assert_allclose(decrypt(keys.private_key, enc), values, atol=1e-9)
            ahead = len(ring.pool) + ring.pool.pending
            assert ahead == (7 if workers else 0)
    finally:
        ring.close()
    assert len(ring.pool) == 0 and ring.pool.pending == 0


def test_partial_outputs_beyond_the_public_limit_are_refused_before_encryption():
    keys = PaillierKeypair.generate(512, allow_small=True)
    ring = Keyring(keys.public_key, PaillierSettings(key_bits=512, workers=0))
    limit = 2.0**VALUE_LIMIT_BITS
    enc = ring.encrypt(np.array([limit, -limit]))  # at the limit: allowed
    assert enc.bound == ring.limit
    for bad in ([np.nextafter(limit, np.inf)], [-limit * 2], [np.nan], [np.inf]):
        with pytest.raises(RunFailed, match=r"exceeds 2\^62"):
            ring.encrypt(np.array(bad))
    assert len(ring.pool) == 0  # nothing was drawn for the refused ones


def test_the_announced_residual_bound_covers_every_link():
    """The bound ``scaled_residual``'s arithmetic proves for outputs at the public limit
    (what the master checks) stays within residual_bound, for any number of parties; and
    so do the values at every corner (each output and target at +-the limit)."""
    import itertools

    keys = PaillierKeypair.generate(512, allow_small=True)
    precision, limit = 32, 1 << (VALUE_LIMIT_BITS + 32)
    one = 1 << precision
    for task, k in (
        ("regression", 1),
        ("classification", 1),
        ("classification", 3),
        ("classification", 5),
    ):
        for parties in (1, 2, 5, 12, 40):
            bound = residual_bound(task, k, parties, precision)
            zeros = encrypt(keys.public_key, np.zeros((4, k)))
            z = EncryptedArray(
                keys.public_key, zeros.ciphertexts, exponent=precision, bound=parties * limit
            )
            y = np.array([0.0, 1.0, 2.0**VALUE_LIMIT_BITS, -(2.0**VALUE_LIMIT_BITS)])
            labels = y if task == "regression" else np.arange(4) % max(k, 2)
            sd, _ = scaled_residual(z, labels, task=task, n_outputs=k)
            assert sd.bound <= bound, (task, k, parties)
            worst = 0
            for signs in itertools.product((-1, 1), repeat=k):
                z_ = [sign * parties * limit for sign in signs]
                if task == "regression":
                    sds = [z_[0] - t for t in (-limit, limit)]
                elif k == 1:
                    sds = [z_[0] + (2 - 4 * label) * one for label in (0, 1)]
                else:
                    sds = [
                        k * z_[j] - sum(z_) + (k - k * k * (label == j)) * one
                        for label in range(k)
                        for j in range(k)
                    ]
                worst = max(worst, *(abs(v) for v in sds))
            assert worst <= bound, (task, k, parties)
