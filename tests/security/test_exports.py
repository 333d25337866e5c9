"""``consortium.security`` lists exactly its public names (ruff keeps ``__all__`` sorted)."""

from __future__ import annotations

import sys

import consortium.security as security


def test_all_lists_exactly_the_public_names():
    public = {
        name
        for name, value in vars(security).items()
        if not name.startswith("_") and not isinstance(value, type(sys)) and name != "annotations"
    }
    assert set(security.__all__) == public
    assert len(security.__all__) == len(public)
