"""Compiling a workflow into a DAG of jobs: who runs what, after which jobs, with which
resources.

Every step becomes one or more jobs. A job names its operation and args, the parties that
run it, the jobs it waits for, how its input arrives and how its output leaves, and the
tables and privacy budget it uses:

* **distribute** — the coordinator sends the workflow state to the job's workers;
* **collect** — the workers' answers come back to the coordinator, added up securely;
* **arrange** — one worker's output is handed to the next worker (round robin), through
  the coordinator, which relays it.

``iterate`` is unrolled (``<id>#<i>/...``: the state flows from one iteration into the next)
and ``round_robin`` gives one job per worker (``<id>@<party>``), so the DAG is explicit and
its total privacy cost is known before anything runs. Job ids are the step ids, or the
step's position and type (``2.parallel``), nested with ``/``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from consortium.analytics.workflow import (
    Finalize,
    Initialize,
    Parallel,
    RoundRobin,
    Sequential,
    Workflow,
)
from consortium.privacy.dp import Budget

__all__ = ["COORDINATOR", "Dag", "Job", "compile_workflow"]

COORDINATOR = "coordinator"  # the parties field of a job the coordinator runs alone

Inbound = Literal["none", "distribute", "arrange"]
Outbound = Literal["none", "collect", "arrange"]


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    step: str
    operation: str
    args: dict[str, Any]
    parties: tuple[str, ...]
    after: tuple[str, ...]
    inbound: Inbound
    outbound: Outbound
    cost: dict[str, Budget] = field(default_factory=dict)

    @property
    def on_coordinator(self) -> bool:
        return self.parties == (COORDINATOR,)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "step": self.step,
            "operation": self.operation,
            "args": self.args,
            "parties": list(self.parties),
            "after": list(self.after),
            "inbound": self.inbound,
            "outbound": self.outbound,
            "cost": {t: [b.epsilon, b.delta] for t, b in sorted(self.cost.items())},
        }


@dataclass(frozen=True, slots=True)
class Dag:
    jobs: tuple[Job, ...]

    def to_json(self) -> list[dict[str, Any]]:
        return [j.to_json() for j in self.jobs]

    def cost(self) -> dict[str, Budget]:
        """The privacy budget the whole workflow spends, per table (sequential composition)."""
        total: dict[str, Budget] = {}
        for job in self.jobs:
            for table, budget in job.cost.items():
                total[table] = total.get(table, Budget(0.0)) + budget
        return total

    def order(self) -> list[Job]:
        """The jobs in an order that respects every ``after``: each time, the first job (by
        position) whose jobs to wait for are done, so the order is deterministic."""
        done: set[str] = set()
        pending = list(self.jobs)
        order: list[Job] = []
        while pending:
            job = next((j for j in pending if done.issuperset(j.after)), None)
            if job is None:
                raise ValueError("the workflow's jobs form a cycle")
            pending.remove(job)
            order.append(job)
            done.add(job.id)
        return order


def compile_workflow(workflow: Workflow, workers: Sequence[str]) -> Dag:
    """The DAG of ``workflow`` over the worker parties ``workers`` (in their order)."""
    jobs: list[Job] = []
    _compile(list(workflow.steps), "", (), tuple(workers), jobs)
    return Dag(jobs=tuple(jobs))


def _job(
    step: Any,
    job_id: str,
    parties: tuple[str, ...],
    after: tuple[str, ...],
    inbound: Inbound,
    outbound: Outbound,
) -> Job:
    return Job(
        id=job_id,
        step=step.step,
        operation=step.operation.name,
        args=dict(step.operation.args),
        parties=parties,
        after=after,
        inbound=inbound,
        outbound=outbound,
        cost=step.operation.operation.cost(step.operation.parsed()),
    )


def _compile(
    steps: list[Any], prefix: str, after: tuple[str, ...], workers: tuple[str, ...], jobs: list[Job]
) -> tuple[str, ...]:
    """Append the jobs of ``steps`` run after ``after``; returns the last jobs' ids."""
    for index, step in enumerate(steps):
        name = prefix + (step.id if step.id is not None else f"{index}.{step.step}")
        if isinstance(step, Initialize | Finalize):
            jobs.append(_job(step, name, (COORDINATOR,), after, "none", "none"))
            after = (name,)
        elif isinstance(step, Parallel):
            jobs.append(_job(step, name, workers, after, "distribute", "collect"))
            after = (name,)
        elif isinstance(step, RoundRobin):
            for k, party in enumerate(workers):
                inbound: Inbound = "distribute" if k == 0 else "arrange"
                outbound: Outbound = "collect" if k == len(workers) - 1 else "arrange"
                job_id = f"{name}@{party}"
                jobs.append(_job(step, job_id, (party,), after, inbound, outbound))
                after = (job_id,)
        elif isinstance(step, Sequential):
            after = _compile(list(step.steps), f"{name}/", after, workers, jobs)
        else:  # Iterate, the last kind of step
            for i in range(step.times):
                after = _compile(list(step.steps), f"{name}#{i}/", after, workers, jobs)
    return after
