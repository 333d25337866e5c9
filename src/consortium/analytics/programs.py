"""The analytics protocol: a coordinator runs a workflow over workers that hold tables.

The coordinator (the researcher's party, the hub) waits for the workers to join with their
Diffie-Hellman public keys, hands every worker the others' keys, compiles the workflow into
its DAG, runs it with the :class:`~consortium.analytics.scheduler.Scheduler`, and writes the
results into the run directory (``results.json``, ``dag.json``) and the final workflow state
(models, fitted transformers) as the run's model.

What each role sees: the coordinator sees public keys, masked answers (uniformly random on
their own), the *totals* of each request (with DP noise where asked) and what an operation
releases per party by design (the trees of a forest, a model handed round a ring); never a
row, never one worker's statistic. A worker sees the others' public keys, the workflow
state (results meant for everyone) and its own rows.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Mapping
from typing import Any

import numpy as np

from consortium.analytics.dag import Dag, compile_workflow
from consortium.analytics.scheduler import JobResult, Scheduler
from consortium.analytics.settings import AnalyticsSettings
from consortium.analytics.tables import Table, load_table
from consortium.analytics.worker import KEYS, Worker
from consortium.errors import ConfigError
from consortium.privacy.secure_sum import PUBLIC_KEY_BYTES
from consortium.runtime import BINDERS, JOIN, PROGRAMS, Outcome, PartyContext, gather
from consortium.topology import TEMPLATES, ChannelDecl, TopologyDecl
from consortium.tracking import RunDirectory
from consortium.wire import Message

__all__ = ["Coordinator", "TableBinder", "results_document"]

RESULTS_FILE = "results.json"
DAG_FILE = "dag.json"


class Coordinator:
    """The hub's driver: join, key exchange, the DAG, the results."""

    def __init__(self, ctx: PartyContext) -> None:
        self.settings: AnalyticsSettings = ctx.settings

    def run(self, ctx: PartyContext) -> Outcome:
        workers = ctx.peers(role="worker") or ctx.peers()
        keys: dict[str, np.ndarray] = {}

        def joined(msg: Message) -> str | None:
            key = msg.tensors.get("dh_public")
            if key is None or key.dtype != np.uint8 or key.shape != (PUBLIC_KEY_BYTES,):
                return "joined without a valid public key"
            keys[msg.sender] = np.array(key)
            return None

        try:
            gather(
                ctx,
                expected=workers,
                kind=JOIN,
                round=0,
                timeout=self.settings.join_timeout,
                quorum=len(workers),
                on_reply=joined,
            )
            for worker in workers:
                ctx.send(KEYS, worker, tensors=keys)
            dag = compile_workflow(self.settings.workflow, workers)
            scheduler = Scheduler(ctx, self.settings)
            try:
                results = scheduler.run(dag)
            finally:
                _write(ctx, DAG_FILE, {"jobs": dag.to_json()})
                _write(ctx, RESULTS_FILE, results_document(self.settings, scheduler.results))
        finally:
            ctx.stop(workers)
        metrics = {f"{r.job.id}.{k}": float(v) for r in results for k, v in r.metrics.items()}
        model = {k: np.asarray(v) for k, v in scheduler.state.arrays.items()}
        return Outcome(metrics=metrics, rounds_completed=len(results), model=model or None)


def results_document(settings: AnalyticsSettings, results: list[JobResult]) -> dict[str, Any]:
    """The run's results: each job's result, and each table's privacy budget and spend."""
    spent = Dag(jobs=tuple(r.job for r in results)).cost()
    return {
        "jobs": {
            r.job.id: {
                "operation": r.job.operation,
                "parties": list(r.job.parties),
                "attempts": r.attempts,
                "result": r.result,
            }
            for r in results
        },
        "privacy": {
            name: {
                "budget": [spec.privacy.epsilon, spec.privacy.delta],
                "spent": [spent[name].epsilon, spent[name].delta] if name in spent else [0.0, 0.0],
                "min_group_size": spec.privacy.min_group_size,
            }
            for name, spec in settings.tables.items()
        },
    }


def _write(ctx: PartyContext, name: str, document: Mapping[str, Any]) -> None:
    """Write ``document`` into the run directory, if the tracker writes one."""
    sinks = [s for s in getattr(ctx.tracker, "sinks", ()) if isinstance(s, RunDirectory)]
    if not sinks:
        return
    folder = sinks[0].path
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f".{name}.tmp"
    temporary.write_text(json.dumps(document, indent=2, allow_nan=True) + "\n", encoding="utf-8")
    os.replace(temporary, folder / name)


class TableBinder:
    """Each party of role ``worker`` gets its own tables (``algorithm.tables``), read from
    the files the job names for it, relative to the job file; other roles hold no data."""

    def check(self, job: Any) -> None:
        workers = {p.name for p in job.topology.parties if p.role == "worker"}
        if not workers:
            raise ConfigError(f"{job.source}: topology: the analytics protocol needs workers")
        for name, spec in job.algorithm.tables.items():
            named = set(spec.files) if isinstance(spec.files, dict) else workers
            if named != workers:
                unknown, missing = sorted(named - workers), sorted(workers - named)
                raise ConfigError(
                    f"{job.source}: algorithm.tables.{name}.files: name a file for each "
                    f"worker; unknown: {unknown or 'none'}, missing: {missing or 'none'}"
                )

    def bind(self, job: Any, parties: Collection[str] | None) -> dict[str, Any]:
        settings: AnalyticsSettings = job.algorithm
        wanted = set(job.topology.names() if parties is None else parties)
        out: dict[str, Any] = {}
        for party in job.topology.parties:
            if party.name not in wanted:
                continue
            if party.role != "worker":
                out[party.name] = None
                continue
            tables: dict[str, Table] = {}
            for name, spec in settings.tables.items():
                try:
                    path = spec.path_for(party.name, party.index, job.base_dir)
                    tables[name] = load_table(name, spec, path)
                except ConfigError as exc:
                    raise ConfigError(
                        f"{job.source}: algorithm.tables.{name}: party {party.name}: {exc}"
                    ) from None
            out[party.name] = tables
        return out


def _analytics_template(decl: TopologyDecl) -> TopologyDecl:
    """One coordinator (the hub) and N workers, each worker linked to the coordinator."""
    roles = {r.name: r for r in decl.roles}
    if set(roles) != {"coordinator", "worker"}:
        raise ConfigError(
            "topology.roles: the analytics template takes exactly the roles 'coordinator' "
            f"and 'worker', got {sorted(roles)}"
        )
    if roles["coordinator"].count != 1:
        raise ConfigError("topology.roles.coordinator.count: there is exactly one coordinator")
    if decl.channels:
        raise ConfigError("topology.channels: the analytics template defines its own channels")
    return TopologyDecl(
        template="graph",
        roles=(roles["coordinator"], roles["worker"]),
        channels=(ChannelDecl(name="tasks", between=("coordinator", "worker"), mode="tree"),),
        hub="coordinator",
    )


TEMPLATES.register("analytics", _analytics_template)
PROGRAMS.register("analytics/coordinator", Coordinator)
PROGRAMS.register("analytics/worker", Worker)
BINDERS.register("analytics", TableBinder())
