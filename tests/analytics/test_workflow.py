"""Workflows: golden DAGs for every step type, validation before anything runs, and the
Python API giving the same JSON as the job file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from consortium.analytics import (
    AnalyticsSettings,
    Finalize,
    Initialize,
    Iterate,
    Parallel,
    Query,
    RoundRobin,
    Sequential,
    Workflow,
    col,
    compile_workflow,
    op,
)
from consortium.errors import ConfigError
from consortium.jobs import parse_job

GOLDEN = Path(__file__).with_name("golden")
WORKERS = ["worker-0", "worker-1", "worker-2"]
Q = {"table": "patients"}
TRAIN = {"query": Q, "features": ["age", "bmi"], "label": "sex"}
INIT = {
    "name": "model.init",
    "args": {"table": "patients", "features": ["age", "bmi"], "label": "sex"},
}

WORKFLOWS = {
    "initialize": [{"step": "initialize", "operation": INIT}],
    "parallel": [
        {
            "id": "m",
            "step": "parallel",
            "operation": {
                "name": "mean",
                "args": {"query": Q, "column": "bmi", "dp": {"epsilon": 0.5}},
            },
        }
    ],
    "round_robin": [
        {"step": "initialize", "operation": INIT},
        {"id": "ring", "step": "round_robin", "operation": {"name": "train", "args": TRAIN}},
    ],
    "sequential": [
        {
            "id": "seq",
            "step": "sequential",
            "steps": [
                {"step": "parallel", "operation": {"name": "count", "args": {"query": Q}}},
                {
                    "id": "v",
                    "step": "parallel",
                    "operation": {"name": "variance", "args": {"query": Q, "column": "bp"}},
                },
            ],
        }
    ],
    "iterate": [
        {"step": "initialize", "operation": INIT},
        {
            "id": "fit",
            "step": "iterate",
            "times": 3,
            "steps": [
                {"id": "t", "step": "parallel", "operation": {"name": "train", "args": TRAIN}}
            ],
        },
    ],
    "finalize": [
        {"step": "initialize", "operation": INIT},
        {"id": "train", "step": "parallel", "operation": {"name": "train", "args": TRAIN}},
        {
            "id": "save",
            "step": "finalize",
            "operation": {"name": "export", "args": {"keep": ["model."]}},
        },
    ],
}


def _settings(job_dict, steps):
    return parse_job(job_dict(steps)).algorithm


@pytest.mark.parametrize("kind", sorted(WORKFLOWS))
def test_compilation_matches_the_golden_dag(kind, job_dict):
    settings: AnalyticsSettings = _settings(job_dict, WORKFLOWS[kind])
    got = compile_workflow(settings.workflow, WORKERS).to_json()
    path = GOLDEN / f"{kind}.json"
    if os.environ.get("CONSORTIUM_UPDATE_GOLDEN"):
        path.write_text(json.dumps(got, indent=2) + "\n")
    assert got == json.loads(path.read_text())


def test_every_step_type_has_a_golden_dag():
    from consortium.analytics.workflow import STEP_TYPES

    assert set(STEP_TYPES) == set(WORKFLOWS)


def test_dag_order_respects_dependencies(job_dict):
    steps = WORKFLOWS["iterate"] + WORKFLOWS["round_robin"][1:] + WORKFLOWS["finalize"][1:]
    dag = compile_workflow(_settings(job_dict, steps).workflow, WORKERS)
    seen: set[str] = set()
    for job in dag.order():
        assert set(job.after) <= seen
        seen.add(job.id)
    assert len(seen) == len(dag.jobs) == 1 + 3 + 3 + 1 + 1


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        (
            [{"step": "paralel", "operation": {"name": "count", "args": {"query": Q}}}],
            "unknown step type 'paralel'",
        ),
        (
            [{"step": "parallel", "operation": {"name": "meen", "args": {"query": Q}}}],
            "unknown analytics operation 'meen'",
        ),
        (
            [{"step": "iterate", "times": 2, "steps": [{"step": "gather"}]}],
            "unknown step type 'gather'",
        ),
        (
            [
                {
                    "step": "parallel",
                    "operation": {"name": "mean", "args": {"query": Q, "column": "bmii"}},
                }
            ],
            "column 'bmii' is not in table 'patients'",
        ),
        (
            [
                {
                    "step": "parallel",
                    "operation": {
                        "name": "count",
                        "args": {
                            "query": {
                                "table": "patients",
                                "where": [{"column": "agee", "op": ">", "value": 1}],
                            }
                        },
                    },
                }
            ],
            "column 'agee' is not in table 'patients'",
        ),
        (
            [
                {
                    "step": "parallel",
                    "operation": {"name": "count", "args": {"query": {"table": "patientz"}}},
                }
            ],
            "no table 'patientz'",
        ),
        (
            [
                {
                    "step": "parallel",
                    "operation": {
                        "name": "mean",
                        "args": {"query": Q, "column": "bmi", "colour": 1},
                    },
                }
            ],
            "args.colour: unknown key",
        ),
        (
            [
                {
                    "step": "round_robin",
                    "operation": {"name": "mean", "args": {"query": Q, "column": "bmi"}},
                }
            ],
            "cannot run round-robin",
        ),
        (
            [{"step": "initialize", "operation": {"name": "count", "args": {"query": Q}}}],
            "cannot be a initialize step",
        ),
        (
            [
                {
                    "step": "parallel",
                    "operation": {
                        "name": "count",
                        "args": {
                            "query": {
                                "table": "patients",
                                "where": [{"column": "age", "op": "~", "value": 1}],
                            }
                        },
                    },
                }
            ],
            "op must be one of",
        ),
    ],
)
def test_bad_workflows_are_rejected_on_load_naming_the_problem(job_dict, steps, message):
    with pytest.raises(ConfigError) as info:
        parse_job(job_dict(steps))
    assert message in str(info.value)
    assert "algorithm" in str(info.value) and "workflow" in str(info.value)


def test_python_api_builds_the_same_workflow_as_json():
    query = Query(table="patients").filter(
        col("age") >= 50, col("sex").isin(["1"]) | col("bmi").is_null()
    )
    built = Workflow(
        steps=[
            Initialize(operation=op("model.init", table="patients", features=["age"], label="sex")),
            Parallel(id="m", operation=op("mean", query=query, column="bmi")),
            Sequential(
                steps=[
                    Iterate(
                        times=2,
                        steps=[
                            RoundRobin(
                                operation=op(
                                    "train",
                                    query=Query(table="patients"),
                                    features=["age"],
                                    label="sex",
                                )
                            )
                        ],
                    )
                ]
            ),
            Finalize(operation=op("export", keep=["model."])),
        ]
    )
    again = Workflow.model_validate(json.loads(json.dumps(built.to_json())))
    assert again == built
    assert built.to_json()["steps"][1]["operation"]["args"]["query"]["where"][1]["op"] == "or"
    dag = compile_workflow(built, ["a", "b"])
    assert [j.id for j in dag.jobs] == [
        "0.initialize", "m", "2.sequential/0.iterate#0/0.round_robin@a",
        "2.sequential/0.iterate#0/0.round_robin@b", "2.sequential/0.iterate#1/0.round_robin@a",
        "2.sequential/0.iterate#1/0.round_robin@b", "3.finalize",
    ]  # fmt: skip


def test_rounds_runs_only_the_first_jobs(tmp_path, job_dict, step, run_analytics):
    q = {"table": "patients"}
    steps = [step("a", "count", query=q), step("b", "count", query=q), step("c", "count", query=q)]
    result, jobs = run_analytics(job_dict(steps, rounds=2), tmp_path / "run")
    assert result.ok, result.error
    assert result.rounds_completed == 2
    assert list(jobs) == ["a", "b"]
