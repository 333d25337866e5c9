"""Every message of a run is recorded: no worker's own statistic appears in the clear in
any of them, and the coordinator still gets the exact totals (so the audit can fail)."""

from __future__ import annotations

import csv
from typing import Any

import numpy as np

from consortium.jobs import parse_job, run_inproc
from consortium.privacy.secure_sum import encode_fixed
from consortium.wire import Message


class _Recording:
    """An endpoint that records what its party sends."""

    def __init__(self, inner: Any, log: list[Message]) -> None:
        self._inner, self._log = inner, log

    def send(self, msg: Message) -> None:
        self._log.append(msg)
        self._inner.send(msg)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _column(path, name):
    with open(path, newline="") as handle:
        return [row[name] for row in csv.DictReader(handle)]


def _partials(data_dir, index):
    """A worker's own statistics, computed from its file here (the oracle)."""
    path = data_dir / f"diabetes_{index}.csv"
    bmi = np.array([float(v) for v in _column(path, "bmi") if v])
    prog = np.array([float(v) for v in _column(path, "progression")])
    bands = _column(path, "age_band")
    return {
        "rows": float(len(prog)),
        "bmi_count": float(len(bmi)),
        "bmi_sum": float(bmi.sum()),
        "prog_sum": float(prog.sum()),
        **{f"band_{b}": float(bands.count(b)) for b in ("under_40", "40_to_59", "60_plus")},
    }


def _numbers(msg: Message) -> np.ndarray:
    """Every number a message carries in the clear: not the masked lanes, and not the bytes
    of public keys (uint8: any byte value occurs there by chance)."""
    found = [float(v) for v in msg.meta.values() if isinstance(v, int | float)]
    for name, t in msg.tensors.items():
        if name != "masked" and t.dtype != np.uint8 and t.dtype.kind in "fiu":
            found.extend(np.asarray(t, dtype=np.float64).ravel().tolist())
    return np.array(found)


def test_no_partial_appears_in_the_clear(tmp_path, job_dict, step, data_dir):
    q = {"table": "patients"}
    steps = [
        step("rows", "count", query=q),
        step("bmi", "mean", query=q, column="bmi"),
        step("prog", "sum", query=q, column="progression"),
        step("bands", "groupby", query=q, by="age_band"),
    ]
    log: list[Message] = []

    def hook(ctx):
        ctx.endpoint = _Recording(ctx.endpoint, log)

    job = parse_job(job_dict(steps))
    result = run_inproc(job, tmp_path / "run", quiet=True, on_context=hook)
    assert result.ok, result.error

    partials = {f"worker-{i}": _partials(data_dir, i) for i in range(3)}
    results = [m for m in log if m.kind == "analytics.result"]
    assert len(results) == 3 * len(steps)
    assert {m.sender for m in log} == {"coordinator", "worker-0", "worker-1", "worker-2"}
    for worker, own in partials.items():
        secrets = np.array(list(own.values()))
        encodings = encode_fixed(secrets)
        for msg in log:
            numbers = _numbers(msg)
            for value in secrets:
                assert not np.any(np.isclose(numbers, value, rtol=1e-12, atol=0)), (
                    f"{worker}'s statistic {value} appears in {msg.kind} from {msg.sender}"
                )
            masked = msg.tensors.get("masked")
            if masked is not None:
                for row in encodings:
                    assert not np.any(np.all(masked == row, axis=1)), (
                        f"{worker}'s encoded statistic appears in {msg.kind} from {msg.sender}"
                    )
    # What the workers send the coordinator is masked lanes and a layout, nothing else.
    for msg in results:
        assert set(msg.tensors) == {"masked"}
        assert set(msg.meta) == {"layout"}
    # ... and yet the coordinator has the exact totals.
    assert result.metrics["rows.count"] == sum(p["rows"] for p in partials.values())
    assert result.metrics["prog.sum"] == sum(p["prog_sum"] for p in partials.values())
    pooled_bmi = sum(p["bmi_sum"] for p in partials.values()) / sum(
        p["bmi_count"] for p in partials.values()
    )
    assert (
        result.metrics["bmi.mean"] == pooled_bmi
        or abs(result.metrics["bmi.mean"] - pooled_bmi) < 1e-12
    )
    assert result.metrics["bands.60_plus.count"] == sum(
        p["band_60_plus"] for p in partials.values()
    )
