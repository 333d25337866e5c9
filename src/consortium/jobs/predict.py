"""Predicting with a trained horizontal model: ``consortium predict RUN_DIR --data FILE``.

The run's ``model.npz`` carries its card (:mod:`consortium.ml.card`): the model is built
again, the rows are standardised as the training rows were, and each row gets a prediction
(a class number, or a target value). Rows come from a CSV file with a header (every column
a feature, in training order, except the label column when one is named) or from an
``.npz`` file holding ``x`` (and ``y``). With labels, the model's metrics on them come back
too: on the run's test split they are the metrics the run reported.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from consortium.errors import ConfigError
from consortium.ml import ModelCard, read_card
from consortium.npz import load_arrays, replacing

__all__ = ["Predictions", "load_model", "predict", "read_rows", "write_predictions"]

MODEL_FILE = "model.npz"


@dataclass(frozen=True, slots=True)
class Predictions:
    """One prediction per row, and the metrics on the rows' labels (empty without them)."""

    values: np.ndarray
    metrics: dict[str, float]


def predict(run_dir: Path, data: Path, *, label: str | None = None) -> Predictions:
    """Predict every row of ``data`` with the model ``run_dir`` saved; ConfigError naming
    the file (and the column or line) when the model or the rows cannot be used."""
    card, weights = load_model(run_dir)
    path = Path(run_dir)
    try:
        model = card.build(weights)
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    x, y = read_rows(Path(data), label=label)
    rows = card.prepare(x, str(data))
    metrics = {} if y is None else model.evaluate(rows, _labels(y, card.n_classes, data))
    return Predictions(values=np.asarray(model.predict(rows)), metrics=metrics)


def load_model(run_dir: Path) -> tuple[ModelCard, dict[str, np.ndarray]]:
    """The card and the weights of the model a run saved (``run_dir`` or its model file)."""
    path = Path(run_dir)
    path = path / MODEL_FILE if path.is_dir() else path
    return read_card(load_arrays(path), str(path))


def write_predictions(path: Path, predictions: Predictions) -> None:
    """One ``prediction`` per line, under a header, in the order of the rows."""
    with replacing(Path(path)) as temporary, open(temporary, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["prediction"])
        writer.writerows([value] for value in predictions.values.tolist())


def read_rows(path: Path, *, label: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Feature rows (float64) and, when ``label`` names a column (CSV) or the file holds
    ``y`` (``.npz``), their labels."""
    if path.suffix == ".npz":
        arrays = load_arrays(path)
        if "x" not in arrays:
            raise ConfigError(f"{path}: no array named 'x' (the feature rows)")
        return np.asarray(arrays["x"], np.float64), arrays.get("y")
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            lines = list(csv.reader(handle))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read: {exc}") from None
    if not lines:
        raise ConfigError(f"{path}: the file is empty (no header row)")
    header = lines[0]
    numbered = [(number, line) for number, line in enumerate(lines[1:], start=2) if line]
    if label is not None and label not in header:
        raise ConfigError(f"{path}: no column {label!r} (the labels); the columns: {header}")
    values = np.empty((len(numbered), len(header)))
    for row, (number, line) in enumerate(numbered):
        if len(line) != len(header):
            raise ConfigError(
                f"{path}: line {number} has {len(line)} fields, the header has {len(header)}"
            )
        for column, text in enumerate(line):
            try:
                values[row, column] = float(text)
            except ValueError:
                raise ConfigError(
                    f"{path}: line {number}, column {header[column]!r}: {text!r} is not a number"
                ) from None
    if label is None:
        return values, None
    at = header.index(label)
    return np.delete(values, at, axis=1), values[:, at]


def _labels(y: np.ndarray, n_classes: int | None, where: Path) -> np.ndarray:
    if n_classes is None:
        return np.asarray(y, np.float32)
    codes = np.asarray(y, np.float64)
    if not np.all((codes == np.round(codes)) & (codes >= 0) & (codes < n_classes)):
        raise ConfigError(f"{where}: labels must be class numbers 0 to {n_classes - 1}")
    return codes.astype(np.int64)
