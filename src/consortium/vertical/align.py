"""Record alignment: the private set intersection run by the master with every member, the
master's split of the aligned records, its batch schedule, and local standardisation.

The master runs :class:`~consortium.privacy.psi.PsiReceiver` once per member (see
:mod:`consortium.privacy.psi` for who learns what), intersects the matches, puts the shared
records in its own row order, picks the test records, and sends each member the positions
of the aligned records in that member's own shuffled list. From then on every request names
the aligned positions it is about.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from consortium.errors import RunFailed
from consortium.privacy.psi import Match, PsiError, PsiReceiver, intersect
from consortium.runtime import PartyContext, gather
from consortium.vertical.messages import Kind
from consortium.vertical.settings import VerticalSettings
from consortium.wire import Message

__all__ = [
    "Alignment",
    "align_as_master",
    "batches",
    "fit_standardizer",
    "split_records",
]

SPLIT_KEY = 0x5B17  # keeps the master's train/test draw apart from its other random streams
EPOCH_KEY = 0xE90C


@dataclass(frozen=True, slots=True)
class Alignment:
    """The master's view: its own rows of the aligned records (training rows first), how
    many train, and how many columns each member holds."""

    rows: np.ndarray
    n_train: int
    features: dict[str, int] = field(default_factory=dict)


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


def fit_standardizer(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and scale of each column of the training rows (a constant column keeps scale 1)."""
    values = np.asarray(x, dtype=np.float64)
    mean = values.mean(axis=0)
    scale = np.where(np.ptp(values, axis=0) == 0.0, 1.0, values.std(axis=0))
    return mean, scale


def align_as_master(
    ctx: PartyContext,
    members: Sequence[str],
    *,
    ids: Sequence[str],
    test_fraction: float,
    width: int,
    settings: VerticalSettings,
    predict: bool = False,
) -> Alignment:
    """Run the intersection with every member and send each its aligned positions.

    With ``predict``, no record trains: every aligned record is one to predict for.
    """
    receiver = PsiReceiver(ids, domain=ctx.job_id)
    offer = receiver.offer()
    for member in members:
        ctx.send(Kind.PSI_OFFER, member, tensors={"points": offer})
    matches: dict[str, Match] = {}

    def on_match(msg: Message) -> str | None:
        try:
            matches[msg.sender] = receiver.match(msg.tensors["ids"], msg.tensors["points"])
        except (PsiError, KeyError):
            return "invalid intersection reply"
        return None

    _all(ctx, members, Kind.PSI_REPLY, settings, on_match)
    rows, positions = intersect([matches[m] for m in members])
    if len(rows) == 0:
        raise RunFailed("the parties share no records: the private intersection is empty")
    if predict:
        order, n_train = np.arange(len(rows)), 0
    else:
        order, n_train = split_records(len(rows), test_fraction, ctx.rng(SPLIT_KEY))
    for member, pos in zip(members, positions, strict=True):
        ctx.send(
            Kind.ALIGN,
            member,
            meta={"train": n_train, "width": width},
            tensors={"positions": pos[order]},
        )
    features: dict[str, int] = {}

    def on_ready(msg: Message) -> str | None:
        count = msg.meta.get("features")
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            return f"features must be a positive integer, got {count!r}"
        features[msg.sender] = count
        return None

    _all(ctx, members, Kind.READY, settings, on_ready)
    if ctx.tracker is not None:
        ctx.tracker.event("aligned", records=len(rows), train=n_train)
    return Alignment(rows=rows[order], n_train=n_train, features=features)


def _all(
    ctx: PartyContext,
    members: Sequence[str],
    kind: str,
    settings: VerticalSettings,
    on_reply: Callable[[Message], str | None],
) -> None:
    """A gather that needs every member (vertical training cannot go on without one)."""
    gather(
        ctx,
        expected=members,
        kind=kind,
        round=0,
        timeout=settings.round_timeout,
        quorum=len(members),
        on_reply=on_reply,
    )
