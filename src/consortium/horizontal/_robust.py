"""What the robust strategies share: a round that keeps every valid update as one row.

A robust rule (the median, Krum, Bulyan) looks at all the updates together, so its round
cannot fold replies into a running sum: it copies each one into a preallocated
(capacity, P) :class:`UpdateStack`, where capacity is the number of parties the model was
sent to (``begin(..., expected=...)``). Memory is O(parties x model), allocated once.

The rules are unweighted: a party's ``num_examples`` is checked but not trusted, because a
Byzantine party could claim any count and outweigh the others. Ties between updates are
broken by party name, so the result does not depend on the order replies arrived in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, ClassVar

import numpy as np
from pydantic import Field, NonNegativeInt

from consortium.horizontal._common import num_examples, too_few_updates
from consortium.horizontal.aggregate import UpdateStack, check_update
from consortium.horizontal.strategy import ServerState, Strategy, Weights
from consortium.wire import MetaValue

__all__ = ["Byzantine", "RobustStrategy", "StackRound"]

Byzantine = Annotated[NonNegativeInt, Field(description="f: how many updates may be Byzantine")]
"""The ``byzantine`` setting of Krum, Multi-Krum and Bulyan."""


class StackRound:
    """Every valid update of one round, one row each, with who sent it."""

    def __init__(self, *, strategy: str, reference: Weights, expected: int | None) -> None:
        if expected is None:
            raise ValueError(
                f"strategy {strategy!r} keeps every update: begin() needs expected=<the "
                "number of parties the model was sent to>"
            )
        self._reference = reference
        self.capacity = max(1, expected)
        self.stack = UpdateStack(like=reference, capacity=self.capacity)
        self.parties: list[str] = []

    @property
    def count(self) -> int:
        return len(self.parties)

    def add(self, party: str, weights: Weights, meta: Mapping[str, MetaValue]) -> str | None:
        n = num_examples(meta)
        if isinstance(n, str):
            return n
        reason = check_update(weights, self._reference)
        if reason is not None:
            return reason
        if self.count >= self.capacity:
            return f"more replies than the {self.capacity} parties the model was sent to"
        self.stack.add(weights, float(n))
        self.parties.append(party)
        return None

    def require(
        self,
        strategy: str,
        needed: int,
        *,
        why: str,
        failures: Mapping[str, str],
        setting: str | None = "byzantine",
    ) -> None:
        """Raise TooFewUpdates unless at least ``needed`` valid updates arrived."""
        if self.count < needed:
            raise too_few_updates(
                strategy,
                needed=needed,
                received=self.count,
                why=why,
                failures=failures,
                setting=setting,
            )

    def by_party(self, indices: list[int] | None = None) -> list[int]:
        """Row indices (all, or the given ones) in party-name order."""
        rows = range(self.count) if indices is None else indices
        return sorted(rows, key=lambda i: self.parties[i])

    def metrics(self, **extra: float) -> dict[str, float]:
        examples = float(np.sum(self.stack.weights)) if self.count else 0.0
        return {"examples": examples, "replies": float(self.count), **extra}


class RobustStrategy(Strategy[StackRound]):
    """The round of a rule that needs every update at once; subclasses name themselves
    (``name``, for errors) and implement :meth:`aggregate` on the :class:`StackRound`."""

    name: ClassVar[str]

    def begin(self, round: int, state: ServerState, *, expected: int | None = None) -> StackRound:
        return StackRound(strategy=self.name, reference=state.weights, expected=expected)
