"""A saved model that predicts on its own: the weights, the architecture that takes them and
the standardisation the training rows got, in one ``model.npz``.

Besides the weights under their own names, the file holds ``consortium.card`` (JSON as
bytes: the format, the registered model's name and arguments, the features and classes it
was built for, its seed) and, when the rows were standardised, ``consortium.mean`` and
``consortium.scale``. :func:`read_card` splits a file's arrays back into the card and the
weights; :meth:`ModelCard.build` makes the model again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from consortium.errors import ConfigError
from consortium.ml.datasets import apply_standardizer
from consortium.ml.model import Model, build_model

__all__ = ["CARD", "FORMAT", "ModelCard", "read_card"]

FORMAT = 1
CARD, MEAN, SCALE = "consortium.card", "consortium.mean", "consortium.scale"


@dataclass(frozen=True, kw_only=True)
class ModelCard:
    """How to build the model a file's weights belong to, and how to prepare rows for it."""

    model: str
    args: Mapping[str, Any] = field(default_factory=dict)
    n_features: int
    n_classes: int | None
    seed: int
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None

    def arrays(self) -> dict[str, np.ndarray]:
        """The card as arrays to save beside the weights."""
        text = json.dumps(
            {
                "format": FORMAT,
                "model": self.model,
                "args": dict(self.args),
                "n_features": self.n_features,
                "n_classes": self.n_classes,
                "seed": self.seed,
            }
        )
        out = {CARD: np.frombuffer(text.encode(), np.uint8)}
        if self.mean is not None and self.scale is not None:
            out |= {MEAN: self.mean, SCALE: self.scale}
        return out

    def build(self, weights: Mapping[str, np.ndarray] | None = None) -> Model:
        """A model of the card's architecture, holding ``weights`` when given."""
        model = build_model(
            self.model,
            n_features=self.n_features,
            n_classes=self.n_classes,
            seed=self.seed,
            **self.args,
        )
        if weights is not None:
            model.set_weights(weights)
        return model

    def prepare(self, x: np.ndarray, where: str) -> np.ndarray:
        """Rows as the model was trained on them: float32, standardised when training rows
        were; ConfigError naming ``where`` when the number of columns differs."""
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ConfigError(
                f"{where}: rows of {x.shape[1] if x.ndim == 2 else x.shape} features, the model "
                f"takes {self.n_features}"
            )
        if self.mean is None or self.scale is None:
            return np.asarray(x, dtype=np.float32)
        return apply_standardizer(x, self.mean, self.scale)


def read_card(
    arrays: Mapping[str, np.ndarray], where: str
) -> tuple[ModelCard, dict[str, np.ndarray]]:
    """The card and the weights of a saved model's arrays; ConfigError naming ``where``
    when there is no card or it is of another format."""
    if CARD not in arrays:
        raise ConfigError(f"{where}: no model card ({CARD}); was it saved by a training run?")
    try:
        card = json.loads(np.asarray(arrays[CARD], np.uint8).tobytes().decode())
        if card["format"] != FORMAT:
            raise ConfigError(
                f"{where}: model format {card['format']}, this version reads {FORMAT}"
            )
        result = ModelCard(
            model=str(card["model"]),
            args=dict(card["args"]),
            n_features=int(card["n_features"]),
            n_classes=None if card["n_classes"] is None else int(card["n_classes"]),
            seed=int(card["seed"]),
            mean=arrays.get(MEAN),
            scale=arrays.get(SCALE),
        )
    except (KeyError, TypeError, ValueError, UnicodeDecodeError):
        raise ConfigError(f"{where}: the model card is damaged") from None
    weights = {k: v for k, v in arrays.items() if k not in (CARD, MEAN, SCALE)}
    return result, weights
