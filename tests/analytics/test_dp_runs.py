"""Differential privacy in runs: the budget spent is the composition of the queries (as the
workers' own accountants count it), a query past the budget is refused with a clear error,
the noise has the mechanism's scale, and small groups are suppressed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from consortium.analytics import Worker
from consortium.errors import ConfigError
from consortium.jobs import parse_job
from consortium.privacy.dp import Accountant, Budget
from consortium.runtime import PROGRAMS

stats = pytest.importorskip("scipy.stats")
pd = pytest.importorskip("pandas")

WORKERS: dict[str, Worker] = {}


class AuditedWorker(Worker):
    """A worker the test can look into; worker-1 holds a smaller budget of its own."""

    def __init__(self, ctx):
        super().__init__(ctx)
        WORKERS[ctx.name] = self
        if ctx.name == "worker-1" and ctx.settings.tables["patients"].privacy.epsilon == 0.6:
            self.accountant = Accountant({"patients": Budget(0.3, 1e-4)})


PROGRAMS.register("analytics/audited_worker", AuditedWorker, force=True)


def _audited(job):
    job["topology"]["roles"]["worker"]["program"] = "audited_worker"
    return job


def _dp(mechanism, epsilon, delta=0.0):
    return {"mechanism": mechanism, "epsilon": epsilon, "delta": delta}


def test_spent_budget_is_the_composition(tmp_path, job_dict, step, run_analytics):
    q = {"table": "patients"}
    steps = [
        step("a", "count", query=q, dp=_dp("laplace", 0.5)),
        step("b", "mean", query=q, column="bmi", dp=_dp("gaussian", 0.6, 1e-6)),
        step("c", "variance", query=q, column="progression", dp=_dp("laplace", 0.9)),
        step("d", "groupby", query=q, by="sex", column="bp", dp=_dp("laplace", 0.25)),
        step("e", "mean", query=q, column="s1"),  # no DP: spends nothing
    ]
    WORKERS.clear()
    result, _ = run_analytics(_audited(job_dict(steps)), tmp_path / "run")
    assert result.ok, result.error
    import json

    privacy = json.loads((tmp_path / "run" / "results.json").read_text())["privacy"]["patients"]
    assert privacy["spent"][0] == pytest.approx(0.5 + 0.6 + 0.9 + 0.25)
    assert privacy["spent"][1] == pytest.approx(1e-6)
    assert sorted(WORKERS) == ["worker-0", "worker-1", "worker-2"]
    for worker in WORKERS.values():
        spent = worker.accountant.spent("patients")
        assert spent.epsilon == pytest.approx(2.25)
        assert spent.delta == pytest.approx(1e-6)


def test_workflow_past_the_budget_is_refused_on_load(job_dict, step):
    q = {"table": "patients"}
    steps = [step(f"s{i}", "count", query=q, dp=_dp("laplace", 4.0)) for i in range(3)]
    with pytest.raises(
        ConfigError, match=r"spends epsilon=12.*table 'patients'.*budget epsilon=10"
    ):
        parse_job(job_dict(steps))


def test_dp_needs_published_bounds(job_dict, step):
    steps = [step("s", "mean", query={"table": "patients"}, column="s1", dp=_dp("laplace", 1.0))]
    with pytest.raises(ConfigError, match=r"workflow step .s.*column 's1' needs published bounds"):
        parse_job(job_dict(steps))


def test_a_worker_refuses_a_query_past_its_own_budget(tmp_path, job_dict, step, run_analytics):
    q = {"table": "patients"}
    steps = [
        step("first", "count", query=q, dp=_dp("laplace", 0.25)),
        step("second", "count", query=q, dp=_dp("laplace", 0.25)),
    ]
    job = _audited(job_dict(steps))
    job["algorithm"]["tables"]["patients"]["privacy"]["epsilon"] = 0.6
    result, _ = run_analytics(job, tmp_path / "run")
    assert not result.ok
    assert "job 'second' failed on party 'worker-1'" in result.error
    assert "budget" in result.error


@pytest.mark.parametrize(
    ("mechanism", "epsilon", "delta"), [("laplace", 0.5, 0.0), ("gaussian", 0.5, 1e-5)]
)
def test_noise_has_the_mechanisms_scale(
    tmp_path, job_dict, step, run_analytics, mechanism, epsilon, delta
):
    times = 300
    body = [step("n", "count", query={"table": "patients"}, dp=_dp(mechanism, epsilon, delta))]
    job = job_dict([{"id": "it", "step": "iterate", "times": times, "steps": body}])
    job["algorithm"]["tables"]["patients"]["privacy"] = {"epsilon": 1000.0, "delta": 0.01}
    result, jobs = run_analytics(job, tmp_path / "run")
    assert result.ok, result.error
    noise = np.array([jobs[f"it#{i}/n"]["result"]["count"] for i in range(times)]) - 442
    if mechanism == "laplace":
        right, wrong = stats.laplace(scale=1 / epsilon), stats.laplace(scale=2 / epsilon)
    else:
        sigma = math.sqrt(2 * math.log(1.25 / delta)) / epsilon
        right, wrong = stats.norm(scale=sigma), stats.norm(scale=2 * sigma)
    assert stats.kstest(noise, right.cdf).pvalue > 1e-3
    assert stats.kstest(noise, wrong.cdf).pvalue < 1e-3
    assert np.unique(noise).size == times  # fresh noise for every query


def test_small_groups_are_suppressed(tmp_path, job_dict, step, run_analytics, data_dir):
    q = {"table": "patients", "where": [{"column": "age", "op": "<", "value": 45}]}
    job = job_dict([step("g", "groupby", query=q, by="age_band", column="bmi")])
    job["algorithm"]["tables"]["patients"]["privacy"]["min_group_size"] = 60
    result, jobs = run_analytics(job, tmp_path / "run")
    assert result.ok, result.error
    pooled = pd.concat(pd.read_csv(data_dir / f"diabetes_{i}.csv") for i in range(3))
    counts = pooled[pooled.age < 45].groupby("age_band").bmi.count()
    large = sorted(b for b, c in counts.items() if c >= 60)
    small = sorted({"under_40", "40_to_59", "60_plus"} - set(large))  # empty ones too
    assert any(0 < c < 60 for c in counts) and large  # the threshold splits the groups
    got = jobs["g"]["result"]
    assert sorted(got["suppressed"]) == small
    assert sorted(got["groups"]) == large
    assert got["groups"][large[0]]["count"] == counts[large[0]]
