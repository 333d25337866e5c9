"""Validated settings of the analytics protocol (the job file's ``algorithm`` section).

Everything that can be checked before a run is checked here, when the job is loaded: the
tables' schemas, every step and operation type (against their registries), every query and
column against the published schema, and the workflow's total privacy cost against each
table's budget.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeInt, PositiveFloat, PositiveInt, model_validator

from consortium.analytics.dag import compile_workflow
from consortium.analytics.operations import OPERATIONS, validate_args
from consortium.analytics.tables import TableSpec
from consortium.analytics.workflow import Workflow
from consortium.privacy.dp import Budget
from consortium.runtime import ProtocolSettings
from consortium.spec import Strict

__all__ = ["AnalyticsSettings", "NoiseSettings"]


class NoiseSettings(Strict):
    """Where the workers' DP noise comes from. ``system`` (the default) draws it from the
    operating system's entropy, so nobody can recompute it. ``seeded`` derives it from the
    job's seed for reproducible tests and simulations: anyone who knows the seed can remove
    the noise, so it protects nothing."""

    randomness: Literal["system", "seeded"] = "system"


class AnalyticsSettings(ProtocolSettings):
    protocol: Literal["analytics"] = "analytics"
    tables: dict[str, TableSpec] = Field(min_length=1)
    workflow: Workflow
    noise: NoiseSettings = NoiseSettings()
    rounds: NonNegativeInt = Field(
        default=0,
        description="run only the first this many jobs of the DAG (a quick trial run, as "
        "rounds cut a training job short); 0: every job",
    )
    min_parties: PositiveInt = Field(
        default=2, description="the fewest workers a secure sum may add up (privacy floor)"
    )
    join_timeout: PositiveFloat = Field(
        default=120.0, description="seconds to wait for the workers to join"
    )
    task_timeout: PositiveFloat = Field(
        default=300.0, description="seconds to wait for the workers' answers to one request"
    )
    retries: NonNegativeInt = Field(
        default=0, description="times a job that timed out is retried (jobs without DP noise only)"
    )

    @model_validator(mode="after")
    def _workflow_fits(self) -> AnalyticsSettings:
        dag = compile_workflow(self.workflow, ["worker"])
        for job in dag.jobs:
            operation = OPERATIONS.get(job.operation)
            args = validate_args(operation, job.args, where=f"workflow step {job.id!r}")
            try:
                operation.check(args, self.tables)
            except ValueError as exc:
                raise ValueError(f"workflow step {job.id!r} ({job.operation}): {exc}") from None
        for table, cost in sorted(dag.cost().items()):
            privacy = self.tables[table].privacy
            if not Budget(privacy.epsilon, privacy.delta).covers(cost):
                raise ValueError(
                    f"the workflow spends epsilon={cost.epsilon:g}, delta={cost.delta:g} on "
                    f"table {table!r}, past its budget epsilon={privacy.epsilon:g}, "
                    f"delta={privacy.delta:g} (tables.{table}.privacy); lower the steps' "
                    "epsilon or raise the budget"
                )
        return self
