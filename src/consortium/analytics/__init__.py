"""Federated analytics: tables that stay with their parties, queries, estimators with secure
summation and differential privacy, preprocessing, model operations, and workflows compiled
to a DAG of jobs."""

# Each of these registers its operations.
from consortium.analytics import estimators, forest, models, preprocessing, programs  # noqa: F401
from consortium.analytics.dag import compile_workflow
from consortium.analytics.operations import (
    OPERATIONS,
    DpArgs,
    Finished,
    Flow,
    LocalData,
    Operation,
    Partial,
    QueryArgs,
    State,
    Statistic,
)
from consortium.analytics.query import Query, col
from consortium.analytics.settings import AnalyticsSettings
from consortium.analytics.tables import ColumnSpec, Table, TableSpec, load_table
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
    "OPERATIONS",
    "AnalyticsSettings",
    "ColumnSpec",
    "DpArgs",
    "Finalize",
    "Finished",
    "Flow",
    "Initialize",
    "Iterate",
    "LocalData",
    "Operation",
    "Parallel",
    "Partial",
    "Query",
    "QueryArgs",
    "RoundRobin",
    "Sequential",
    "State",
    "Statistic",
    "Table",
    "TableSpec",
    "Worker",
    "Workflow",
    "col",
    "compile_workflow",
    "load_table",
    "op",
]
