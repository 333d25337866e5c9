"""Consortium: federated learning and federated analytics on data that never leaves its owner.

``consortium.run(job)`` runs a job file (or mapping) and returns its :class:`RunResult`.
The heavy parts (gRPC, scikit-learn, torch, MLflow) load only when a job needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["RunResult", "__version__", "run"]

__version__ = "0.1.0"

if TYPE_CHECKING:
    from consortium.jobs import RunResult, run


def __getattr__(name: str) -> Any:
    if name in ("run", "RunResult"):
        import consortium.jobs

        return getattr(consortium.jobs, name)
    raise AttributeError(f"module 'consortium' has no attribute {name!r}")
