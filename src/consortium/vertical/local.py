"""What each party holds once the records are aligned, the same in every mode: its own
columns of the aligned records, standardised on the training rows; its part of the model;
and that part saved to (or, to predict, loaded from) its own file.

A member's :class:`MemberPart` is its bottom; the master's :class:`MasterPart` is the top,
its own bottom when it holds columns, and the labels. Each party standardises only its own
columns, with the mean and scale of the aligned training rows (saved with its part, so
that predicting uses the same ones).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from consortium.errors import RunFailed
from consortium.runtime import derive_seed
from consortium.vertical.align import fit_standardizer
from consortium.vertical.data import VerticalData
from consortium.vertical.parts import Bottom, Top
from consortium.vertical.settings import VerticalSettings

__all__ = [
    "NET_KEY",
    "TOP_KEY",
    "MasterPart",
    "MemberPart",
    "load_part",
    "master_part",
    "member_part",
    "part_path",
    "save_part",
]

NET_KEY = 0xB0770  # seeds each party's bottom network: derive_seed(seed, NET_KEY, rank)
TOP_KEY = 0x70B  # seeds the master's top network: derive_seed(seed, TOP_KEY)


def part_path(settings: VerticalSettings, party: str) -> Path | None:
    """Where ``party`` keeps its part of the model (None when the job saves none)."""
    if settings.parts_dir is None:
        return None
    return Path(settings.parts_dir.replace("{party}", party)) / f"{party}.npz"


def save_part(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write a part atomically (see ``tracking.save_model``)."""
    from consortium.tracking import save_model

    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(path, dict(arrays))


def load_part(path: Path) -> dict[str, np.ndarray]:
    """A saved part; RunFailed naming the file if it cannot be read."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except OSError as exc:
        raise RunFailed(f"cannot load the saved part {path}: {exc}") from None


def saved_part(settings: VerticalSettings, party: str) -> dict[str, np.ndarray] | None:
    """The party's saved part when the job predicts (None when it trains)."""
    path = part_path(settings, party)
    if settings.task != "predict" or path is None:
        return None
    return load_part(path)


def standardised(
    x: np.ndarray, n_train: int, *, standardize: bool, saved: Mapping[str, np.ndarray] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x - mean) / scale`` in float64, with the mean and scale: the saved ones, those of
    the first ``n_train`` rows, or none (0 and 1) when the job does not standardise."""
    values = x.astype(np.float64)
    if saved is not None:
        mean, scale = saved["mean"], saved["scale"]
    elif standardize:
        mean, scale = fit_standardizer(values[:n_train])
    else:
        mean, scale = np.zeros(x.shape[1]), np.ones(x.shape[1])
    return (values - mean) / scale, mean, scale


def _bottom(
    data: VerticalData, width: int, settings: VerticalSettings, seed: int, rank: int
) -> Bottom:
    model = data.model
    return model.kind.bottom(
        model.args,
        n_features=data.n_features,
        image_shape=data.image_shape,
        width=width,
        settings=settings,
        seed=derive_seed(seed, NET_KEY, rank),
    )


@dataclass(kw_only=True)
class MemberPart:
    """A member's aligned, standardised columns (training rows first) and its bottom."""

    x: np.ndarray
    n_train: int
    width: int
    bottom: Bottom
    mean: np.ndarray
    scale: np.ndarray

    def state(self) -> dict[str, np.ndarray]:
        """What the member saves: its standardisation and its bottom."""
        return {"mean": self.mean, "scale": self.scale, **self.bottom.state()}


def member_part(
    data: VerticalData,
    rows: np.ndarray,
    *,
    n_train: int,
    width: int,
    settings: VerticalSettings,
    seed: int,
    rank: int,
    saved: Mapping[str, np.ndarray] | None = None,
) -> MemberPart:
    """A member's part over its ``rows`` of the aligned records (loaded from ``saved``)."""
    assert data.x is not None
    x, mean, scale = standardised(data.x[rows], n_train, standardize=data.standardize, saved=saved)
    bottom = _bottom(data, width, settings, seed, rank)
    if saved is not None:
        bottom.load({k: v for k, v in saved.items() if k not in ("mean", "scale")})
    return MemberPart(x=x, n_train=n_train, width=width, bottom=bottom, mean=mean, scale=scale)


@dataclass(kw_only=True)
class MasterPart:
    """The master's labels of the aligned records, its own standardised columns and bottom
    (when it holds columns) and the top."""

    y: np.ndarray
    top: Top
    x: np.ndarray | None = None
    own: Bottom | None = None
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None

    def own_x(self, rows: np.ndarray) -> np.ndarray | None:
        """The master's own columns of ``rows`` (None when it holds none)."""
        return None if self.x is None else self.x[rows]

    def state(self) -> dict[str, np.ndarray]:
        """What the master saves: ``top.*``, and ``bottom.*`` with its standardisation."""
        part = {f"top.{k}": v for k, v in self.top.state().items()}
        if self.own is not None:
            assert self.mean is not None and self.scale is not None
            part.update({f"bottom.{k}": v for k, v in self.own.state().items()})
            part.update({"mean": self.mean, "scale": self.scale})
        return part


def master_part(
    data: VerticalData,
    rows: np.ndarray,
    *,
    n_train: int,
    width: int,
    members: int,
    settings: VerticalSettings,
    seed: int,
    rank: int,
    saved: Mapping[str, np.ndarray] | None = None,
) -> MasterPart:
    """The master's part over its ``rows`` of the aligned records, with a top over
    ``members`` outputs and its own (loaded from ``saved``)."""
    assert data.y is not None
    model = data.model
    x = mean = scale = None
    own: Bottom | None = None
    if data.x is not None:
        x, mean, scale = standardised(
            data.x[rows], n_train, standardize=data.standardize, saved=saved
        )
        own = _bottom(data, width, settings, seed, rank)
    top = model.kind.top(
        model.args,
        widths=[width] * (members + (own is not None)),
        task=data.task,
        n_classes=data.n_classes,
        settings=settings,
        seed=derive_seed(seed, TOP_KEY),
    )
    part = MasterPart(y=data.y[rows], top=top, x=x, own=own, mean=mean, scale=scale)
    if saved is not None:
        part.top.load(_unprefix(saved, "top."))
        if part.own is not None:
            part.own.load(_unprefix(saved, "bottom."))
    return part


def _unprefix(saved: Mapping[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {k[len(prefix) :]: v for k, v in saved.items() if k.startswith(prefix)}
