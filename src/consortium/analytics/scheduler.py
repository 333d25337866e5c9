"""The scheduler: runs a workflow's DAG over the workers, job by job, through the runtime.

For each job it drives the operation's stages: it sends each request (and the workflow
state) to the job's workers, gathers their answers with a deadline and a quorum of all of
them (a secure sum needs every party it was masked for), adds the masked sums, decodes the
total and hands it to the operation. A job whose workers did not answer in time is retried
(with fresh masks) up to ``retries`` times, if it spends no privacy budget; anything else
that stops a job fails the run with :class:`JobFailed`, naming the job and the party.

Progress goes to the tracker: an event and a record per finished job.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from consortium.analytics.dag import Dag, Job
from consortium.analytics.operations import OPERATIONS, Arrays, Finished, Operation, State, dumps
from consortium.analytics.settings import AnalyticsSettings
from consortium.analytics.worker import RESULT, TASK
from consortium.errors import PartyCrashed, QuorumLost, RunFailed
from consortium.privacy.secure_sum import LIMBS, MaskedSum
from consortium.runtime import PartyContext, gather
from consortium.tracking import RoundRecord
from consortium.wire import Message

__all__ = ["JobFailed", "JobResult", "Scheduler"]

log = logging.getLogger(__name__)


class JobFailed(RunFailed):
    """A job of the workflow could not finish; names the job and the party."""

    def __init__(self, job: str, party: str, reason: str) -> None:
        super().__init__(f"job {job!r} failed on party {party!r}: {reason}")
        self.job = job
        self.party = party
        self.reason = reason


@dataclass(frozen=True, slots=True)
class JobResult:
    job: Job
    result: Mapping[str, Any]
    metrics: Mapping[str, float]
    attempts: int


@dataclass
class _Answers:
    """What one request's answers amount to: the masked total and the plain arrays."""

    layout: list[tuple[str, int]] | None = None
    total: MaskedSum | None = None
    plain: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def take(self, msg: Message) -> str | None:
        if "error" in msg.meta:
            self.errors[msg.sender] = str(msg.meta["error"])
            return f"refused: {msg.meta['error']}"
        try:
            layout = [(str(n), int(s)) for n, s in json.loads(str(msg.meta.get("layout", "")))]
        except (ValueError, TypeError):
            return "the answer has no valid layout"
        if self.layout is None:
            self.layout = layout
            self.total = MaskedSum(size=sum(s for _, s in layout))
        if layout != self.layout:
            return "the answer's statistics differ from the other parties'"
        masked = msg.tensors.get("masked")
        assert self.total is not None
        if masked is None or masked.dtype != np.uint64 or masked.shape != (self.total.size, LIMBS):
            return "the answer's masked sums have the wrong shape"
        self.total.add(masked)
        self.plain[msg.sender] = {
            k[6:]: v for k, v in msg.tensors.items() if k.startswith("plain.")
        }
        return None

    def totals(self) -> dict[str, np.ndarray]:
        if self.total is None or self.layout is None:
            return {}
        flat = self.total.total()
        out, start = {}, 0
        for name, size in self.layout:
            out[name] = flat[start : start + size]
            start += size
        return out


class Scheduler:
    """Runs jobs in DAG order on the coordinator (``ctx``) and keeps the workflow state."""

    def __init__(self, ctx: PartyContext, settings: AnalyticsSettings) -> None:
        self.ctx = ctx
        self.settings = settings
        self.state = State()
        self.results: list[JobResult] = []
        self._nonce = itertools.count(1)  # one per request: masks are never reused

    def run(self, dag: Dag) -> list[JobResult]:
        jobs = dag.order()[: self.settings.rounds or None]  # rounds: a trial run's first jobs
        for number, job in enumerate(jobs, start=1):
            started = self.ctx.clock.now()
            self.results.append(self._run_job(job))
            if self.ctx.tracker is not None:
                # One record per job for progress; its metrics are in results.json and the
                # summary (a job's metrics are its own, so there are no curves to draw).
                self.ctx.tracker.event("job", id=job.id, operation=job.operation)
                self.ctx.tracker.round(
                    RoundRecord(
                        round=number,
                        metrics={},
                        party_metrics={},
                        participants=tuple(p for p in job.parties if not job.on_coordinator),
                        failures={},
                        duration_s=self.ctx.clock.now() - started,
                    )
                )
        return self.results

    def _run_job(self, job: Job) -> JobResult:
        op = OPERATIONS.get(job.operation)
        args = op.Args.model_validate(job.args)
        tries = 1 + (self.settings.retries if not op.cost(args) else 0)
        for attempt in range(1, tries + 1):
            try:
                finished = self._attempt(job, op, args)
            except QuorumLost as exc:
                party = exc.missing[0] if exc.missing else "?"
                if attempt < tries:
                    log.warning("job %s: retrying (attempt %d): %s", job.id, attempt + 1, exc)
                    if self.ctx.tracker is not None:
                        self.ctx.tracker.event("retry", job=job.id, party=party, attempt=attempt)
                    continue
                raise JobFailed(job.id, party, str(exc)) from None
            except PartyCrashed as exc:
                raise JobFailed(job.id, exc.party, f"crashed: {exc.reason}") from None
            self.state = finished.state
            return JobResult(job, finished.result, finished.metrics, attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def _attempt(self, job: Job, op: Operation, args: Any) -> Finished:
        flow = op.coordinate(args, self.state, self.settings.tables)
        reply: Any = None  # sending None first starts the generator
        while True:
            try:
                request = flow.send(reply)
            except StopIteration as stop:
                return stop.value  # the operation's Finished
            if job.on_coordinator:
                raise RunFailed(f"job {job.id!r} runs on the coordinator but asked the workers")
            reply = self._ask(job, request)

    def _ask(self, job: Job, request: Arrays) -> tuple[Arrays, dict[str, dict[str, np.ndarray]]]:
        """Send ``request`` to the job's workers; their total and plain arrays."""
        nonce = next(self._nonce)
        tensors = {f"req.{k}": np.asarray(v) for k, v in request.items()}
        tensors.update({f"state.{k}": np.asarray(v) for k, v in self.state.arrays.items()})
        meta = {
            "job": job.id,
            "op": job.operation,
            "args": dumps(job.args),
            "parties": dumps(list(job.parties)),
            "state": dumps(dict(self.state.meta)),
        }
        for party in job.parties:
            self.ctx.send(TASK, party, round=nonce, meta=meta, tensors=tensors)
        answers = _Answers()
        try:
            gather(
                self.ctx,
                expected=job.parties,
                kind=RESULT,
                round=nonce,
                timeout=self.settings.task_timeout,
                quorum=len(job.parties),
                on_reply=answers.take,
            )
        except QuorumLost:
            if answers.errors:
                party = sorted(answers.errors)[0]
                raise JobFailed(job.id, party, answers.errors[party]) from None
            raise
        return answers.totals(), answers.plain
