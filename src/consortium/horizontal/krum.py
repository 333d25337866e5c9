"""Krum and Multi-Krum: keep the updates that are closest to their nearest neighbours.

Blanchard, El Mhamdi, Guerraoui, Stainer, "Machine Learning with Adversaries: Byzantine
Tolerant Gradient Descent", NeurIPS 2017.

With n valid updates of which up to f (``byzantine``) may be arbitrary, each update V_i gets
the score s(i) = Σ ‖V_i - V_j‖² over the n - f - 2 updates V_j closest to it (j ≠ i). Krum
takes the update with the lowest score as the new model; it needs n > 2f + 2. Multi-Krum
ranks the updates once by score and averages the m (``keep``) best; it needs n > 2f + 2 and
n ≥ m. m = 1 is Krum and m = n plain averaging; our default is m = n - f, the most updates
a selection can keep while still leaving room to drop all f Byzantine ones.

The average of Multi-Krum is the plain mean of the m selected updates, as the paper defines
it, not an example-weighted one: ``num_examples`` is reported by each party and a Byzantine
party could claim any count, so weighting by it would give back the leverage the selection
took away. As with the median, working on models instead of gradients changes nothing:
distances are unchanged by the shared starting model.

Equal scores are broken by party name (not by arrival order), so every launcher picks the
same updates.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

import numpy as np
from pydantic import Field, PositiveInt, validate_call

from consortium.horizontal._robust import Byzantine, RobustStrategy, StackRound
from consortium.horizontal.strategy import STRATEGIES, ServerState

__all__ = ["Krum", "MultiKrum", "krum_scores", "pairwise_sq_distances"]

_COLUMNS = 1 << 15  # columns per block: the float64 working copy stays ~n x 256 KiB


def _distances_from_gram(rows: np.ndarray, centre: int) -> np.ndarray:
    """Squared distances via the Gram matrix of ``rows - rows[centre]``, in float64, a block
    of columns at a time."""
    n = rows.shape[0]
    gram = np.zeros((n, n))
    for start in range(0, rows.shape[1], _COLUMNS):
        block = np.array(rows[:, start : start + _COLUMNS], dtype=np.float64)
        block -= block[centre]
        gram += block @ block.T
    sq = np.diag(gram).copy()
    dist = sq[:, None] + sq[None, :] - 2.0 * gram
    np.maximum(dist, 0.0, out=dist)
    np.fill_diagonal(dist, 0.0)
    return dist


def pairwise_sq_distances(rows: np.ndarray) -> np.ndarray:
    """The (n, n) matrix of squared Euclidean distances between the rows of ``rows``.

    Computed from a Gram matrix (fast, BLAS) after shifting every row by a central one:
    distances do not change under a shift, and ||a||^2 + ||b||^2 - 2 a.b only keeps its
    precision when a and b are short, i.e. when the shift is to a point among the honest
    updates. A first pass shifted by row 0 finds the row whose (n + 1) // 2 nearest
    neighbours are closest, which is among the majority cluster even if row 0 is an
    attacker far away; the second pass is shifted by that row.
    """
    n = rows.shape[0]
    first = _distances_from_gram(rows, 0)
    if n <= 2:
        return first
    k = (n + 1) // 2
    spread = np.sort(first, axis=1)[:, 1 : k + 1].sum(axis=1)  # column 0 is the self-distance
    centre = int(np.argmin(spread))
    return first if centre == 0 else _distances_from_gram(rows, centre)


def krum_scores(dist: np.ndarray, byzantine: int) -> np.ndarray:
    """s(i) = the sum of row i's n - f - 2 smallest squared distances to the other rows
    (no neighbours, so a score of 0, when n - f - 2 ≤ 0)."""
    n = dist.shape[0]
    k = n - byzantine - 2
    scores = np.zeros(n)
    if k <= 0:
        return scores
    for i in range(n):
        others = np.delete(dist[i], i)
        scores[i] = np.sum(np.partition(others, k - 1)[:k])
    return scores


def _ranked(acc: StackRound, scores: np.ndarray) -> list[int]:
    """Row indices from best (lowest) score to worst, equal scores in party-name order."""
    return sorted(range(acc.count), key=lambda i: (scores[i], acc.parties[i]))


def _mean_of(acc: StackRound, indices: list[int]) -> np.ndarray:
    """The plain mean of the given rows, summed in party-name order."""
    rows = acc.stack.rows
    total = np.zeros(rows.shape[1])
    for i in acc.by_party(indices):
        total += rows[i]
    return total / len(indices)


@STRATEGIES.decorator("krum")
class Krum(RobustStrategy):
    """The single update with the lowest Krum score becomes the model."""

    name = "krum"

    @validate_call
    def __init__(self, *, byzantine: Byzantine) -> None:
        self.byzantine = byzantine

    def minimum_updates(self) -> int:
        """Valid updates a round needs (checked against the topology when a job loads)."""
        return 2 * self.byzantine + 3

    def aggregate(
        self, round: int, state: ServerState, acc: StackRound, failures: Mapping[str, str]
    ) -> tuple[ServerState, dict[str, float]]:
        f = self.byzantine
        acc.require(
            self.name, 2 * f + 3, why=f"Krum needs n > 2f + 2 with f = {f}", failures=failures
        )
        scores = krum_scores(pairwise_sq_distances(acc.stack.rows), f)
        best = _ranked(acc, scores)[0]
        weights = acc.stack.unflatten(np.array(acc.stack.rows[best]))
        return ServerState(round=round, weights=weights), acc.metrics(selected=1.0)


@STRATEGIES.decorator("multikrum")
class MultiKrum(RobustStrategy):
    """The plain mean of the m updates with the lowest Krum scores."""

    name = "multikrum"

    @validate_call
    def __init__(
        self,
        *,
        byzantine: Byzantine,
        keep: Annotated[
            PositiveInt | None,
            Field(description="m: how many of the best-scored updates to average; n - f"),
        ] = None,
    ) -> None:
        self.byzantine = byzantine
        self.keep = keep

    def minimum_updates(self) -> int:
        """Valid updates a round needs (checked against the topology when a job loads)."""
        return max(2 * self.byzantine + 3, self.keep or 0)

    def aggregate(
        self, round: int, state: ServerState, acc: StackRound, failures: Mapping[str, str]
    ) -> tuple[ServerState, dict[str, float]]:
        f, keep = self.byzantine, self.keep
        if keep is None:
            needed, why = 2 * f + 3, f"Multi-Krum needs n > 2f + 2 with f = {f}"
        else:
            needed = max(2 * f + 3, keep)
            why = f"Multi-Krum needs n > 2f + 2 and n ≥ m with f = {f}, m = {keep}"
        acc.require(self.name, needed, why=why, failures=failures, setting="byzantine (or keep)")
        m = acc.count - f if keep is None else keep
        scores = krum_scores(pairwise_sq_distances(acc.stack.rows), f)
        chosen = _ranked(acc, scores)[:m]
        weights = acc.stack.unflatten(_mean_of(acc, chosen))
        return ServerState(round=round, weights=weights), acc.metrics(selected=float(m))
