"""Without DP, the federated estimators equal pandas on the pooled table: counts exactly,
means, variances and quantiles to 1e-9, group-by and filters included."""

from __future__ import annotations

import numpy as np
import pytest

pd = pytest.importorskip("pandas")

WHERE_OLD = [{"column": "age", "op": ">=", "value": 50}]
WHERE_MIXED = [
    {
        "op": "or",
        "of": [
            {"column": "sex", "op": "==", "value": "2"},
            {"column": "bmi", "op": "between", "value": [20, 25]},
        ],
    },
    {"op": "not", "of": {"column": "age_band", "op": "in", "value": ["under_40"]}},
    {"column": "bp", "op": "not_null"},
]


@pytest.fixture(scope="module")
def pooled(data_dir):
    frames = [
        pd.read_csv(data_dir / f"diabetes_{i}.csv", dtype={"sex": str, "age_band": str})
        for i in range(3)
    ]
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def results(tmp_path_factory, job_dict, step, run_analytics):
    q = {"table": "patients"}
    steps = [
        step("rows", "count", query=q),
        step("bmi_present", "count", query=q, column="bmi"),
        step("old", "count", query={"table": "patients", "where": WHERE_OLD}),
        step("mixed", "count", query={"table": "patients", "where": WHERE_MIXED}),
        step("bmi_sum", "sum", query=q, column="bmi"),
        step("bmi_mean", "mean", query=q, column="bmi"),
        step("mixed_mean", "mean", query={"table": "patients", "where": WHERE_MIXED}, column="s5"),
        step(
            "prog_var",
            "variance",
            query={"table": "patients", "where": WHERE_OLD},
            column="progression",
        ),
        step("s1_var0", "variance", query=q, column="s1", ddof=0),
        step("bp_q", "quantiles", query=q, column="bp", q=[0, 0.1, 0.25, 0.5, 0.9, 1]),
        step("s5_min", "min", query=q, column="s5"),
        step("s5_max", "max", query=q, column="s5"),
        step("by_band", "groupby", query=q, by="age_band"),
        step("prog_by_sex", "groupby", query=q, by="sex", column="progression"),
        step(
            "bmi_by_band",
            "groupby",
            query={"table": "patients", "where": WHERE_OLD},
            by="age_band",
            column="bmi",
        ),
        step("bmi_hist", "histogram", query=q, column="bmi", bins=7),
        step("s5_hist", "histogram", query=q, column="s5", edges=[3, 4, 4.5, 5, 6.5]),
    ]
    result, jobs = run_analytics(job_dict(steps), tmp_path_factory.mktemp("stats") / "run")
    assert result.ok, result.error
    return {k: v["result"] for k, v in jobs.items()}


def _mixed(df):
    return df[
        ((df.sex == "2") | df.bmi.between(20, 25)) & ~df.age_band.isin(["under_40"]) & df.bp.notna()
    ]


def test_counts_are_exact(results, pooled):
    assert results["rows"]["count"] == len(pooled)
    assert results["bmi_present"]["count"] == pooled.bmi.count()
    assert results["old"]["count"] == (pooled.age >= 50).sum()
    assert results["mixed"]["count"] == len(_mixed(pooled))


def test_sum_and_means(results, pooled):
    assert results["bmi_sum"]["sum"] == pytest.approx(pooled.bmi.sum(), rel=1e-12)
    assert results["bmi_mean"]["mean"] == pytest.approx(pooled.bmi.mean(), rel=1e-9, abs=1e-9)
    assert results["mixed_mean"]["mean"] == pytest.approx(_mixed(pooled).s5.mean(), rel=1e-9)


def test_variances(results, pooled):
    old = pooled[pooled.age >= 50]
    assert results["prog_var"]["variance"] == pytest.approx(old.progression.var(), rel=1e-9)
    assert results["prog_var"]["std"] == pytest.approx(old.progression.std(), rel=1e-9)
    assert results["s1_var0"]["variance"] == pytest.approx(pooled.s1.var(ddof=0), rel=1e-9)


def test_quantiles_min_max(results, pooled):
    qs = [0, 0.1, 0.25, 0.5, 0.9, 1]
    expected = pooled.bp.quantile(qs).to_numpy()
    np.testing.assert_allclose(results["bp_q"]["values"], expected, rtol=1e-12)
    assert results["s5_min"]["min"] == pooled.s5.min()
    assert results["s5_max"]["max"] == pooled.s5.max()


def test_groupby(results, pooled):
    counts = pooled.groupby("age_band").size()
    assert {k: v["count"] for k, v in results["by_band"]["groups"].items()} == counts.to_dict()
    means = pooled.groupby("sex").progression.mean()
    got = results["prog_by_sex"]["groups"]
    assert set(got) == set(means.index)
    for sex, mean in means.items():
        assert got[sex]["mean"] == pytest.approx(mean, rel=1e-9)
    old = pooled[pooled.age >= 50]
    bmi = old.groupby("age_band").bmi.agg(["count", "mean"])
    got = results["bmi_by_band"]["groups"]
    assert set(got) == set(bmi.index)  # under_40 has no rows here: absent, as in pandas
    for band, row in bmi.iterrows():
        assert got[band]["count"] == row["count"]
        assert got[band]["mean"] == pytest.approx(row["mean"], rel=1e-9)


def test_histograms(results, pooled):
    edges = np.linspace(15, 45, 8)
    counts, _ = np.histogram(pooled.bmi.dropna(), bins=edges)
    assert results["bmi_hist"]["counts"] == counts.tolist()
    np.testing.assert_allclose(results["bmi_hist"]["edges"], edges)
    binned = pd.cut(pooled.s5, [3, 4, 4.5, 5, 6.5], right=False).value_counts(sort=False)
    # numpy's last bin is closed on the right; no value equals 6.5 here
    assert results["s5_hist"]["counts"] == binned.tolist()
