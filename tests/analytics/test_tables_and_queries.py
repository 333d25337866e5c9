"""Tables are checked against their published schema when loaded; filters follow pandas'
semantics, missing values included."""

from __future__ import annotations

import numpy as np
import pytest

from consortium.analytics import Query, TableSpec, col, load_table
from consortium.errors import ConfigError
from consortium.jobs import parse_job

SPEC = TableSpec.model_validate(
    {
        "files": "t.csv",
        "columns": {
            "x": {"type": "float", "nullable": True},
            "n": {"type": "int"},
            "c": {"type": "category", "categories": ["a", "b", "c"], "nullable": True},
        },
    }
)
CSV = "x,n,c,ignored\n1.5,1,a,z\n,2,b,z\n-3,3,,z\n7,4,c,z\nnan,5,a,z\n2,6,b,z\n"


@pytest.fixture
def table(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(CSV)
    return load_table("t", SPEC, path)


def test_loading_encodes_missing_values_and_categories(table):
    assert table.n_rows == 6
    np.testing.assert_array_equal(np.isnan(table.columns["x"]), [0, 1, 0, 0, 1, 0])
    np.testing.assert_array_equal(table.columns["c"], [0, 1, -1, 2, 0, 1])
    assert "ignored" not in table.columns  # only the published columns are read


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x,n\n1,2\n", r"lacks the declared column\(s\) c"),
        ("x,n,c\n1,2,d\n", "row 1: 'd' is not one of the declared categories"),
        ("x,n,c\n1,2.5,a\n", "column 'n': row 1: '2.5' is not an integer"),
        ("x,n,c\nabc,2,a\n", "column 'x': row 1: 'abc' is not a number"),
        ("x,n,c\n1,2\n", "line 2 has 2 fields"),
        ("x,n,c\n1,2,a\n2,,b\n", "column 'n': row 2: a missing value; declare the column"),
        ("x,n,c\n1,2,a\n2,NaN,b\n", "column 'n': row 2: a missing value"),
    ],
)
def test_a_file_that_does_not_fit_the_schema_is_refused(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_table("t", SPEC, path)


def test_filters_follow_pandas(table, tmp_path):
    pd = pytest.importorskip("pandas")
    frame = pd.read_csv(tmp_path / "t.csv", dtype={"c": object})
    cases = [
        (col("x") > 1, frame.x > 1),
        (col("x") != 2, frame.x != 2),  # true for a missing x, as in pandas
        (col("c") == "a", frame.c == "a"),
        (col("c") != "a", frame.c != "a"),
        (col("x").between(-3, 2), frame.x.between(-3, 2)),
        (col("c").isin(["a", "c"]), frame.c.isin(["a", "c"])),
        (col("c").not_in(["a"]), ~frame.c.isin(["a"])),
        (col("x").is_null(), frame.x.isna()),
        (~col("c").is_null() & (col("n") >= 3), frame.c.notna() & (frame.n >= 3)),
        ((col("x") < 0) | (col("c") == "b"), (frame.x < 0) | (frame.c == "b")),
    ]
    for f, expected in cases:
        got = Query(table="t").filter(f).apply(table)
        np.testing.assert_array_equal(
            got.columns["n"], frame.n[expected].to_numpy(), err_msg=str(f)
        )


def test_filters_are_checked_against_the_schema():
    tables = {"t": SPEC}
    for f, message in [
        (col("y") > 1, "column 'y' is not in table 't'"),
        (col("c") > "a", "only == and != compare it"),
        (col("c").isin(["q"]), "not among the categories"),
        (col("x") == "a", "numeric; compare it with numbers"),
        (col("c").between(1, 2), "has no range"),
    ]:
        with pytest.raises(ValueError, match=message):
            Query(table="t").filter(f).check(tables)


def test_a_missing_file_names_the_party(tmp_path, job_dict):
    job = parse_job(
        job_dict(
            [
                {
                    "step": "parallel",
                    "operation": {"name": "count", "args": {"query": {"table": "patients"}}},
                }
            ]
        )
    )
    bad = job.algorithm.tables["patients"].model_copy(
        update={"files": str(tmp_path / "none_{index}.csv")}
    )
    settings = job.algorithm.model_copy(update={"tables": {"patients": bad}})
    from dataclasses import replace

    from consortium.jobs import bind_data

    with pytest.raises(
        ConfigError, match=r"algorithm.tables.patients: party worker-1: .*no such file"
    ):
        bind_data(replace(job, algorithm=settings), ["worker-1"])
