"""Data binding for the vertical protocol: each party holds some columns of some records.

The job's dataset stands in for the records of several organisations. Every record gets an
id (a seeded permutation, so ids say nothing about row order); each party holds the columns
its role binding names (``data.roles.<role>.columns``, cut among the role's parties) of a
random ``coverage`` fraction of the records, in an order of its own. The master also holds
the labels. Nothing is aligned here: the parties find their shared records with the private
set intersection when the run starts, and the master decides which aligned records train and
which test.

Without ``data.roles``, the members split every column in contiguous blocks and the master
holds the labels only.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import numpy as np

from consortium.errors import ConfigError, PluginError
from consortium.ml import DATASETS, load_dataset
from consortium.ml.datasets import Dataset, Task
from consortium.runtime import derive_rng
from consortium.vertical.models import VerticalModel, resolve_model

__all__ = ["VerticalBinder", "VerticalData", "record_ids"]

_ID_KEY = 0x1D5  # keeps the id permutation's random stream apart from the others
_HOLD_KEY = 0x401D5  # and the draw of the records each party holds
# horizontal settings, refused here unless left at their defaults
_HORIZONTAL_DEFAULTS: dict[str, Any] = {"split": "train", "partitioner": None, "holdout": 0.0}


@dataclass(frozen=True, slots=True, kw_only=True)
class VerticalData:
    """One party's own table: record ids in its own order, its columns of those records
    (float32, or None), and the labels at the master."""

    ids: tuple[str, ...]
    x: np.ndarray | None
    y: np.ndarray | None
    columns: tuple[int, ...]  # the dataset's columns this party holds
    image_shape: tuple[int, int] | None  # (height, width) of an image strip
    task: Task
    n_classes: int | None
    test_fraction: float
    standardize: bool
    model: VerticalModel

    @property
    def n_features(self) -> int:
        return 0 if self.x is None else int(self.x.shape[1])


def record_ids(n: int, seed: int) -> np.ndarray:
    """The ids of the dataset's records, as strings in row order."""
    perm = derive_rng(seed, _ID_KEY).permutation(n)
    return np.array([f"id-{int(j):07d}" for j in perm])


@dataclass(frozen=True, slots=True)
class _AllColumns:
    start: int = 0
    stop: int | None = None
    layout: str = "blocks"


@dataclass(frozen=True, slots=True)
class _DefaultBinding:
    columns: _AllColumns = _AllColumns()
    coverage: float = 1.0


def _bindings(job: Any) -> dict[str, Any]:
    """``data.roles`` (:class:`consortium.jobs.spec.RoleBinding` objects), or the default."""
    data = job.spec.data
    roles = dict(data.roles)
    # The job file may leave data.roles out; a resolved job written back (the processes
    # launcher does) then carries the horizontal default, which names no vertical role.
    horizontal_default = set(roles) == {"trainer", "aggregator"} and not (
        set(roles) & set(job.spec.topology.roles)
    )
    if "roles" in data.model_fields_set and not horizontal_default:
        return roles
    return {"member": _DefaultBinding()}


