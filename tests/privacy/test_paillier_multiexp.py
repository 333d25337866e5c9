"""Multi-exponentiation against the plain product of Python's own modular powers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

gmpy2 = pytest.importorskip("gmpy2")

from consortium.privacy.paillier.multiexp import (  # noqa: E402
    MULTIEXP_METHODS,
    best_group,
    best_window,
    cheaper_method,
    exponent_bits,
    multiexp,
    multiexp_rows,
    naive_multiexp,
    split_across,
    subset_multiexp_rows,
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
    for method in MULTIEXP_METHODS:
        assert multiexp_rows(bases, rows, MODULUS, method=method) == expected


@given(st.lists(units, min_size=1, max_size=30), st.data(), st.sampled_from([None, 1, 2, 3, 7]))
@settings(max_examples=60, deadline=None)
def test_subsets_equal_the_plain_product(bases, data, group):
    sign = data.draw(st.sampled_from([-1, 0]))  # non-negative rows or signed ones
    bound = 2 ** data.draw(st.integers(0, 70))
    rows = data.draw(
        st.lists(
            st.lists(st.integers(sign * bound, bound), min_size=len(bases), max_size=len(bases)),
            min_size=1,
            max_size=5,
        )
    )
    expected = [oracle(bases, row, MODULUS) for row in rows]
    assert subset_multiexp_rows(bases, rows, MODULUS, group=group) == expected


def test_subsets_in_blocks_and_row_chunks():
    """More bases than one block of tables holds, and rows unpacked a few at a time."""
    rng = __import__("random").Random(7)
    bases = [gmpy2.mpz(rng.randrange(2, MODULUS)) | 1 for _ in range(23)]
    bases = [b for b in bases if math.gcd(int(b), MODULUS) == 1]
    rows = [[rng.randint(-(2**33), 2**33) for _ in bases] for _ in range(9)]
    expected = [oracle(bases, row, MODULUS) for row in rows]
    for group in (1, 2, 3):
        got = subset_multiexp_rows(
            bases, rows, MODULUS, group=group, table_entries=8, digit_bytes=64
        )
        assert got == expected


def test_zero_and_sparse_exponents():
    bases = [gmpy2.mpz(3), gmpy2.mpz(5), gmpy2.mpz(7)]
    assert multiexp(bases, [0, 0, 0], MODULUS) == 1
    assert multiexp(bases, [0, 1, 0], MODULUS) == 5
    assert multiexp(bases, [2**64, 0, -1], MODULUS) == oracle(bases, [2**64, 0, -1], MODULUS)
    assert multiexp([], [], MODULUS) == 1
    assert subset_multiexp_rows(bases, [[0, 0, 0], [0, 1, 0]], MODULUS) == [1, 5]
    assert subset_multiexp_rows([], [[], []], MODULUS) == [1, 1]
    assert subset_multiexp_rows(bases, [], MODULUS) == []


def test_window_choice_and_errors():
    assert best_window(1, 40) <= best_window(1000, 40) <= best_window(100_000, 40)
    assert 5 <= best_window(1000, 40) <= 8
    with pytest.raises(ValueError):
        multiexp([gmpy2.mpz(3)], [5], MODULUS, window=0)
    with pytest.raises(ValueError):
        multiexp([gmpy2.mpz(3)], [5, 6], MODULUS)
    with pytest.raises(ValueError, match="method"):
        multiexp_rows([gmpy2.mpz(3)], [[1]], MODULUS, method="fast")
    with pytest.raises(ValueError, match="exponents"):
        multiexp_rows([gmpy2.mpz(3)], [[1, 2]], MODULUS)
    with pytest.raises(ValueError, match="group"):
        subset_multiexp_rows([gmpy2.mpz(3)], [[1]], MODULUS, group=0)


def test_the_cost_models_pick_sensible_shapes():
    # many rows share one table: larger groups pay off
    assert best_group(1, 250, 35) <= best_group(100, 250, 35)
    assert 6 <= best_group(100, 250, 35) <= 12
    # the protocol's shape (a few dozen feature rows over a batch of 250): subsets win
    assert cheaper_method(250, [[2**34, -(2**34)] * 125] * 34) == "subsets"
    # one row: the buckets' single fold is cheaper than tabulating subsets
    assert cheaper_method(1000, [[2**40] * 1000]) == "buckets"


def test_exponent_bits_count_the_sign_offset():
    assert exponent_bits([]) == exponent_bits([[0, 0]]) == 0
    assert exponent_bits([[5, 3], [1, 0]]) == 3
    assert exponent_bits([[5, -3], [1, 0]]) == 4  # the offset that makes them positive
    assert exponent_bits([[-(2**34)]]) == 36


def test_jobs_run_at_once_split_where_their_longest_is_cheapest():
    # the protocol's shape: a few dozen rows over a batch's 250 ciphertexts: every job
    # tabulating all 250 costs more than every job squaring for all rows
    assert split_across(34, 250, 36, 2) == "terms"
    # one row cannot be cut by rows
    assert split_across(1, 1000, 40, 4) == "terms"
    # many rows over a few bases: tables are cheap, squarings are not
    assert split_across(1000, 8, 40, 4) == "rows"
    assert split_across(34, 250, 36, 1) == split_across(0, 250, 36, 2) == "rows"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.integers(-(2**70), 2**70), max_size=6), max_size=5))
def test_exponent_bits_is_the_widest_magnitude_plus_the_sign(rows):
    values = [e for row in rows for e in row]
    top = max((abs(e) for e in values), default=0)
    expected = top.bit_length() + (any(e < 0 for e in values) and top > 0)
    assert exponent_bits(rows) == expected
    assert exponent_bits([np.array(row, dtype=object) for row in rows]) == expected
