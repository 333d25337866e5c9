"""Federated analytics: tables that stay with their parties, queries, estimators with secure
summation and differential privacy, preprocessing, model operations, and workflows compiled
to a DAG of jobs."""

# Each of these registers its operations.
from consortium.analytics import estimators, forest, models, preprocessing  # noqa: F401
from consortium.analytics.dag import COORDINATOR, Dag, Job, compile_workflow
from consortium.analytics.operations import (
    OPERATIONS,
    DpArgs,
    Finished,
    Flow,
    LocalData,
    Operation,
    OperationRef,
    Partial,
    QueryArgs,
    State,
    Statistic,
)
from consortium.analytics.programs import Coordinator, TableBinder
from consortium.analytics.query import Query, col
from consortium.analytics.scheduler import JobFailed, JobResult, Scheduler
from consortium.analytics.settings import AnalyticsSettings, NoiseSettings
from consortium.analytics.tables import ColumnSpec, PrivacySpec, Table, TableSpec, load_table
from consortium.analytics.worker import Worker
from consortium.analytics.workflow import (
    Finalize,
    Initialize,
    Iterate,
    Parallel,
    RoundRobin,
    Sequential,
    Workflow,
    op,
)
from consortium.runtime import PROTOCOLS as _PROTOCOLS

_PROTOCOLS.register("analytics", AnalyticsSettings)

__all__ = [
    "COORDINATOR",
    "OPERATIONS",
    "AnalyticsSettings",
    "ColumnSpec",
    "Coordinator",
    "Dag",
    "DpArgs",
    "Finalize",
    "Finished",
    "Flow",
    "Initialize",
    "Iterate",
    "Job",
    "JobFailed",
    "JobResult",
    "LocalData",
    "NoiseSettings",
    "Operation",
    "OperationRef",
    "Parallel",
    "Partial",
    "PrivacySpec",
    "Query",
    "QueryArgs",
    "RoundRobin",
    "Scheduler",
    "Sequential",
    "State",
    "Statistic",
    "Table",
    "TableBinder",
    "TableSpec",
    "Worker",
    "Workflow",
    "col",
    "compile_workflow",
    "load_table",
    "op",
]
