"""Record alignment: the private set intersection run by the master with every member, the
master's split of the aligned records, its batch schedule, and local standardisation.

The master runs :class:`~consortium.privacy.psi.PsiReceiver` once per member (see
:mod:`consortium.privacy.psi` for who learns what), intersects the matches, puts the shared
records in its own row order, picks the test records, and sends each member the positions
of the aligned records in that member's own shuffled list. From then on every request names
the aligned positions it is about.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from consortium.errors import RunFailed
from consortium.privacy.psi import Match, PsiError, PsiReceiver, intersect
from consortium.vertical.exchange import Exchange, Expect
from consortium.vertical.messages import Kind
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
    io: Exchange,
    members: Sequence[str],
    *,
    ids: Sequence[str],
    domain: str,
    test_fraction: float,
    width: int,
    rng: np.random.Generator,
    predict: bool = False,
) -> Alignment:
    """Run the intersection with every member and send each its aligned positions (all in
    round 0); ``rng`` draws the test records.

    With ``predict``, no record trains: every aligned record is one to predict for.
    """
    receiver = PsiReceiver(ids, domain=domain)
    offer = receiver.offer()
    for member in members:
        io.send(Kind.PSI_OFFER, member, round=0, tensors={"points": offer})

    def match(msg: Message) -> Match:
        try:
            return receiver.match(msg.tensors["ids"], msg.tensors["points"])
        except (PsiError, KeyError):
            raise RunFailed("invalid intersection reply") from None

    (matches,) = io.collect(0, Expect(Kind.PSI_REPLY, tuple(members), match))
    rows, positions = intersect(matches)
    if len(rows) == 0:
        raise RunFailed("the parties share no records: the private intersection is empty")
    if predict:
        order, n_train = np.arange(len(rows)), 0
    else:
        order, n_train = split_records(len(rows), test_fraction, rng)
    for member, pos in zip(members, positions, strict=True):
        io.send(
            Kind.ALIGN,
            member,
            round=0,
            meta={"train": n_train, "width": width},
            tensors={"positions": pos[order]},
        )

    def features(msg: Message) -> int:
        count = msg.meta.get("features")
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise RunFailed(f"features must be a positive integer, got {count!r}")
        return count

    (counts,) = io.collect(0, Expect(Kind.READY, tuple(members), features))
    return Alignment(
        rows=rows[order], n_train=n_train, features=dict(zip(members, counts, strict=True))
    )
