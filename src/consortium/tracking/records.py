"""What a run records: its identity, one record per round, events, a final summary and
the model; the whole vocabulary between the runtime and the tracking sinks. Plain numbers,
strings and named arrays, so every sink can serialise them without knowing about parties
or transports. The helpers make sortable run ids and the hash and flat parameters of a
job, and read ``metrics.jsonl`` back.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

from consortium.errors import ConfigError

__all__ = [
    "EventValue",
    "Model",
    "ParamValue",
    "RoundRecord",
    "RunInfo",
    "RunSummary",
    "default_run_dir",
    "flatten_params",
    "hash_job",
    "new_run_id",
    "read_metrics",
]

EventValue = str | int | float
"""A field of an event: ``tracker.event("dropout", party="bank-2", round=3)``."""

Model = Mapping[str, np.ndarray]
"""Model weights as named arrays."""

ParamValue = str | int | float | bool
"""A flat setting as MLflow takes it."""

_UNSAFE_PATH_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True, kw_only=True)
class RunInfo:
    """Who is running what, and where its results go. Passed to every sink at start."""

    run_id: str
    job_name: str
    job_hash: str
    """sha256 of the resolved job (see :func:`hash_job`)."""
    resolved_job: Mapping[str, Any]
    """The validated job as a JSON-able mapping."""
    params: Mapping[str, ParamValue]
    """Flattened settings, e.g. ``{"algorithm.rounds": 10}`` (see :func:`flatten_params`)."""
    rounds: int
    """Rounds planned."""
    run_dir: Path
    resumed_after: int = 0
    """A run resumed from its checkpoint: the rounds already recorded (0: a new run)."""
    startup_s: float = 0.0
    """Seconds from the launch to the start of tracking (data bound, processes started):
    part of the run's duration."""

    def __post_init__(self) -> None:
        if not self.run_id:
            raise ConfigError("RunInfo.run_id must not be empty")
        if self.rounds < 0:
            raise ConfigError(f"RunInfo.rounds must be >= 0, got {self.rounds}")
        if not 0 <= self.resumed_after <= self.rounds:
            raise ConfigError(f"RunInfo.resumed_after must be in [0, {self.rounds}]")


@dataclass(frozen=True, kw_only=True)
class RoundRecord:
    """What happened in one round, recorded after the round closes."""

    round: int
    metrics: Mapping[str, float]
    """Global metrics, e.g. accuracy and loss of the aggregated model."""
    party_metrics: Mapping[str, Mapping[str, float]]
    """Per party: metric name to value, e.g. train loss and examples seen."""
    participants: tuple[str, ...]
    failures: Mapping[str, str]
    """Party to the reason it did not contribute this round."""
    duration_s: float

    def to_json(self) -> dict[str, Any]:
        """The record as one ``metrics.jsonl`` line (plain dicts, lists and floats)."""
        return {
            "round": self.round,
            "metrics": _floats(self.metrics),
            "party_metrics": {party: _floats(m) for party, m in self.party_metrics.items()},
            "participants": list(self.participants),
            "failures": dict(self.failures),
            "duration_s": float(self.duration_s),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RoundRecord:
        """The record of one ``metrics.jsonl`` line, as :meth:`to_json` wrote it."""
        return cls(
            round=int(data["round"]),
            metrics=_floats(data["metrics"]),
            party_metrics={party: _floats(m) for party, m in data["party_metrics"].items()},
            participants=tuple(data["participants"]),
            failures=dict(data["failures"]),
            duration_s=float(data["duration_s"]),
        )


@dataclass(frozen=True, kw_only=True)
class RunSummary:
    """How a run ended. A failed run still has a summary, so partial results are kept."""

    status: Literal["completed", "failed"]
    metrics: Mapping[str, float]
    rounds_completed: int
    duration_s: float
    dropouts: Mapping[str, str]
    """Party to the reason it dropped out of the run."""
    error: str | None = None

    def __post_init__(self) -> None:
        if self.status not in ("completed", "failed"):
            raise ConfigError(
                f"RunSummary.status must be 'completed' or 'failed', not {self.status!r}"
            )


def read_metrics(path: Path) -> list[RoundRecord]:
    """The rounds recorded in a ``metrics.jsonl`` file, in order; a last line cut short (a
    run killed while writing it) is left out. Raises :class:`~consortium.errors.ConfigError`
    naming the file (and the line) when it is missing or unreadable, or a line is no round."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file; is its folder a run directory?") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read: {exc}") from None
    lines = text.split("\n")
    records: list[RoundRecord] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(RoundRecord.from_json(json.loads(line)))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            if number == len(lines) and records:  # no newline after it: cut short
                break
            problem = f"{type(exc).__name__}: {exc}"
            raise ConfigError(f"{path}, line {number}: not a round record ({problem})") from None
    return records


def _floats(values: Mapping[str, float]) -> dict[str, float]:
    return {name: float(value) for name, value in values.items()}


def new_run_id(*, now: datetime | None = None) -> str:
    """A run id that sorts by start time: ``20250131-142502-3f9a1c2e`` (UTC, random suffix)."""
    stamp = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{secrets.token_hex(4)}"


def default_run_dir(base: Path, job_name: str, run_id: str) -> Path:
    """``base/<job name>/<run id>``, with the job name made safe as a folder name."""
    if not run_id or _UNSAFE_PATH_CHARS.search(run_id) or run_id in (".", ".."):
        raise ConfigError(
            f"run id {run_id!r} cannot name a folder; use letters, digits, '.', '_' and '-' "
            "(consortium.tracking.new_run_id makes one)"
        )
    folder = _UNSAFE_PATH_CHARS.sub("-", job_name).strip(".-") or "job"
    return Path(base) / folder / run_id


def hash_job(resolved_job: Mapping[str, Any]) -> str:
    """The sha256 hex digest of a resolved job, stable across key order and processes."""
    canonical = json.dumps(resolved_job, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def flatten_params(resolved_job: Mapping[str, Any], *, prefix: str = "") -> dict[str, ParamValue]:
    """Flatten nested settings into dotted names: ``{"algorithm": {"rounds": 3}}`` gives
    ``{"algorithm.rounds": 3}``. Lists and ``None`` become their JSON text."""
    flat: dict[str, ParamValue] = {}
    for key, value in resolved_job.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(flatten_params(value, prefix=name))
        elif isinstance(value, bool | int | str):
            flat[name] = value
        elif isinstance(value, float):
            flat[name] = value if math.isfinite(value) else str(value)
        else:
            flat[name] = json.dumps(value, sort_keys=True, default=str)
    return flat
