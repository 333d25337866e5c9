"""Federated preprocessing fitted across three workers equals scikit-learn (and numpy)
fitted on the pooled table."""

from __future__ import annotations

import numpy as np
import pytest

pd = pytest.importorskip("pandas")
preprocessing = pytest.importorskip("sklearn.preprocessing")
impute = pytest.importorskip("sklearn.impute")

NUMERIC = ["alcohol", "magnesium", "proline", "hue"]


@pytest.fixture(scope="module")
def pooled(data_dir):
    return pd.concat([pd.read_csv(data_dir / f"wine_{i}.csv") for i in range(3)], ignore_index=True)


def _fit(tmp_path, job_dict, run_analytics, steps, where=()):
    query = {"table": "wine", "where": list(where)}
    job = job_dict(
        [
            {
                "id": "fit",
                "step": "parallel",
                "operation": {"name": "preprocess", "args": {"query": query, "steps": steps}},
            }
        ]
    )
    result, jobs = run_analytics(job, tmp_path / "run")
    assert result.ok, result.error
    return {k: np.array(v) for k, v in jobs["fit"]["result"]["params"].items()}


def test_standard_scaler_equals_sklearn_on_pooled_data(tmp_path, job_dict, run_analytics, pooled):
    params = _fit(
        tmp_path, job_dict, run_analytics, [{"kind": "standard_scaler", "columns": NUMERIC}]
    )
    oracle = preprocessing.StandardScaler().fit(pooled[NUMERIC].to_numpy())
    np.testing.assert_allclose(params["p0.mean"], oracle.mean_, rtol=1e-12)
    np.testing.assert_allclose(params["p0.scale"], oracle.scale_, rtol=1e-9)


def test_imputer_then_scaler_then_minmax(tmp_path, job_dict, run_analytics, pooled):
    steps = [
        {"kind": "imputer", "columns": ["magnesium"], "strategy": "median"},
        {"kind": "standard_scaler", "columns": ["magnesium", "proline"]},
        {"kind": "minmax_scaler", "columns": ["alcohol", "magnesium"], "feature_range": [-1, 1]},
    ]
    params = _fit(tmp_path, job_dict, run_analytics, steps)
    x = pooled[["magnesium", "proline"]].to_numpy()
    assert np.isnan(x[:, 0]).any()  # there is something to impute
    imputer = impute.SimpleImputer(strategy="median").fit(x[:, :1])
    assert params["p0.fill"][0] == imputer.statistics_[0]
    filled = np.column_stack([imputer.transform(x[:, :1])[:, 0], x[:, 1]])
    scaler = preprocessing.StandardScaler().fit(filled)
    np.testing.assert_allclose(params["p1.mean"], scaler.mean_, rtol=1e-12)
    np.testing.assert_allclose(params["p1.scale"], scaler.scale_, rtol=1e-9)
    scaled = np.column_stack([pooled.alcohol.to_numpy(), scaler.transform(filled)[:, 0]])
    minmax = preprocessing.MinMaxScaler(feature_range=(-1, 1)).fit(scaled)
    np.testing.assert_allclose(params["p2.min"], minmax.data_min_, rtol=1e-12)
    np.testing.assert_allclose(params["p2.max"], minmax.data_max_, rtol=1e-12)


def test_mean_and_most_frequent_imputers(tmp_path, job_dict, run_analytics, pooled):
    steps = [
        {"kind": "imputer", "columns": ["magnesium"], "strategy": "mean"},
        {"kind": "imputer", "columns": ["ash_level"], "strategy": "most_frequent"},
        {"kind": "imputer", "columns": ["hue"], "strategy": "constant", "fill_value": 1.5},
    ]
    params = _fit(tmp_path, job_dict, run_analytics, steps)
    assert params["p0.fill"][0] == pytest.approx(pooled.magnesium.mean(), rel=1e-12)
    mode = pooled.ash_level.value_counts().idxmax()
    assert ["low", "medium", "high"][int(params["p1.fill"][0])] == mode
    assert params["p2.fill"][0] == 1.5


def test_binning_uniform_equals_kbins_and_quantile_edges_equal_numpy(
    tmp_path, job_dict, run_analytics, pooled
):
    steps = [
        {"kind": "binning", "columns": ["alcohol", "proline"], "bins": 4, "strategy": "uniform"},
        {"kind": "binning", "columns": ["hue"], "bins": 3, "strategy": "quantile"},
    ]
    params = _fit(
        tmp_path,
        job_dict,
        run_analytics,
        steps,
        where=[{"column": "alcohol", "op": ">", "value": 12}],
    )
    rows = pooled[pooled.alcohol > 12]
    kbins = preprocessing.KBinsDiscretizer(n_bins=4, encode="ordinal", strategy="uniform")
    kbins.fit(rows[["alcohol", "proline"]].to_numpy())
    for j in range(2):
        np.testing.assert_allclose(params["p0.edges"][j], kbins.bin_edges_[j], rtol=1e-12)
    np.testing.assert_allclose(
        params["p1.edges"][0], np.quantile(rows.hue, np.linspace(0, 1, 4)), rtol=1e-12
    )


def test_pipeline_applied_locally_matches_sklearn_transform(data_dir, pooled):
    from consortium.analytics.preprocessing import PipelineArgs, apply_pipeline
    from consortium.analytics.tables import TableSpec, load_table

    spec = TableSpec.model_validate(
        {
            "files": "x",
            "columns": {
                "magnesium": {},
                "ash_level": {"type": "category", "categories": ["low", "medium", "high"]},
            },
        }
    )
    table = load_table("wine", spec, data_dir / "wine_1.csv")
    args = PipelineArgs.model_validate(
        {
            "query": {"table": "wine"},
            "steps": [
                {
                    "kind": "imputer",
                    "columns": ["magnesium"],
                    "strategy": "constant",
                    "fill_value": 100,
                },
                {"kind": "standard_scaler", "columns": ["magnesium"]},
                {"kind": "one_hot", "columns": ["ash_level"]},
            ],
        }
    )
    params = {
        "p0.fill": np.array([100.0]),
        "p1.mean": np.array([99.0]),
        "p1.scale": np.array([14.0]),
    }
    out = apply_pipeline(table, list(args.steps), params)
    raw = pd.read_csv(data_dir / "wine_1.csv")
    np.testing.assert_allclose(out.columns["magnesium"], (raw.magnesium.fillna(100) - 99.0) / 14.0)
    encoder = preprocessing.OneHotEncoder(
        categories=[["low", "medium", "high"]], sparse_output=False
    )
    onehot = encoder.fit_transform(raw[["ash_level"]])
    for k, cat in enumerate(["low", "medium", "high"]):
        np.testing.assert_array_equal(out.columns[f"ash_level={cat}"], onehot[:, k])