class VerticalBinder:
    """The vertical protocol's data binder (see the module's docstring)."""

    def check(self, job: Any) -> None:
        spec, source = job.spec, job.source
        if spec.data is None:
            raise ConfigError(f"{source}: data: the vertical protocol needs a data section")
        if spec.model is None:
            raise ConfigError(f"{source}: model: the vertical protocol needs a model")
        if spec.model.init is not None:
            raise ConfigError(
                f"{source}: model.init: the vertical protocol starts from saved parts with "
                "algorithm.parts_dir, not from one saved model"
            )
        try:
            DATASETS.get(spec.data.dataset.name)
        except PluginError as exc:
            raise ConfigError(f"{source}: data.dataset.name: {exc}") from None
        try:
            model = resolve_model(spec.model.name, spec.model.args)
        except PluginError as exc:
            raise ConfigError(f"{source}: model.name: {exc}") from None
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        settings = job.algorithm
        if settings.solver == "exact" and model.name != "linreg":
            raise ConfigError(f"{source}: algorithm.solver: 'exact' is for linreg only")
        if settings.mode == "arbitered":
            if "arbiter" not in spec.topology.roles:
                raise ConfigError(
                    f"{source}: algorithm.mode: 'arbitered' needs an arbiter role in the "
                    "topology (it holds the private key)"
                )
            if model.name not in ("linreg", "logreg"):
                raise ConfigError(
                    f"{source}: algorithm.mode: 'arbitered' trains linreg and logreg, "
                    f"not {model.name!r}"
                )
            if settings.solver == "exact":
                raise ConfigError(
                    f"{source}: algorithm.solver: the arbitered mode trains by gradient steps"
                )
        if settings.task == "predict" and settings.parts_dir is None:
            raise ConfigError(f"{source}: algorithm.parts_dir: predicting loads the saved parts")
        roles = set(spec.topology.roles)
        bindings = _bindings(job)
        for role, binding in bindings.items():
            if role not in roles:
                raise ConfigError(f"{source}: data.roles.{role}: no such role in the topology")
            for name, default in _HORIZONTAL_DEFAULTS.items():
                if getattr(binding, name, default) != default:
                    raise ConfigError(
                        f"{source}: data.roles.{role}.{name}: not used by the vertical protocol "
                        "(the master splits the aligned records with data.test_fraction)"
                    )
        # what a party holds follows its role, whatever program it runs
        member = bindings.get("member")
        if "member" in roles and (member is None or member.columns is None):
            raise ConfigError(f"{source}: data.roles.member.columns: members hold feature columns")
        if "arbiter" in bindings:
            raise ConfigError(f"{source}: data.roles.arbiter: the arbiter holds no data")

    def bind(self, job: Any, parties: Collection[str] | None) -> dict[str, VerticalData]:
        spec = job.spec
        assert spec.data is not None and spec.model is not None  # check() ran on load
        wanted = set(job.topology.names() if parties is None else parties)
        try:
            full = load_dataset(spec.data.dataset.name, seed=spec.seed, **spec.data.dataset.args)
        except (ConfigError, ValueError) as exc:
            raise ConfigError(f"{job.source}: data: {exc}") from None
        model = resolve_model(spec.model.name, spec.model.args)
        if full.task not in model.kind.tasks:
            raise ConfigError(
                f"{job.source}: model.name: {model.name!r} does not fit the {full.task} "
                f"dataset {full.name!r}"
            )
        ids = record_ids(full.n_samples, spec.seed)
        bindings = _bindings(job)
        out: dict[str, VerticalData] = {}
        for role in sorted({p.role for p in job.topology.parties}):
            names = job.topology.with_role(role)
            binding = bindings.get(role)
            cuts = _cut(job, full, role, binding, len(names))
            for name, (columns, shape) in zip(names, cuts, strict=True):
                if name not in wanted:
                    continue
                party = job.topology.party(name)
                holds = party.role in ("master", "member")
                coverage = binding.coverage if binding is not None else 1.0
                keep = max(1, round(coverage * full.n_samples)) if holds else 0
                order = derive_rng(spec.seed, _HOLD_KEY, party.rank).permutation(full.n_samples)
                rows = order[:keep]
                out[name] = VerticalData(
                    ids=tuple(str(i) for i in ids[rows]),
                    x=full.x[np.ix_(rows, columns)] if len(columns) and holds else None,
                    y=full.y[rows] if party.role == "master" else None,
                    columns=tuple(int(c) for c in columns),
                    image_shape=shape,
                    task=full.task,
                    n_classes=full.n_classes,
                    test_fraction=spec.data.test_fraction,
                    standardize=spec.data.standardize,
                    model=model,
                )
        return out


Cut = tuple[np.ndarray, tuple[int, int] | None]


def _cut(job: Any, full: Dataset, role: str, binding: Any, count: int) -> list[Cut]:
    """Each of the role's parties' columns (and strip shape), in party order."""
    where = f"{job.source}: data.roles.{role}.columns"
    if binding is None or binding.columns is None:
        return [(np.zeros(0, dtype=np.int64), None)] * count
    spec = binding.columns
    if spec.layout == "blocks":
        limit = full.n_features
    else:
        if full.image_shape is None or len(full.image_shape) != 2:
            raise ConfigError(f"{where}.layout: strips need an image dataset, not {full.name!r}")
        limit = full.image_shape[1]
    stop = limit if spec.stop is None else spec.stop
    if not spec.start < stop <= limit:
        raise ConfigError(f"{where}: [start, stop) must lie in [0, {limit}), got {spec}")
    if stop - spec.start < count:
        raise ConfigError(f"{where}: {stop - spec.start} columns cannot be cut among {count}")
    pieces = np.array_split(np.arange(spec.start, stop, dtype=np.int64), count)
    if spec.layout == "blocks":
        return [(piece, None) for piece in pieces]
    assert full.image_shape is not None
    height, width = full.image_shape
    return [
        (
            (np.arange(height, dtype=np.int64)[:, None] * width + piece[None, :]).reshape(-1),
            (height, len(piece)),
        )
        for piece in pieces
    ]


BINDER = VerticalBinder()
