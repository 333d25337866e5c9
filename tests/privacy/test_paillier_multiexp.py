"""Multi-exponentiation against the plain product of Python's own modular powers."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

gmpy2 = pytest.importorskip("gmpy2")

from consortium.privacy.paillier.multiexp import (  # noqa: E402
    best_window,
    multiexp,
    multiexp_rows,
    naive_multiexp,
)

# n^2 for n = 1000003 * 999983, small enough for fast examples.
MODULUS = (1000003 * 999983) ** 2


def oracle(bases, exps, m):
    acc = 1
    for b, e in zip(bases, exps, strict=True):
        acc = acc * pow(int(b), e, m) % m  # Python inverts for negative exponents
    return acc


units = st.integers(2, MODULUS - 1).filter(lambda b: math.gcd(b, MODULUS) == 1)


@given(
    st.lists(st.tuples(units, st.integers(-(2**70), 2**70)), min_size=0, max_size=40),
    st.sampled_from([None, 1, 2, 3, 5, 8]),
)
@settings(max_examples=80, deadline=None)
def test_buckets_equal_the_plain_product(pairs, window):
    bases = [gmpy2.mpz(b) for b, _ in pairs]
    exps = [e for _, e in pairs]
    expected = oracle(bases, exps, MODULUS)
    assert multiexp(bases, exps, MODULUS, window=window) == expected
    assert naive_multiexp(bases, exps, MODULUS) == expected


@given(st.lists(units, min_size=1, max_size=20), st.data())
@settings(max_examples=30, deadline=None)
def test_rows_share_their_bases(bases, data):
    rows = data.draw(
        st.lists(
            st.lists(st.integers(-(2**40), 2**40), min_size=len(bases), max_size=len(bases)),
            min_size=1,
            max_size=4,
        )
    )
    expected = [oracle(bases, row, MODULUS) for row in rows]
    assert multiexp_rows(bases, rows, MODULUS) == expected
    assert multiexp_rows(bases, rows, MODULUS, method="naive") == expected


def test_zero_and_sparse_exponents():
    bases = [gmpy2.mpz(3), gmpy2.mpz(5), gmpy2.mpz(7)]
    assert multiexp(bases, [0, 0, 0], MODULUS) == 1
    assert multiexp(bases, [0, 1, 0], MODULUS) == 5
    assert multiexp(bases, [2**64, 0, -1], MODULUS) == oracle(bases, [2**64, 0, -1], MODULUS)
    assert multiexp([], [], MODULUS) == 1


def test_window_choice_and_errors():
    assert best_window(1, 40) <= best_window(1000, 40) <= best_window(100_000, 40)
    assert 5 <= best_window(1000, 40) <= 8
    with pytest.raises(ValueError):
        multiexp([gmpy2.mpz(3)], [5], MODULUS, window=0)
    with pytest.raises(ValueError):
        multiexp([gmpy2.mpz(3)], [5, 6], MODULUS)
    with pytest.raises(ValueError, match="method"):
        multiexp_rows([gmpy2.mpz(3)], [[1]], MODULUS, method="fast")
