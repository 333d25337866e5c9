"""A failing job fails the run with a message naming the job and the party, the run exits
non-zero, and a job that timed out is retried when that is safe."""

from __future__ import annotations

import json
import threading
from typing import Any, ClassVar

import yaml

from consortium.analytics import OPERATIONS, Operation, Partial, QueryArgs
from consortium.cli import main


class Explode(Operation):
    """Raises on worker-1 (a bug in an operation: the worker crashes)."""

    Args = QueryArgs

    def local(self, args: Any, request: Any, data: Any) -> Partial:
        if data.party == "worker-1":
            raise RuntimeError("the disk is on fire")
        return Partial()


class SlowOnce(Operation):
    """worker-2 never answers its first request (as if it were stuck), then behaves."""

    Args = QueryArgs
    seen: ClassVar[set[str]] = set()
    lock: ClassVar[threading.Lock] = threading.Lock()

    def local(self, args: Any, request: Any, data: Any) -> Partial:
        import numpy as np

        from consortium.analytics.operations import Statistic

        with self.lock:
            first = data.party not in self.seen
            self.seen.add(data.party)
        if data.party == "worker-2" and first:
            raise _Silent()
        return Partial(sums={"one": Statistic(np.ones(1), 0, 0)})

    def coordinate(self, args, state, tables):
        from consortium.analytics import Finished

        total, _ = yield {}
        value = float(total["one"][0])
        return Finished(result={"total": value}, metrics={"total": value}, state=state)


class _Silent(Exception):
    pass


OPERATIONS.register("test.explode", Explode(), force=True)
OPERATIONS.register("test.slow_once", SlowOnce(), force=True)


def test_a_crashing_job_names_the_job_and_the_party(tmp_path, job_dict, step, run_analytics):
    steps = [
        step("ok", "count", query={"table": "patients"}),
        step("boom", "test.explode", query={"table": "patients"}),
    ]
    result, jobs = run_analytics(job_dict(steps), tmp_path / "run")
    assert not result.ok
    assert "job 'boom' failed on party 'worker-1'" in result.error
    assert "the disk is on fire" in result.error
    assert list(jobs) == ["ok"]  # the finished job's results are kept
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and "worker-1" in summary["error"]


def test_the_cli_exits_non_zero(tmp_path, job_dict, step, capsys):
    job = job_dict([step("boom", "test.explode", query={"table": "patients"})])
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    code = main(["run", str(path), "--out", str(tmp_path / "run"), "--quiet"])
    assert code != 0
    assert (
        "worker-1" in capsys.readouterr().err
        or "worker-1" in (tmp_path / "run" / "summary.json").read_text()
    )


def test_a_job_that_timed_out_is_retried(tmp_path, job_dict, step, run_analytics, monkeypatch):
    from consortium.analytics import worker as worker_module

    original = worker_module.Worker._answer

    def answer(self, ctx, msg):
        try:
            return original(self, ctx, msg)
        except _Silent:
            return None  # swallowed below: no reply at all

    def handle(self, ctx, msg):
        if msg.kind == worker_module.TASK:
            out = answer(self, ctx, msg)
            if out is not None:
                ctx.reply(msg, worker_module.RESULT, meta=out[0], tensors=out[1])
            return True
        return original_handle(self, ctx, msg)

    original_handle = worker_module.Worker.handle
    monkeypatch.setattr(worker_module.Worker, "handle", handle)
    SlowOnce.seen.clear()
    job = job_dict(
        [step("s", "test.slow_once", query={"table": "patients"})], retries=1, task_timeout=2
    )
    result, jobs = run_analytics(job, tmp_path / "run")
    assert result.ok, result.error
    assert jobs["s"]["attempts"] == 2
    assert jobs["s"]["result"]["total"] == 3.0
    events = (tmp_path / "run" / "events.jsonl").read_text()
    assert '"retry"' in events and "worker-2" in events

    SlowOnce.seen.clear()
    job = job_dict([step("s", "test.slow_once", query={"table": "patients"})], task_timeout=2)
    result, _ = run_analytics(job, tmp_path / "run2")
    assert not result.ok
    assert "job 's' failed on party 'worker-2'" in result.error
