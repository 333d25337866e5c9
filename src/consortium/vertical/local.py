"""What each party holds once the records are aligned, the same in every mode: its own
columns of the aligned records, standardised on the training rows; its part of the model;
and that part saved to (or, to predict, loaded from) its own file. And the master's view of
the aligned records: which train and which test, and the batches of each epoch.

Each party standardises only its own columns, with the mean and scale of the aligned
training rows (saved with its part, so that predicting uses the same ones).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from consortium.errors import RunFailed
from consortium.ml import fit_standardizer
from consortium.npz import save_arrays
from consortium.runtime import PartyContext, derive_seed
from consortium.vertical.data import VerticalData
from consortium.vertical.parts import Bottom, Top
from consortium.vertical.settings import VerticalSettings

__all__ = [
    "EPOCH_KEY",
    "NET_KEY",
    "SPLIT_KEY",
    "TOP_KEY",
    "Alignment",
    "MasterPart",
    "MemberPart",
    "batches",
    "load_part",
    "master_part",
    "member_part",
    "part_path",
    "save_part",
    "saved_part",
    "split_records",
]

# Each key keeps one random stream apart from the others.
NET_KEY = 0xB0770  # each party's bottom network: derive_seed(seed, NET_KEY, rank)
TOP_KEY = 0x70B  # the master's top network: derive_seed(seed, TOP_KEY)
SPLIT_KEY = 0x5B17  # the master's draw of the test records
EPOCH_KEY = 0xE90C  # the master's batch order, epoch by epoch


@dataclass(frozen=True, slots=True)
class Alignment:
    """The master's view: its own rows of the aligned records (training rows first), how
    many train, and how many columns each member holds."""

    rows: np.ndarray
    n_train: int
    features: dict[str, int]


def split_records(n: int, test_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """An order of ``n`` aligned records with the training ones first (each part in
    ascending order), and the training count. At least one record trains; with two or more,
    at least one tests."""
    n_test = min(max(round(n * test_fraction), 1 if n > 1 else 0), n - 1)
    perm = rng.permutation(n)
    test, train = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    return np.concatenate([train, test]), n - n_test


def batches(
    n_train: int, batch_size: int | None, rng: np.random.Generator | None, *, min_size: int = 1
) -> list[np.ndarray]:
    """One epoch's batches of training positions, in the order drawn from ``rng`` (in order
    when it is None). A last batch shorter than ``min_size`` joins the one before it."""
    order = np.arange(n_train) if rng is None else rng.permutation(n_train)
    size = n_train if batch_size is None else batch_size
    out = [order[i : i + size] for i in range(0, n_train, size)]
    if len(out) > 1 and len(out[-1]) < min_size:
        out[-2:] = [np.concatenate(out[-2:])]
    return out


def part_path(settings: VerticalSettings, party: str) -> Path | None:
    """Where ``party`` keeps its part of the model (None when the job saves none)."""
    if settings.parts_dir is None:
        return None
    return Path(settings.parts_dir.replace("{party}", party)) / f"{party}.npz"


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


def save_part(settings: VerticalSettings, party: str, state: Mapping[str, np.ndarray]) -> str:
    """Save ``state`` as the party's part when the job trains and saves parts (atomically,
    see :func:`consortium.npz.save_arrays`); where the party keeps its part, "" when the job saves none."""
    path = part_path(settings, party)
    if path is None:
        return ""
    if settings.task == "train":
        path.parent.mkdir(parents=True, exist_ok=True)
        save_arrays(path, dict(state))
    return str(path)


@dataclass(kw_only=True)
class MemberPart:
    """A party's aligned, standardised columns (training rows first) and its bottom."""

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
    ctx: PartyContext,
    rows: np.ndarray,
    *,
    n_train: int,
    width: int,
    saved: Mapping[str, np.ndarray] | None,
) -> MemberPart:
    """A party's part over its ``rows`` of the aligned records: its columns, standardised
    with the mean and scale of the training rows, and its bottom (loaded from ``saved``)."""
    data: VerticalData = ctx.data
    assert data.x is not None
    x = data.x[rows].astype(np.float64)
    if saved is not None:
        mean, scale = saved["mean"], saved["scale"]
    elif data.standardize:
        mean, scale = fit_standardizer(x[:n_train])
    else:
        mean, scale = np.zeros(x.shape[1]), np.ones(x.shape[1])
    seed = derive_seed(ctx.seed, NET_KEY, ctx.party.rank)
    bottom = data.model.kind.bottom(
        data.model.args, data, width=width, settings=ctx.settings, seed=seed
    )
    if saved is not None:
        bottom.load({k: v for k, v in saved.items() if k not in ("mean", "scale")})
    x = (x - mean) / scale
    return MemberPart(x=x, n_train=n_train, width=width, bottom=bottom, mean=mean, scale=scale)


@dataclass(kw_only=True)
class MasterPart:
    """The master's labels of the aligned records, the top, and its own columns and bottom
    when it holds columns."""

    y: np.ndarray
    top: Top
    own: MemberPart | None = None

    def outputs(self, rows: np.ndarray, *, train: bool) -> list[np.ndarray]:
        """The master's own bottom's output for ``rows`` (none when it holds no columns)."""
        return [] if self.own is None else [self.own.bottom.forward(self.own.x[rows], train=train)]

    def state(self) -> dict[str, np.ndarray]:
        """What the master saves: ``top.*``, and ``bottom.*`` with its standardisation."""
        part = {f"top.{k}": v for k, v in self.top.state().items()}
        if self.own is not None:
            part.update({f"bottom.{k}": v for k, v in self.own.bottom.state().items()})
            part.update({"mean": self.own.mean, "scale": self.own.scale})
        return part


def master_part(ctx: PartyContext, alignment: Alignment, *, width: int) -> MasterPart:
    """The master's part over the aligned records, with a top over every member's output
    and its own (loaded from its saved part when the job predicts)."""
    data: VerticalData = ctx.data
    assert data.y is not None
    saved = saved_part(ctx.settings, ctx.name)
    own = None
    if data.x is not None:
        own_saved = None
        if saved is not None:  # its bottom's arrays are saved as bottom.*
            own_saved = {
                k.removeprefix("bottom."): v for k, v in saved.items() if not k.startswith("top.")
            }
        own = member_part(
            ctx, alignment.rows, n_train=alignment.n_train, width=width, saved=own_saved
        )
    seed = derive_seed(ctx.seed, TOP_KEY)
    parts = len(alignment.features) + (own is not None)
    top = data.model.kind.top(data.model.args, data, parts=parts, settings=ctx.settings, seed=seed)
    if saved is not None:
        top.load({k.removeprefix("top."): v for k, v in saved.items() if k.startswith("top.")})
    return MasterPart(y=data.y[alignment.rows], top=top, own=own)
