"""Centralised oracles for the vertical tests: the same records, aligned by id and pooled
in one place (which the protocol itself never does), trained by plain numpy."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import yaml

from consortium.jobs import bind_data, parse_job
from consortium.runtime import derive_rng
from consortium.vertical import batches, fit_standardizer, split_records
from consortium.vertical.align import EPOCH_KEY, SPLIT_KEY

EXAMPLES = Path(__file__).parents[2] / "examples"


@dataclass
class Pooled:
    """The aligned records in the master's order (training rows first), columns in party
    order (master, then members), each block standardised on the training rows."""

    blocks: list[np.ndarray]
    y: np.ndarray
    n_train: int
    parties: list[str]  # the owner of each block

    @property
    def x(self) -> np.ndarray:
        return np.hstack(self.blocks)


def example(name: str, **changes: Any) -> dict[str, Any]:
    job = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())
    job["tracking"] = {"console": False, "mlflow": {"enabled": False}}
    for path, value in changes.items():
        node = job
        keys = path.split("__")
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = copy.deepcopy(value)
    return job


def pooled(raw: dict[str, Any]) -> Pooled:
    job = parse_job(copy.deepcopy(raw))
    data = bind_data(job)
    master = job.topology.hub
    members = job.topology.with_role("member")
    held = set.intersection(*(set(data[m].ids) for m in members))
    mine = data[master]
    rows = np.array([i for i, rid in enumerate(mine.ids) if rid in held])
    rank = job.topology.party(master).rank
    order, n_train = split_records(
        len(rows), mine.test_fraction, derive_rng(job.spec.seed, SPLIT_KEY, rank)
    )
    ids = [mine.ids[i] for i in rows[order]]
    owners = ([master] if mine.x is not None else []) + members
    blocks = []
    for party in owners:
        index = {rid: i for i, rid in enumerate(data[party].ids)}
        x = data[party].x[[index[rid] for rid in ids]].astype(np.float64)
        mean, scale = fit_standardizer(x[:n_train])
        blocks.append((x - mean) / scale)
    assert mine.y is not None
    return Pooled(blocks=blocks, y=mine.y[rows[order]], n_train=n_train, parties=owners)


def schedule(raw: dict[str, Any], n_train: int, min_size: int = 1) -> list[list[np.ndarray]]:
    """The master's batches, epoch by epoch (a last batch under ``min_size`` rows joins the
    one before it)."""
    job = parse_job(copy.deepcopy(raw))
    settings = job.algorithm
    rank = job.topology.party(job.topology.hub).rank
    return [
        batches(
            n_train,
            settings.batch_size,
            derive_rng(job.spec.seed, EPOCH_KEY, epoch, rank) if settings.shuffle else None,
            min_size=min_size,
        )
        for epoch in range(1, settings.rounds + 1)
    ]


def central_gd(
    pool: Pooled, plan: list[list[np.ndarray]], *, outputs: int, link: str, lr: float, l2: float
) -> tuple[np.ndarray, np.ndarray]:
    """Minibatch gradient descent on the pooled data: weights (features, outputs), bias.

    ``link`` is ``identity``, ``logistic`` or ``softmax``, or ``taylor`` for the arbitered
    mode's linearised link: ``1/2 + z/4`` for one output, ``1/K + (z_k - mean z)/K`` for K.
    """
    x, y = pool.x, pool.y
    w = np.zeros((x.shape[1], outputs))
    b = np.zeros(outputs)
    for epoch in plan:
        for rows in epoch:
            z = x[rows] @ w + b
            if link == "identity":
                p, t = z, y[rows].reshape(-1, 1).astype(np.float64)
            elif link == "logistic":
                p, t = 1 / (1 + np.exp(-z)), y[rows].reshape(-1, 1).astype(np.float64)
            elif link == "taylor" and outputs == 1:
                p, t = 0.5 + z / 4, y[rows].reshape(-1, 1).astype(np.float64)
            elif link == "taylor":
                p = (1 + z - z.mean(axis=1, keepdims=True)) / outputs
                t = np.eye(outputs)[y[rows]]
            else:
                e = np.exp(z - z.max(axis=1, keepdims=True))
                p = e / e.sum(axis=1, keepdims=True)
                t = np.eye(outputs)[y[rows]]
            g = (p - t) / len(rows)
            w_step = x[rows].T @ g + l2 * w
            b -= lr * g.sum(axis=0)
            w -= lr * w_step
    return w, b


def load_parts(run_dir: Path, parts_dir: Path, pool: Pooled, master: str) -> dict[str, Any]:
    """The trained model as the parties saved it: the master's part from the run directory,
    each member's from its own file."""
    with np.load(run_dir / "model.npz") as m:
        master_part = {k: m[k] for k in m.files}
    weights = []
    for party in pool.parties:
        if party == master:
            weights.append(master_part["bottom.weight"])
        else:
            with np.load(parts_dir / f"{party}.npz") as f:
                weights.append(f["weight"])
    return {"weight": np.vstack(weights), "bias": master_part["top.bias"], "master": master_part}


@pytest.fixture
def vfl() -> SimpleNamespace:
    return SimpleNamespace(
        example=example,
        pooled=pooled,
        schedule=schedule,
        central_gd=central_gd,
        load_parts=load_parts,
    )
