"""A federated random forest and local cross-validation.

``forest``: each worker grows trees on its own rows, the forest is their union and predicts
by averaging the trees' class probabilities (the scheme of Hauschild et al. (2022),
"Federated Random Forests can improve local performance of predictive models for various
healthcare applications", Bioinformatics). With ``folds`` it is cross-validated first: for
each fold, workers grow trees without their rows of that fold and score the merged forest on
them (the scores are added up securely). The trees are the model and are seen by the
coordinator; their leaves hold class frequencies of a worker's rows.

``local_cv`` (LocalCrossValidation): each worker cross-validates a forest on its own rows;
the coordinator gets the pooled accuracy only.

Trees are numeric arrays (children, split features and thresholds, leaf frequencies), never
pickled estimators; prediction walks them in numpy.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np
from pydantic import Field, PositiveInt

from consortium.analytics.models import Design, check_features, design, stable_split
from consortium.analytics.operations import (
    OPERATIONS,
    Arrays,
    Finished,
    Flow,
    LocalData,
    Operation,
    Partial,
    State,
    scalar_sums,
)
from consortium.analytics.tables import TableSpec
from consortium.runtime import derive_seed

__all__ = ["Forest", "ForestArgs", "LocalCV", "grow_trees", "predict_forest", "unpack_trees"]


class ForestArgs(Design):
    trees: PositiveInt = Field(default=10, description="trees each worker grows")
    max_depth: PositiveInt | None = 8
    min_samples_leaf: PositiveInt = 1
    folds: int = Field(default=0, ge=0, description="cross-validation folds (0: none)")


def grow_trees(
    args: Any, x: np.ndarray, y: np.ndarray, n_classes: int, seed: int
) -> dict[str, np.ndarray]:
    """Grow ``args.trees`` trees on (x, y); their arrays, leaf values as class frequencies
    over every class of the table (a worker may lack some)."""
    from sklearn.ensemble import RandomForestClassifier

    out: dict[str, np.ndarray] = {}
    if len(y) == 0:
        return out
    forest = RandomForestClassifier(
        n_estimators=args.trees,
        max_depth=args.max_depth,
        min_samples_leaf=args.min_samples_leaf,
        random_state=seed % 2**32,
        n_jobs=1,
    ).fit(x, y)
    for k, estimator in enumerate(forest.estimators_):
        tree = estimator.tree_
        value = np.zeros((tree.node_count, n_classes))
        value[:, forest.classes_.astype(np.int64)] = tree.value[:, 0, :]
        value /= np.maximum(value.sum(axis=1, keepdims=True), 1e-300)
        out.update(
            {
                f"t{k}.left": tree.children_left.astype(np.int64),
                f"t{k}.right": tree.children_right.astype(np.int64),
                f"t{k}.feature": tree.feature.astype(np.int64),
                f"t{k}.threshold": tree.threshold.astype(np.float64),
                f"t{k}.value": value,
            }
        )
    return out


def unpack_trees(arrays: Arrays, prefix: str) -> list[dict[str, np.ndarray]]:
    """The trees that :func:`grow_trees` packed into ``arrays`` (under ``prefix``)."""
    names = sorted(
        {k[len(prefix) :].split(".")[0] for k in arrays if k.startswith(prefix)},
        key=lambda s: int(s[1:]),
    )
    return [
        {f: arrays[f"{prefix}{t}.{f}"] for f in ("left", "right", "feature", "threshold", "value")}
        for t in names
    ]


def predict_forest(trees: list[dict[str, np.ndarray]], x: np.ndarray) -> np.ndarray:
    """Class probabilities: the mean over trees of each tree's leaf frequencies. Features
    are compared as float32, as scikit-learn's trees compare them."""
    x = np.asarray(x, dtype=np.float32)
    total = None
    for t in trees:
        node = np.zeros(len(x), dtype=np.int64)
        while True:
            inner = t["left"][node] >= 0
            if not inner.any():
                break
            rows = np.flatnonzero(inner)
            at = node[rows]
            go_left = x[rows, t["feature"][at]] <= t["threshold"][at]
            node[rows] = np.where(go_left, t["left"][at], t["right"][at])
        proba = t["value"][node]
        total = proba if total is None else total + proba
    assert total is not None
    return total / len(trees)


def _merge(plain: Mapping[str, Arrays]) -> dict[str, np.ndarray]:
    """The workers' trees as one forest (``forest.t<i>.*``), in the parties' order."""
    merged: dict[str, np.ndarray] = {}
    for party in sorted(plain):
        for tree in unpack_trees(plain[party], ""):
            m = len(merged) // 5
            merged.update({f"forest.t{m}.{f}": v for f, v in tree.items()})
    return merged


