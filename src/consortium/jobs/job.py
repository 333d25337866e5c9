"""A validated job, and the launchers that run one."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from consortium.jobs.result import RunResult
from consortium.jobs.spec import JobSpec
from consortium.registry import Registry
from consortium.runtime import BINDERS
from consortium.topology import Topology

__all__ = ["LAUNCHERS", "Launcher", "LoadedJob", "bind_data"]


@dataclass(frozen=True, slots=True)
class LoadedJob:
    """A validated job, ready to launch."""

    spec: JobSpec
    algorithm: Any  # the protocol's settings model
    topology: Topology
    source: str  # file path, or "<dict>"
    resolved: Mapping[str, Any]  # JSON-able, as written to the run directory
    job_hash: str
    base_dir: Path = field(default_factory=Path.cwd)  # relative paths in the job start here

    @property
    def protocol(self) -> str:
        return str(self.algorithm.protocol)

    @property
    def job_id(self) -> str:
        """The id every message of this job carries: its name and a prefix of its hash."""
        return f"{self.spec.name}:{self.job_hash[:12]}"


def bind_data(job: LoadedJob, parties: Collection[str] | None = None) -> dict[str, Any]:
    """Each named party's local data (every party when ``parties`` is None), as the job's
    protocol binds it."""
    return dict(BINDERS.get(job.protocol).bind(job, parties))


class Launcher(Protocol):
    def __call__(
        self,
        job: LoadedJob,
        run_dir: Path,
        *,
        console: Any = None,
        quiet: bool = False,
        resume: bool = False,
    ) -> RunResult: ...


LAUNCHERS: Registry[Launcher] = Registry("launcher")
