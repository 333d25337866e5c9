"""Networks for split learning, in PyTorch. Importing this module imports torch.

Each network maps ``(rows, in_features)`` to ``(rows, out_features)``. The convolutional ones
view a row as a one-channel image: ``image_shape`` (height, width) when the party holds an
image strip, otherwise ``(1, in_features)``, so the same 3x3 convolutions slide along a row
of tabular features.

- :class:`MLPNet`: ``Linear -> ReLU`` layers.
- :class:`ResNet`: the residual network of He, Zhang, Ren and Sun (2016), "Deep Residual
  Learning for Image Recognition", CVPR, scaled down: a convolutional stem, one stage of basic
  blocks (two 3x3 convolutions with batch normalisation and an identity or 1x1 shortcut) per
  width, global average pooling and a linear head.
- :class:`EfficientNet`: the mobile inverted bottleneck (MBConv) network of Tan and Le (2019),
  "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks", ICML, scaled
  down: 1x1 expansion, 3x3 depthwise convolution, squeeze-and-excitation (Hu, Shen and Sun,
  2018, CVPR), 1x1 projection with a residual when shapes allow, SiLU activations.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import nn

from consortium.errors import ConfigError

__all__ = ["EfficientNet", "MLPNet", "ResNet"]


def _widths(value: Sequence[int], what: str, *, allow_empty: bool = False) -> list[int]:
    widths = [] if isinstance(value, str | bytes) else list(value)
    ok = all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths)
    if not ok or (not widths and not allow_empty):
        raise ConfigError(f"{what} must be a list of positive integers, got {value!r}")
    return widths


def _grid(in_features: int, image_shape: Sequence[int] | None) -> tuple[int, int]:
    if image_shape is None:
        return 1, in_features
    height, width = (int(v) for v in image_shape)
    if height * width != in_features:
        raise ConfigError(f"image_shape {tuple(image_shape)} does not hold {in_features} features")
    return height, width


class MLPNet(nn.Module):
    """``Linear -> ReLU`` for each width in ``hidden``, then ``Linear`` to the output."""

    def __init__(
        self,
        *,
        in_features: int,
        out_features: int,
        image_shape: Sequence[int] | None = None,
        hidden: Sequence[int] = (32,),
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for out in _widths(hidden, "hidden", allow_empty=True):
            layers += [nn.Linear(width, out), nn.ReLU()]
            width = out
        layers.append(nn.Linear(width, out_features))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


def _stages(widths: list[int], grid: tuple[int, int]) -> Iterator[tuple[int, int, int]]:
    """``(in channels, out channels, stride)`` of the first block at each width: those after
    the first halve the grid while both its sides stay at least 2 after halving."""
    height, width = grid
    cin = widths[0]
    for i, cout in enumerate(widths):
        stride = 2 if i > 0 and min(height, width) >= 4 else 1
        yield cin, cout, stride
        height, width = -(-height // stride), -(-width // stride)
        cin = cout


class ResNet(nn.Module):
    """One stage of ``blocks`` basic blocks per width in ``channels``."""

    def __init__(
        self,
        *,
        in_features: int,
        out_features: int,
        image_shape: Sequence[int] | None = None,
        channels: Sequence[int] = (16, 32),
        blocks: int = 1,
    ) -> None:
        super().__init__()
        widths = _widths(channels, "channels")
        if isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 1:
            raise ConfigError(f"blocks must be a positive integer, got {blocks!r}")
        self.grid = _grid(in_features, image_shape)
        self.stem = nn.Sequential(
            nn.Conv2d(1, widths[0], 3, padding=1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()
        )
        layers: list[nn.Module] = []
        for cin, cout, stride in _stages(widths, self.grid):
            layers.append(_BasicBlock(cin, cout, stride))
            layers += [_BasicBlock(cout, cout, 1) for _ in range(blocks - 1)]
        self.stages = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(widths[-1], out_features)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x.reshape(-1, 1, *self.grid))))


class _SqueezeExcite(nn.Module):
    def __init__(self, channels: int, squeezed: int) -> None:
        super().__init__()
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, squeezed, 1),
            nn.SiLU(),
            nn.Conv2d(squeezed, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class _MBConv(nn.Module):
    def __init__(self, cin: int, cout: int, *, expand: int, stride: int, se_ratio: float) -> None:
        super().__init__()
        mid = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.SiLU()]
        layers += [
            nn.Conv2d(mid, mid, 3, stride=stride, padding=1, groups=mid, bias=False),
            nn.BatchNorm2d(mid),
            nn.SiLU(),
            _SqueezeExcite(mid, max(1, int(cin * se_ratio))),
            nn.Conv2d(mid, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.block(x)
        return out + x if self.residual else out


class EfficientNet(nn.Module):
    """One MBConv block per width in ``channels``; a 1x1 convolution to ``head`` channels
    before the pooling and the linear head."""

    def __init__(
        self,
        *,
        in_features: int,
        out_features: int,
        image_shape: Sequence[int] | None = None,
        channels: Sequence[int] = (16, 24),
        expand: int = 4,
        se_ratio: float = 0.25,
        head: int = 64,
    ) -> None:
        super().__init__()
        widths = _widths(channels, "channels")
        for name, value in (("expand", expand), ("head", head)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if not 0.0 < float(se_ratio) <= 1.0:
            raise ConfigError(f"se_ratio must lie in (0, 1], got {se_ratio!r}")
        self.grid = _grid(in_features, image_shape)
        stem = widths[0]
        self.stem = nn.Sequential(
            nn.Conv2d(1, stem, 3, padding=1, bias=False), nn.BatchNorm2d(stem), nn.SiLU()
        )
        self.blocks = nn.Sequential(
            *(
                _MBConv(cin, cout, expand=expand, stride=stride, se_ratio=float(se_ratio))
                for cin, cout, stride in _stages(widths, self.grid)
            )
        )
        self.head = nn.Sequential(
            nn.Conv2d(widths[-1], head, 1, bias=False),
            nn.BatchNorm2d(head),
            nn.SiLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(head, out_features),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x.reshape(-1, 1, *self.grid))))
