"""Built-in PyTorch modules. Importing this module imports torch; the registry entries that
build these modules (``mlp``, ``cnn``) live in :mod:`consortium.ml.torch_adapter` and import
it lazily.

The ``CNN`` follows the small convolutional networks of LeCun et al. (1998), "Gradient-Based
Learning Applied to Document Recognition", Proc. IEEE: 3x3 convolution blocks that halve the
image, then a fully connected head; McMahan et al. (2017), "Communication-Efficient Learning
of Deep Networks from Decentralized Data", AISTATS, train a network of this shape with FedAvg.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from consortium.errors import ConfigError

__all__ = ["CNN", "MLP"]


class MLP(nn.Module):
    """A multilayer perceptron: ``Linear -> ReLU [-> Dropout]`` for each width in ``hidden``,
    then a ``Linear`` layer to ``n_classes`` logits. ``hidden=()`` is logistic regression."""

    def __init__(
        self,
        *,
        n_features: int,
        n_classes: int,
        hidden: Sequence[int] = (64,),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        widths = _widths(hidden, "hidden", empty=True)
        rate = _rate(dropout)
        if n_features < 1 or n_classes < 2:
            raise ConfigError(
                f"an MLP needs n_features >= 1 and n_classes >= 2, got {n_features}, {n_classes}"
            )
        layers: list[nn.Module] = []
        width = n_features
        for out in widths:
            layers += [nn.Linear(width, out), nn.ReLU()]
            if rate > 0.0:
                layers.append(nn.Dropout(rate))
            width = out
        layers.append(nn.Linear(width, n_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.layers(x)
        return out


def _positive(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _widths(value: Sequence[int], what: str, *, empty: bool = False) -> list[int]:
    widths = list(value)
    if isinstance(value, str | bytes) or not (widths or empty) or not all(map(_positive, widths)):
        kind = "list" if empty else "non-empty list"
        raise ConfigError(f"{what} must be a {kind} of positive integers, got {value!r}")
    return widths


def _rate(dropout: float) -> float:
    rate = float(dropout)
    if not 0.0 <= rate < 1.0:
        raise ConfigError(f"dropout must lie in [0, 1), got {dropout!r}")
    return rate


class CNN(nn.Module):
    """A small convolutional classifier for square single-channel images given as flat rows.

    The input ``(rows, side*side)`` is viewed as ``(rows, 1, side, side)``. Each width in
    ``channels`` adds a block ``Conv2d(3x3, padding 1) [-> BatchNorm2d] -> ReLU ->
    MaxPool2d(2)``, which halves the side (rounding down); the head is ``Linear -> ReLU
    [-> Dropout] -> Linear`` with ``hidden`` units. With BatchNorm, the running statistics
    are buffers and travel with the weights.
    """

    def __init__(
        self,
        *,
        n_features: int,
        n_classes: int,
        channels: Sequence[int] = (16, 32),
        hidden: int = 64,
        dropout: float = 0.0,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        side = math.isqrt(n_features) if n_features > 0 else 0
        if side < 1 or side * side != n_features:
            raise ConfigError(
                f"cnn takes square single-channel images flattened to side*side features; "
                f"{n_features} features is not a square (digits has 64 = 8x8, MNIST 784 = 28x28)"
            )
        widths = _widths(channels, "channels")
        if not _positive(hidden):
            raise ConfigError(f"hidden must be a positive integer, got {hidden!r}")
        rate = _rate(dropout)
        if not isinstance(batch_norm, bool):
            raise ConfigError(f"batch_norm must be true or false, got {batch_norm!r}")
        if n_classes < 2:
            raise ConfigError(f"a CNN needs n_classes >= 2, got {n_classes}")
        if side >> len(widths) < 1:
            raise ConfigError(
                f"{len(widths)} pooling blocks shrink a {side}x{side} image to nothing; "
                f"use at most {side.bit_length() - 1} entries in channels"
            )
        self.side = side
        blocks: list[nn.Module] = []
        width = 1
        for out in widths:
            blocks.append(nn.Conv2d(width, out, kernel_size=3, padding=1, bias=not batch_norm))
            if batch_norm:
                blocks.append(nn.BatchNorm2d(out))
            blocks += [nn.ReLU(), nn.MaxPool2d(2)]
            width = out
        self.features = nn.Sequential(*blocks)
        flat = width * (side >> len(widths)) ** 2
        head: list[nn.Module] = [nn.Flatten(), nn.Linear(flat, hidden), nn.ReLU()]
        if rate > 0.0:
            head.append(nn.Dropout(rate))
        head.append(nn.Linear(hidden, n_classes))
        self.head = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.features(x.reshape(-1, 1, self.side, self.side)))
        return out
