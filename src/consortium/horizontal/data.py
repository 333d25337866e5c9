"""The horizontal protocol's data binder: what each party holds locally.

The binder gives parties rows of one dataset: the
dataset is loaded, split and partitioned once per process and deterministically from the
job's seed, so every launcher gives each party the same rows. Each party then keeps only
its own slice, and a factory for a model of the job's architecture.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import numpy as np

from consortium.errors import ConfigError, PluginError
from consortium.ml import (
    DATASETS,
    MODELS,
    PARTITIONERS,
    Model,
    ModelCard,
    apply_standardizer,
    fit_standardizer,
    load_dataset,
    model_factory,
    read_card,
    train_test_split,
)
from consortium.npz import load_arrays
from consortium.runtime import BINDERS, LocalData, derive_seed

__all__ = ["RowBinder"]

_MODEL_SEED_KEY = 0x30DE1  # keeps the model-initialisation stream apart from the others
_PARTITION_SEED_KEY = 0x9A27
_HOLDOUT_SEED_KEY = 0x401D


def _subset(ds: Any, rows: np.ndarray) -> Any:
    return dataclasses.replace(ds, x=ds.x[rows], y=ds.y[rows])


class RowBinder:
    """Rows of one dataset per party (``data:`` names the dataset and, per role, the split
    and the partitioner) and the job's ``model:``."""

    def check(self, job: Any) -> None:
        spec, source = job.spec, job.source
        if spec.data is None:
            raise ConfigError(f"{source}: data: the {job.protocol} protocol needs a data section")
        if spec.model is None:
            raise ConfigError(f"{source}: model: the {job.protocol} protocol needs a model")
        _registered(DATASETS, spec.data.dataset.name, "data.dataset.name", source)
        _registered(MODELS, spec.model.name, "model.name", source)
        if job.algorithm.evaluation.federated:
            held = [r for r, b in spec.data.roles.items() if b.holdout > 0]
            if not held:
                raise ConfigError(
                    f"{source}: algorithm.evaluation.federated needs rows to evaluate on: set "
                    "data.roles.<trainer role>.holdout (e.g. 0.2)"
                )
        for role, binding in spec.data.roles.items():
            if role not in spec.topology.roles:
                raise ConfigError(f"{source}: data.roles.{role}: no such role in the topology")
            if binding.partitioner is not None:
                _registered(
                    PARTITIONERS,
                    binding.partitioner.name,
                    f"data.roles.{role}.partitioner.name",
                    source,
                )

    def bind(self, job: Any, parties: Collection[str] | None) -> dict[str, LocalData]:
        return _bind_rows(job, parties)


def _hold_out(job: Any, party: str, rows: Any, fraction: float) -> tuple[Any, Any]:
    """Split one party's rows into its own (train, test)."""
    rank = job.topology.party(party).rank
    try:
        return train_test_split(
            rows,
            test_fraction=fraction,
            seed=derive_seed(job.spec.seed, _HOLDOUT_SEED_KEY, rank),
            stratify=False,  # a party may lack classes; keep its own label mix
        )
    except ConfigError as exc:
        raise ConfigError(f"{job.source}: data.roles: holdout for {party}: {exc}") from None


def _model_builder(job: Any, card: ModelCard) -> Callable[[], Model]:
    """Builds the job's model: from its seed, or holding the weights of the saved model
    ``model.init.from`` names (which must be of the same architecture)."""
    spec = job.spec.model
    try:
        build = model_factory(
            card.model,
            n_features=card.n_features,
            n_classes=card.n_classes,
            seed=card.seed,
            **card.args,
        )
    except ConfigError as exc:
        raise ConfigError(f"{job.source}: model: {exc}") from None
    if spec.init is None:
        return build
    path = Path(job.base_dir) / spec.init.from_
    if path.is_dir():
        path = path / "model.npz"
    where = f"{job.source}: model.init.from: {path}"
    try:
        arrays = load_arrays(path)
    except ConfigError as exc:
        raise ConfigError(f"{job.source}: model.init.from: {exc}") from None
    saved, weights = read_card(arrays, where)
    mine = (card.model, dict(card.args), card.n_features, card.n_classes)
    theirs = (saved.model, dict(saved.args), saved.n_features, saved.n_classes)
    if mine != theirs:
        raise ConfigError(
            f"{where}: a model {saved.model!r} {saved.args} for {saved.n_features} features "
            f"and {saved.n_classes} classes, this job trains {card.model!r} {dict(card.args)} "
            f"for {card.n_features} and {card.n_classes}"
        )
    try:
        build().set_weights(weights)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None

    def build_saved() -> Model:
        model = build()
        model.set_weights(weights)
        return model

    return build_saved


def _registered(registry: Any, name: str, where: str, source: str) -> None:
    try:
        registry.get(name)
    except PluginError as exc:
        raise ConfigError(f"{source}: {where}: {exc}") from None


def _bind_rows(job: Any, parties: Collection[str] | None) -> dict[str, LocalData]:
    spec = job.spec
    assert spec.data is not None and spec.model is not None  # RowBinder.check
    wanted = set(job.topology.names() if parties is None else parties)
    try:
        full = load_dataset(spec.data.dataset.name, seed=spec.seed, **spec.data.dataset.args)
        train, test = train_test_split(full, test_fraction=spec.data.test_fraction, seed=spec.seed)
    except (ConfigError, ValueError) as exc:
        raise ConfigError(f"{job.source}: data: {exc}") from None
    mean = scale = None
    if spec.data.standardize:
        mean, scale = fit_standardizer(train.x)
        train, test = (
            dataclasses.replace(ds, x=apply_standardizer(ds.x, mean, scale)) for ds in (train, test)
        )
    splits = {"train": train, "test": test, "none": None}
    card = ModelCard(
        model=spec.model.name,
        args=spec.model.args,
        n_features=int(full.x.shape[1]),
        n_classes=full.n_classes,
        seed=derive_seed(spec.seed, _MODEL_SEED_KEY),
        mean=mean,
        scale=scale,
    )
    build = _model_builder(job, card)
    out: dict[str, LocalData] = {}
    for role in {p.role for p in job.topology.parties}:
        members = job.topology.with_role(role)
        binding = spec.data.roles.get(role)
        split = splits[binding.split] if binding is not None else None
        shares: list[Any] = [split] * len(members)
        if binding is not None and binding.partitioner is not None and split is not None:
            partitioner = PARTITIONERS.get(binding.partitioner.name)
            try:
                rows = partitioner(
                    split.y,
                    n_parties=len(members),
                    seed=derive_seed(spec.seed, _PARTITION_SEED_KEY),
                    **binding.partitioner.args,
                )
            except (ConfigError, ValueError, TypeError) as exc:
                raise ConfigError(f"{job.source}: data.roles.{role}.partitioner: {exc}") from None
            shares = [_subset(split, r) for r in rows]
        for name, share in zip(members, shares, strict=True):
            if name not in wanted:
                continue
            is_test = binding is not None and binding.split == "test"
            own: tuple[Any, Any] = (None, share) if is_test else (share, None)
            if binding is not None and binding.holdout > 0 and own[0] is not None:
                own = _hold_out(job, name, own[0], binding.holdout)
            out[name] = LocalData(train=own[0], test=own[1], model_factory=build, card=card)
    return out


BINDERS.register("horizontal", RowBinder())
