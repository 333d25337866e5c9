"""Cross-checks against python-paillier (``phe``), used only here as an oracle.

Both use g = n + 1, so with the same key material the ciphertext arithmetic must agree
exactly: sums and products are unique group elements mod n^2.
"""

from __future__ import annotations

import numpy as np
import pytest

gmpy2 = pytest.importorskip("gmpy2")
phe = pytest.importorskip("phe")

from consortium.privacy.paillier import Encoding, PaillierKeypair, decrypt, encrypt  # noqa: E402


@pytest.fixture(scope="module")
def keys():
    return PaillierKeypair.generate(512, allow_small=True)


@pytest.fixture(scope="module")
def phe_keys(keys):
    p, q = keys.private_key.primes
    public = phe.PaillierPublicKey(int(keys.public_key.n))
    return public, phe.PaillierPrivateKey(public, p, q)


def ours(keys, values):
    return encrypt(keys.public_key, np.asarray(values, dtype=object), encoding=Encoding(0))


def test_each_decrypts_the_others_ciphertexts(keys, phe_keys):
    pub, priv = phe_keys
    values = [0, 1, 12345, -5]
    enc = encrypt(keys.public_key, np.asarray(values, dtype=object), encoding=Encoding(0))
    enc_residues = [v % int(keys.public_key.n) for v in values]
    assert [priv.raw_decrypt(int(c)) for c in enc.ciphertext_list()] == enc_residues
    theirs = [pub.raw_encrypt(m) for m in enc_residues]
    assert [int(m) for m in keys.private_key.raw_decrypt(theirs)] == enc_residues


def test_sums_and_products_match_phe_ciphertext_for_ciphertext(keys, phe_keys):
    pub, _ = phe_keys
    a, b = ours(keys, [3, -7, 11]), ours(keys, [5, 2, -4])

    def theirs(e):
        return [phe.EncryptedNumber(pub, int(c), 0) for c in e.ciphertext_list()]

    def cts(numbers):
        return [x.ciphertext(be_secure=False) for x in numbers]

    pa, pb = theirs(a), theirs(b)
    assert cts([x + y for x, y in zip(pa, pb, strict=True)]) == list(
        map(int, (a + b).ciphertext_list())
    )
    assert cts([x * -13 for x in pa]) == list(map(int, (a * -13).ciphertext_list()))
    assert cts([x * 9 for x in pa]) == list(map(int, (a * 9).ciphertext_list()))


def test_x_transpose_d_matches_phe(keys, phe_keys):
    pub, priv = phe_keys
    rng = np.random.default_rng(5)
    X = rng.integers(-1000, 1000, size=(12, 3))
    d = rng.integers(-(2**30), 2**30, size=12)
    enc_d = ours(keys, d.tolist())
    ours_grad = enc_d @ X
    their_d = [phe.EncryptedNumber(pub, int(c), 0) for c in enc_d.ciphertext_list()]
    their_grad = []
    for j in range(3):
        acc = their_d[0] * int(X[0, j])
        for i in range(1, 12):
            acc = acc + their_d[i] * int(X[i, j])
        their_grad.append(acc)
    assert [g.ciphertext(be_secure=False) for g in their_grad] == list(
        map(int, ours_grad.ciphertext_list())
    )
    assert [priv.decrypt(g) for g in their_grad] == (X.T @ d).tolist()


def test_float_values_agree_with_phe_decryption(keys, phe_keys):
    pub, priv = phe_keys
    x = [0.1, -2.5, 1234.5678]
    mine = encrypt(keys.public_key, x, encoding=Encoding(40))
    theirs = [pub.encrypt(v) for v in x]
    np.testing.assert_allclose(
        [priv.decrypt(t) for t in theirs], decrypt(keys.private_key, mine), rtol=0, atol=2.0**-40
    )
