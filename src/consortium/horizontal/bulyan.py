"""Bulyan: Krum to select, then a trimmed mean around the median, coordinate by coordinate.

El Mhamdi, Guerraoui, Rouault, "The Hidden Vulnerability of Distributed Learning in
Byzantium", ICML 2018.

With n valid updates of which up to f (``byzantine``) may be arbitrary, and n ≥ 4f + 3:

1. Selection. θ = n - 2f updates are chosen by applying Krum again and again: each time Krum
   (the score over the |R| - f - 2 nearest others, see :mod:`consortium.horizontal.krum`)
   picks the best of the updates R not yet chosen, and that update moves to the selection.
   When |R| - f - 2 ≤ 0 (only with f = 0) every score is 0 and the next party by name is
   taken.
2. Aggregation. For every coordinate, the β = θ - 2f selected values closest to the median of
   the θ selected values are averaged.

Unweighted, with ties broken by party name, for the reasons given in
:mod:`consortium.horizontal._robust`. With f = 0 it is the plain mean of every update.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from pydantic import validate_call

from consortium.horizontal._robust import Byzantine, RobustStrategy, StackRound
from consortium.horizontal.krum import krum_scores, pairwise_sq_distances
from consortium.horizontal.strategy import STRATEGIES, ServerState

__all__ = ["Bulyan", "mean_around_median"]

_COLUMNS = 1 << 14  # columns per block of the coordinate-wise step


def mean_around_median(rows: np.ndarray, selected: list[int], keep: int) -> np.ndarray:
    """Per coordinate, the mean of the ``keep`` values of ``rows[selected]`` closest to their
    median.

    Those values are a run of ``keep`` consecutive values in sorted order: the run whose
    farther end is nearest the median (equal distances: the lower run). Sorting once and
    choosing among the len(selected) - keep + 1 runs is cheaper than ranking distances.
    """
    theta = len(selected)
    runs = theta - keep + 1
    offsets = np.arange(keep)[:, None]
    out = np.empty(rows.shape[1])
    for start in range(0, rows.shape[1], _COLUMNS):
        values = np.sort(np.array(rows[selected, start : start + _COLUMNS], np.float64), axis=0)
        mid = theta // 2
        median = values[mid] if theta % 2 else (values[mid - 1] + values[mid]) / 2
        reach = np.maximum(median - values[:runs], values[keep - 1 :] - median)
        first = np.argmin(reach, axis=0)
        kept = np.take_along_axis(values, first + offsets, axis=0)
        out[start : start + _COLUMNS] = kept.mean(axis=0)
    return out


@STRATEGIES.decorator("bulyan")
class Bulyan(RobustStrategy):
    """Recursive-Krum selection of n - 2f updates, then a trimmed mean around the median."""

    name = "bulyan"

    @validate_call
    def __init__(self, *, byzantine: Byzantine) -> None:
        self.byzantine = byzantine

    def minimum_updates(self) -> int:
        """Valid updates a round needs (checked against the topology when a job loads)."""
        return 4 * self.byzantine + 3

    def select(self, acc: StackRound) -> list[int]:
        """The θ = n - 2f row indices recursive Krum picks, in the order it picks them."""
        f = self.byzantine
        dist = pairwise_sq_distances(acc.stack.rows)
        remaining = list(range(acc.count))
        chosen: list[int] = []
        while len(chosen) < acc.count - 2 * f:
            scores = krum_scores(dist[np.ix_(remaining, remaining)], f)
            best = min(range(len(remaining)), key=lambda j: (scores[j], acc.parties[remaining[j]]))
            chosen.append(remaining.pop(best))
        return chosen

    def aggregate(
        self, round: int, state: ServerState, acc: StackRound, failures: Mapping[str, str]
    ) -> tuple[ServerState, dict[str, float]]:
        f = self.byzantine
        acc.require(
            self.name, 4 * f + 3, why=f"Bulyan needs n ≥ 4f + 3 with f = {f}", failures=failures
        )
        chosen = acc.by_party(self.select(acc))
        keep = len(chosen) - 2 * f
        flat = mean_around_median(acc.stack.rows, chosen, keep)
        metrics = acc.metrics(selected=float(len(chosen)), kept=float(keep))
        return ServerState(round=round, weights=acc.stack.unflatten(flat)), metrics
