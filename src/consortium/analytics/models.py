"""Model operations: initialise a model, Train / TrainTest it across the workers (federated
averaging through secure sums, or round the workers in turn), and export the result.

Every operation reads its rows through a query and the workflow's fitted pipeline (if the
pipeline was fitted on the same table), then takes ``features`` as the design matrix (rows
with a missing feature or label are left out) and ``label`` as the target: a category's
code for classification (``logreg``, forests), a number for regression (``linreg``).

* ``model.init`` (an ``initialize`` step): a model from :mod:`consortium.ml`, into the state.
* ``train`` / ``train_test``: each worker trains the state's model on its rows; the new model
  is the example-weighted mean of theirs, added up securely (McMahan et al. (2017),
  "Communication-Efficient Learning of Deep Networks from Decentralized Data", AISTATS), so
  the coordinator sees only the mean; ``iterate`` makes it multi-round. Round robin hands the
  model from worker to worker (each one's model is then seen, as in any ring). ``train_test``
  holds out a fraction of each worker's rows and scores the new model on them (pooled score).
* ``export`` (a ``finalize`` step): keep only the named state arrays as the run's model.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from pydantic import Field, PositiveFloat, PositiveInt

from consortium.analytics.operations import (
    OPERATIONS,
    Arrays,
    Finished,
    Flow,
    LocalData,
    Operation,
    Partial,
    QueryArgs,
    State,
    Statistic,
    scalar_sums,
)
from consortium.analytics.preprocessing import apply_fitted
from consortium.analytics.tables import TableSpec
from consortium.ml import build_model
from consortium.runtime import derive_seed
from consortium.spec import Strict

__all__ = [
    "Design",
    "Export",
    "InitArgs",
    "ModelInit",
    "Train",
    "TrainArgs",
    "TrainTest",
    "check_features",
    "design",
    "stable_split",
]


class Design(QueryArgs):
    features: list[str] = Field(min_length=1)
    label: str


class InitArgs(Strict):
    model: Literal["logreg", "linreg"] = "logreg"
    table: str
    features: list[str] = Field(min_length=1)
    label: str
    l2: float = Field(default=0.0, ge=0)


class TrainArgs(Design):
    epochs: PositiveInt = 1
    batch_size: PositiveInt = 32
    lr: PositiveFloat = 0.05
    holdout: float = Field(default=0.0, ge=0, lt=1)


def check_features(args: Any, spec: TableSpec, table: str) -> None:
    """A feature is a column or a one-hot column ``<category column>=<category>``."""
    for f in [*args.features, args.label]:
        column, sep, level = f.partition("=")
        if column not in spec.columns:
            raise ValueError(f"feature {f!r}: no column {column!r} in table {table!r}")
        kind = spec.columns[column]
        if sep and level not in (kind.categories or []):
            raise ValueError(f"feature {f!r}: {level!r} is not a category of {column!r}")
        if not sep and f != args.label and not kind.numeric:
            raise ValueError(f"feature {f!r} is a category: one-hot encode it first")


def design(args: Any, data: LocalData) -> tuple[np.ndarray, np.ndarray]:
    """This worker's (X, y): its rows through the query and the fitted pipeline."""
    table = apply_fitted(data.select(args.query), data.state)
    x = np.column_stack([table.columns[f] for f in args.features]).astype(np.float64)
    y = table.columns[args.label]
    keep = ~np.isnan(x).any(axis=1) & (table.present(args.label))
    return x[keep], y[keep]


def stable_split(data: LocalData, n: int, salt: str) -> np.ndarray:
    """A permutation of this worker's rows that is the same in every job of the run."""
    seed = derive_seed(zlib.crc32(salt.encode()), zlib.crc32(data.party.encode()))
    return np.random.default_rng(seed).permutation(n)


class ModelInit(Operation):
    Args = InitArgs
    placement = "coordinator"

    def check(self, args: Any, tables: Mapping[str, TableSpec]) -> None:
        if args.table not in tables:
            raise ValueError(f"no table {args.table!r}")
        check_features(args, tables[args.table], args.table)
        label = tables[args.table].columns[args.label]
        if (args.model == "logreg") == label.numeric:
            raise ValueError(f"label {args.label!r} does not suit model {args.model!r}")

    def coordinate(self, args: Any, state: State, tables: Mapping[str, TableSpec]) -> Flow:
        yield from ()  # asks the workers nothing
        classes = tables[args.table].columns[args.label].categories
        meta: dict[str, Any] = {  # the state's model entry: build_model's arguments
            "name": args.model,
            "n_features": len(args.features),
            "n_classes": len(classes) if classes else None,
            "l2": args.l2,
        }
        arrays = {f"model.{k}": v for k, v in build_model(**meta, seed=0).get_weights().items()}
        new = state.updated(arrays=arrays, meta={"model": meta})
        return Finished(result={"model": meta}, metrics={}, state=new)


