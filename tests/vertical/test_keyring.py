"""A party's keyring: with worker processes, the next step's obfuscators are made while the
party waits; every encryption still decrypts to what was encrypted."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("gmpy2")

from consortium.privacy.paillier import PaillierKeypair
from consortium.vertical.encrypted import Keyring
from consortium.vertical.settings import PaillierSettings


@pytest.mark.parametrize("workers", [0, 1])
def test_each_step_leaves_the_next_steps_obfuscators_in_the_making(workers):
    keys = PaillierKeypair.generate(512, allow_small=True)
    ring = Keyring(keys.public_key, PaillierSettings(key_bits=512, workers=workers))
    try:
        for step in range(3):
            values = np.linspace(-1, 1, 7) * (step + 1)
            enc = ring.encrypt(values)
            np.testing.assert_allclose(keys.private_key.decrypt(enc), values, atol=1e-9)
            ahead = len(ring.pool) + ring.pool.pending
            assert ahead == (7 if workers else 0)
    finally:
        ring.close()
    assert len(ring.pool) == 0 and ring.pool.pending == 0
