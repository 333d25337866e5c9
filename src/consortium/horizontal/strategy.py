"""The strategy contract: server state plus pure functions, no I/O.

The runtime owns rounds, waiting and transport. A strategy only says what to send
(:meth:`Strategy.configure`), how to fold one reply in (:meth:`Round.add`, as replies
arrive) and how to turn the folded replies into the next state (:meth:`Strategy.aggregate`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from pydantic import ValidationError

from consortium.registry import Registry
from consortium.wire import MetaValue

__all__ = ["STRATEGIES", "FitInstructions", "Round", "ServerState", "Strategy", "build_strategy"]

Weights = Mapping[str, np.ndarray]


@dataclass(frozen=True, slots=True)
class ServerState:
    round: int
    weights: Weights
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FitInstructions:
    """What every selected trainer receives: the model, scalar settings, and auxiliary
    tensors a client algorithm needs (named with the ``aux/`` prefix, e.g. SCAFFOLD's
    server control variate)."""

    weights: Weights
    config: Mapping[str, MetaValue]
    aux: Weights = field(default_factory=dict)


class Round(Protocol):
    """One round's accumulator, created by :meth:`Strategy.begin`."""

    def add(self, party: str, weights: Weights, meta: Mapping[str, MetaValue]) -> str | None:
        """Fold one reply in; return a reason instead when the reply is unusable."""
        ...


class Strategy(Protocol):
    def init(self, weights: Weights) -> ServerState: ...

    def configure(self, round: int, state: ServerState) -> FitInstructions: ...

    def begin(self, round: int, state: ServerState, *, expected: int | None = None) -> Round:
        """A fresh accumulator for ``round``. ``expected`` is how many replies can arrive (the
        parties the model was sent to): strategies that keep every update (Krum, the median)
        preallocate that many rows and refuse to start without it."""
        ...

    def aggregate(
        self, round: int, state: ServerState, acc: Round, failures: Mapping[str, str]
    ) -> tuple[ServerState, dict[str, float]]: ...


STRATEGIES: Registry[type] = Registry("strategy")


def build_strategy(name: str, args: Mapping[str, Any]) -> Strategy:
    """Instantiate a registered strategy; its constructor validates ``args``.

    A bad setting raises :class:`ConfigError` naming ``algorithm.strategy.args.<field>``.
    Constructors have no side effects, so the job loader builds the strategy once to check
    its settings (see :class:`consortium.horizontal.settings.StrategyRef`).
    """
    from consortium.errors import ConfigError

    cls = STRATEGIES.get(name)
    try:
        strategy: Strategy = cls(**args)
    except ValidationError as exc:
        raise ConfigError(_describe_args_error(name, exc)) from None
    except TypeError as exc:
        raise ConfigError(f"algorithm.strategy.args for {name!r}: {exc}") from None
    return strategy


def _describe_args_error(name: str, exc: ValidationError) -> str:
    """One line per invalid setting, each naming ``algorithm.strategy.args.<field>``."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in ("algorithm", "strategy", "args", *err["loc"]))
        msg = "unknown key (check its spelling)" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"{loc}: {msg} (strategy {name!r})")
    return "\n".join(lines)