class Train(Operation):
    """One round of training: federated averaging (parallel) or a hand-over (round robin)."""

    Args = TrainArgs
    round_robin = True

    def check(self, args: Any, tables: Mapping[str, TableSpec]) -> None:
        super().check(args, tables)
        check_features(args, tables[args.query.table], args.query.table)

    def coordinate(self, args: Any, state: State, tables: Mapping[str, TableSpec]) -> Flow:
        if "model" not in state.meta:
            raise ValueError("train needs a model: add an initialize step with model.init")
        total, _ = yield {"stage": np.array([0])}
        n = float(total["n"][0])
        loss = float(total["loss"][0]) / max(n, 1.0)
        weights = {}
        for key, old in state.arrays.items():
            if key.startswith("model."):
                name = key[6:]
                mean = total[f"w.{name}"] / n if n > 0 else np.asarray(old, np.float64).ravel()
                weights[name] = mean.reshape(old.shape).astype(old.dtype)
        examples = float(state.arrays.get("model_examples", np.zeros(1))[0]) + n
        arrays = {f"model.{k}": v for k, v in weights.items()}
        new = state.updated(arrays={**arrays, "model_examples": np.array([examples])})
        result: dict[str, Any] = {"examples": n, "train_loss": loss}
        metrics = {"train_loss": loss}
        if args.holdout > 0:
            total, _ = yield {"stage": np.array([1]), **{f"new.{k}": v for k, v in weights.items()}}
            n = float(total["test_n"][0])
            test = {
                k[5:]: float(v[0]) / n
                for k, v in total.items()
                if k.startswith("test_") and k != "test_n" and n > 0
            }
            result.update(test=test, test_examples=n)
            metrics.update({f"test_{k}": v for k, v in test.items()})
        return Finished(result=result, metrics=metrics, state=new)

    def local(self, args: Any, request: Arrays, data: LocalData) -> Partial:
        x, y = design(args, data)
        order = stable_split(data, len(y), "holdout")
        test = order[: round(args.holdout * len(y))]
        train = np.setdiff1d(np.arange(len(y)), test)
        state = data.state
        model = build_model(**state.meta["model"], seed=0)
        model.set_weights({k[6:]: v for k, v in state.arrays.items() if k.startswith("model.")})
        y = y.astype(np.int64) if state.meta["model"]["n_classes"] else y
        if int(request["stage"][0]) == 1:
            model.set_weights({k[4:]: v for k, v in request.items() if k.startswith("new.")})
            scores = model.evaluate(x[test], y[test]) if test.size else {}
            n = float(test.size)
            return Partial(
                sums=scalar_sums(**{f"test_{k}": n * v for k, v in scores.items()}, test_n=n)
            )
        stats = model.fit(
            x[train],
            y[train],
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            rng=data.rng,
        )
        n = float(train.size)
        sums = {
            f"w.{k}": Statistic(n * np.asarray(v, dtype=np.float64).ravel(), 0, 0)
            for k, v in model.get_weights().items()
        }
        return Partial(sums={**sums, **scalar_sums(n=n, loss=n * stats.get("loss", 0.0))})


class TrainTest(Train):
    """Train, then score the new model on each worker's held-out rows (``holdout``)."""

    def check(self, args: Any, tables: Mapping[str, TableSpec]) -> None:
        super().check(args, tables)
        if args.holdout <= 0:
            raise ValueError("train_test holds out rows to score on: set holdout (e.g. 0.2)")


class ExportArgs(Strict):
    keep: list[str] = Field(min_length=1, description="prefixes of the state arrays to keep")


class Export(Operation):
    """A ``finalize`` step: keep only the named parts of the state as the run's model."""

    Args = ExportArgs
    placement = "coordinator"

    def coordinate(self, args: Any, state: State, tables: Mapping[str, TableSpec]) -> Flow:
        yield from ()  # asks the workers nothing
        kept = {k: v for k, v in state.arrays.items() if k.startswith(tuple(args.keep))}
        result = {"arrays": sorted(kept)}
        return Finished(result=result, metrics={}, state=State(arrays=kept, meta=state.meta))


OPERATIONS.register("export", Export())
OPERATIONS.register("model.init", ModelInit())
OPERATIONS.register("train", Train())
OPERATIONS.register("train_test", TrainTest())
