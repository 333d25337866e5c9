"""Fixed-width byte rows against Python's own big-endian conversion."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("gmpy2")

from consortium.privacy.paillier.rows import join_rows, split_rows


@given(st.integers(1, 40), st.data())
def test_rows_round_trip_and_match_int_to_bytes(width, data):
    values = data.draw(st.lists(st.integers(0, 2 ** (8 * width) - 1), max_size=8))
    blob = join_rows(values, width)
    assert blob == b"".join(v.to_bytes(width, "big") for v in values)
    assert [int(v) for v in split_rows(blob, width)] == values


def test_a_value_wider_than_its_row_is_refused():
    with pytest.raises(OverflowError):
        join_rows([256], 1)