def _per_example(total: Arrays, key: str) -> float:
    """A pooled sum per example (``n``), NaN for no examples."""
    n = float(total["n"][0])
    return float(total[key][0]) / n if n else float("nan")


def _labelled(args: Any, data: LocalData) -> tuple[np.ndarray, np.ndarray, int]:
    """This worker's (X, y) and how many classes the label has."""
    x, y = design(args, data)
    n_classes = len(data.tables[args.query.table].spec.columns[args.label].categories or [])
    return x, y.astype(np.int64), n_classes


def _folds(data: LocalData, n: int, k: int) -> np.ndarray:
    """Each row's fold of ``k`` (the same in every job), or -1 for all rows when k is 0."""
    folds = np.full(n, -1, dtype=np.int64)
    if k:
        folds[stable_split(data, n, "folds")] = np.arange(n) % k
    return folds


class _Trees(Operation):
    Args = ForestArgs

    def check(self, args: Any, tables: Mapping[str, TableSpec]) -> None:
        super().check(args, tables)
        spec = tables[args.query.table]
        check_features(args, spec, args.query.table)
        if spec.columns[args.label].numeric:
            raise ValueError(f"forest: label {args.label!r} must be a category")
        if args.folds == 1:
            raise ValueError("forest: folds is 0 (no cross-validation) or at least 2")


class Forest(_Trees):
    def coordinate(self, args: Any, state: State, tables: Mapping[str, TableSpec]) -> Flow:
        scores = []
        for fold in range(args.folds):
            _, plain = yield {"phase": np.array([0, fold], dtype=np.int64)}
            total, _ = yield {"phase": np.array([1, fold], dtype=np.int64), **_merge(plain)}
            n = float(total["n"][0])
            accuracy, loss = _per_example(total, "correct"), _per_example(total, "loss")
            scores.append({"fold": fold, "examples": n, "accuracy": accuracy, "loss": loss})
        _, plain = yield {"phase": np.array([0, -1], dtype=np.int64)}
        forest = _merge(plain)
        result: dict[str, Any] = {"trees": len(forest) // 5, "folds": scores}
        metrics: dict[str, float] = {"trees": float(len(forest) // 5)}
        if scores:
            n = sum(s["examples"] for s in scores)
            acc = sum(s["accuracy"] * s["examples"] for s in scores) / n
            result["cv_accuracy"] = metrics["cv_accuracy"] = acc
        meta = {"forest": {"features": list(args.features), "label": args.label}}
        return Finished(result=result, metrics=metrics, state=state.updated(forest, meta))

    def local(self, args: Any, request: Arrays, data: LocalData) -> Partial:
        x, y, n_classes = _labelled(args, data)
        phase, fold = (int(v) for v in request["phase"])
        folds = _folds(data, len(y), args.folds)
        if phase == 0:
            rows = folds != fold
            seed = derive_seed(
                zlib.crc32(data.party.encode()), fold + 1, int(data.rng.integers(2**31))
            )
            return Partial(plain=grow_trees(args, x[rows], y[rows], n_classes, seed))
        rows = folds == fold
        proba = predict_forest(unpack_trees(request, "forest."), x[rows])
        correct = float(np.sum(np.argmax(proba, axis=1) == y[rows]))
        loss = float(-np.sum(np.log(np.clip(proba[np.arange(rows.sum()), y[rows]], 1e-15, None))))
        return Partial(sums=scalar_sums(n=float(rows.sum()), correct=correct, loss=loss))


class LocalCV(_Trees):
    """Each worker cross-validates a forest on its own rows; the pooled score comes back."""

    def local(self, args: Any, request: Arrays, data: LocalData) -> Partial:
        x, y, n_classes = _labelled(args, data)
        k = max(args.folds, 2)
        folds = _folds(data, len(y), k)
        correct = 0.0
        for f in range(k):
            train, test = folds != f, folds == f
            grown = grow_trees(args, x[train], y[train], n_classes, derive_seed(f, len(y)))
            if grown and test.any():
                proba = predict_forest(unpack_trees(grown, ""), x[test])
                correct += float(np.sum(np.argmax(proba, axis=1) == y[test]))
        return Partial(sums=scalar_sums(n=float(len(y)), correct=correct))

    def coordinate(self, args: Any, state: State, tables: Mapping[str, TableSpec]) -> Flow:
        total, _ = yield {}
        n, accuracy = float(total["n"][0]), _per_example(total, "correct")
        result = {"examples": n, "accuracy": accuracy}
        return Finished(result=result, metrics={"accuracy": accuracy}, state=state)


OPERATIONS.register("forest", Forest())
OPERATIONS.register("local_cv", LocalCV())
