"""Homomorphic arithmetic on encrypted arrays against the same arithmetic on plaintexts.

Integer inputs make every oracle exact: the decrypted encoded integers must equal the
plaintext computation on the encoded integers, bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

gmpy2 = pytest.importorskip("gmpy2")

from consortium.privacy.paillier import (  # noqa: E402
    Encoding,
    EncryptedArray,
    PaillierKeypair,
    decrypt,
    decrypt_encoded,
    encrypt,
    matvec,
    rmatvec,
)


@pytest.fixture(scope="module")
def keys():
    return PaillierKeypair.generate(512, allow_small=True)


P = 16  # fractional bits in these tests
ints = st.integers(-(2**40), 2**40)
vectors = st.lists(ints, min_size=1, max_size=6)


def encoded(values, precision=P):
    return [v << precision for v in values]


def enc(keys, values, precision=P) -> EncryptedArray:
    return encrypt(keys.public_key, np.asarray(values, dtype=object), encoding=Encoding(precision))


def dec(keys, e: EncryptedArray) -> list[int]:
    return decrypt_encoded(keys.private_key, e).ravel().tolist()


@given(st.data())
@settings(max_examples=30, deadline=None)
def test_add_sub_neg(keys, data):
    a = data.draw(vectors)
    b = data.draw(st.lists(ints, min_size=len(a), max_size=len(a)))
    ea, eb = enc(keys, a), enc(keys, b)
    assert dec(keys, ea + eb) == encoded([x + y for x, y in zip(a, b, strict=True)])
    assert dec(keys, ea - eb) == encoded([x - y for x, y in zip(a, b, strict=True)])
    assert dec(keys, -ea) == encoded([-x for x in a])
    assert dec(keys, ea + np.asarray(b)) == encoded([x + y for x, y in zip(a, b, strict=True)])
    assert dec(keys, np.asarray(b) - ea) == encoded([y - x for x, y in zip(a, b, strict=True)])
    assert dec(keys, ea.sum()) == [sum(a) << P]


@given(vectors, st.integers(-(2**30), 2**30))
@settings(max_examples=30, deadline=None)
def test_multiplication_by_integer_scalars_and_arrays(keys, a, k):
    ea = enc(keys, a)
    assert dec(keys, ea * k) == encoded([x * k for x in a])
    ks = [k + i for i in range(len(a))]
    assert dec(keys, ea * np.asarray(ks)) == encoded([x * y for x, y in zip(a, ks, strict=True)])
    assert (ea * k).exponent == P


@given(st.lists(st.floats(-1e4, 1e4), min_size=1, max_size=5), st.floats(-1e3, 1e3))
@settings(max_examples=30, deadline=None)
def test_multiplication_by_floats_adds_exponents(keys, xs, y):
    code = Encoding(P)
    ea = encrypt(keys.public_key, xs, encoding=code)
    prod = ea * y
    assert prod.exponent == 2 * P
    expected = [int(v) * int(code.encode(y)) for v in code.encode(xs).tolist()]
    assert dec(keys, prod) == expected
    # each factor is rounded to 2^-(P+1): the product is off by at most the cross terms
    x = np.asarray(xs)
    bound = (np.abs(x) + abs(y)) * 2.0 ** -(P + 1) + 2.0 ** -(2 * P + 2)
    assert np.all(
        np.abs(decrypt(keys.private_key, prod) - x * y)
        <= bound * (1 + 1e-9) + 1e-12 * np.abs(x * y)
    )


@given(st.data())
@settings(max_examples=20, deadline=None)
def test_matrix_products_equal_integer_dot_products(keys, data):
    rows = data.draw(st.integers(1, 5))
    cols = data.draw(st.integers(1, 4))
    d = data.draw(st.lists(ints, min_size=rows, max_size=rows))
    X = data.draw(
        st.lists(
            st.lists(st.integers(-(2**20), 2**20), min_size=cols, max_size=cols),
            min_size=rows,
            max_size=rows,
        )
    )
    Xa = np.asarray(X, dtype=np.int64)
    ed = enc(keys, d)
    expected = [sum(X[i][j] * d[i] for i in range(rows)) << P for j in range(cols)]  # X^T d
    assert dec(keys, ed @ Xa) == expected
    assert dec(keys, Xa.T @ ed) == expected
    assert dec(keys, rmatvec(Xa, ed, method="naive")) == expected
    assert dec(keys, matvec(Xa.T, ed)) == expected
    assert dec(keys, Xa[:, 0] @ ed) == [expected[0]]


def test_float_matrix_product(keys):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 4))
    d = rng.normal(size=30)
    ed = encrypt(keys.public_key, d)
    g = ed @ X
    assert g.shape == (4,) and g.exponent == 64
    np.testing.assert_allclose(decrypt(keys.private_key, g), X.T @ d, atol=1e-7)


def test_exponents_are_aligned_before_adding(keys):
    a = encrypt(keys.public_key, [1.5, -2.0], encoding=Encoding(4))
    b = encrypt(keys.public_key, [0.125, 0.0625], encoding=Encoding(20))
    s = a + b
    assert s.exponent == 20
    assert decrypt(keys.private_key, s).tolist() == [1.625, -1.9375]
    with pytest.raises(ValueError):
        b.aligned(4)


def test_broadcasting_indexing_and_shapes(keys):
    x = np.arange(6, dtype=np.int64).reshape(2, 3)
    e = enc(keys, x.tolist())
    assert e.shape == (2, 3) and e.ndim == 2 and e.size == 6 and len(e) == 2
    assert dec(keys, e + np.array([1, 2, 3])) == encoded((x + np.array([1, 2, 3])).ravel().tolist())
    assert dec(keys, e * np.array([[2], [3]])) == encoded((x * [[2], [3]]).ravel().tolist())
    assert dec(keys, e[1]) == encoded([3, 4, 5])
    assert dec(keys, e[0] - np.array([5, 0, 1], dtype=np.uint8)) == encoded([-5, 1, 1])
    assert dec(keys, np.float64(2.0) * e[0, 1]) == [2 << (2 * P)]
    assert dec(keys, e.sum(axis=0)) == encoded([3, 5, 7])
    assert dec(keys, e.sum(axis=1)) == encoded([3, 12])
    assert dec(keys, e.reshape(3, 2)[2]) == encoded([4, 5])
    assert e.ciphertexts.flags.writeable is False


def test_invalid_operations(keys):
    e = encrypt(keys.public_key, [1.0, 2.0])
    other = encrypt(PaillierKeypair.generate(512, allow_small=True).public_key, [1.0, 2.0])
    with pytest.raises(TypeError):
        e * e
    with pytest.raises(ValueError, match="different public keys"):
        e + other
    with pytest.raises(ValueError, match="align"):
        np.ones((3, 3)) @ e
    with pytest.raises(ValueError):
        e.sum().sum() @ np.ones(1)


def test_derived_results_are_marked_and_rerandomized(keys):
    e = encrypt(keys.public_key, [1.0, 2.0])
    assert not e.derived
    r = e * 3
    assert r.derived
    fresh = r.rerandomize()
    assert not fresh.derived
    assert fresh.ciphertext_list() != r.ciphertext_list()
    assert decrypt(keys.private_key, fresh).tolist() == [3.0, 6.0]
