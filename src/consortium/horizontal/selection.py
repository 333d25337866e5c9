"""Which trainers take part in a round. Randomness comes from (seed, round) only, so every
launcher selects the same trainers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from consortium.errors import ConfigError
from consortium.registry import Registry
from consortium.runtime import derive_rng

__all__ = ["SELECTORS", "AllSelector", "RandomSelector", "Selector"]


class Selector(Protocol):
    def select(self, round: int, available: Sequence[str], *, seed: int) -> list[str]: ...

    def check(self, available: int, aggregator: str) -> None:
        """Refuse (ConfigError) settings that cannot select from the ``available`` parties
        that report to ``aggregator``."""


SELECTORS: Registry[type] = Registry("selector")


@SELECTORS.decorator("all")
class AllSelector:
    """Every available trainer, every round."""

    def select(self, round: int, available: Sequence[str], *, seed: int) -> list[str]:
        return list(available)

    def check(self, available: int, aggregator: str) -> None:
        pass


@SELECTORS.decorator("random")
class RandomSelector:
    """``count`` trainers (or a ``fraction`` of them) drawn uniformly without replacement."""

    def __init__(self, *, count: int | None = None, fraction: float | None = None) -> None:
        if (count is None) == (fraction is None):
            raise ConfigError("algorithm.selection.args: give exactly one of count or fraction")
        if count is not None and count < 1:
            raise ConfigError("algorithm.selection.args.count must be at least 1")
        if fraction is not None and not 0 < fraction <= 1:
            raise ConfigError("algorithm.selection.args.fraction must be in (0, 1]")
        self._count = count
        self._fraction = fraction

    def check(self, available: int, aggregator: str) -> None:
        if self._count is not None and self._count > available:
            raise ConfigError(
                f"algorithm.selection.args.count: {self._count} parties asked for each round, "
                f"but only {available} report to {aggregator!r}"
            )

    def select(self, round: int, available: Sequence[str], *, seed: int) -> list[str]:
        if self._count is not None:
            k = min(self._count, len(available))
        else:
            k = max(1, round_half_up(len(available) * (self._fraction or 1.0)))
        rng = derive_rng(seed, round, 0x5E1EC7)
        picked = rng.choice(len(available), size=k, replace=False)
        return [available[i] for i in sorted(picked)]


def round_half_up(x: float) -> int:
    return int(x + 0.5)
