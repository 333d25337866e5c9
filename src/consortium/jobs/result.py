"""What a run hands back to the caller of ``consortium.run`` and to the CLI."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

__all__ = ["RunResult"]


@dataclass(frozen=True, slots=True)
class RunResult:
    status: Literal["completed", "failed"]
    metrics: Mapping[str, float]
    rounds_completed: int
    run_dir: Path
    duration_s: float
    dropouts: Mapping[str, str] = field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "completed"
