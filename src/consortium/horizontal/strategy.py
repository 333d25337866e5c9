"""The strategy contract: server state plus pure functions, no I/O.

The runtime owns rounds, waiting and transport. A strategy says what to send
(:meth:`Strategy.configure`), starts each round's accumulator (:meth:`Strategy.begin`),
into which the runtime folds each reply as it arrives (:meth:`Round.add`), and turns the
folded replies into the next state (:meth:`Strategy.aggregate`). The accumulator's type is
the strategy's own, so ``aggregate`` receives exactly what ``begin`` made.

A strategy's settings are the keyword-only arguments of its constructor. A job file gives
them as ``algorithm.strategy.args``; they are checked, when the job loads, against the model
:func:`settings_model` derives from the constructor's annotations (``Annotated[float,
Field(gt=0)]`` and the like), so a bad setting is an error naming the field.
"""

from __future__ import annotations

import inspect
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Literal, Protocol, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from consortium.errors import ConfigError
from consortium.registry import Registry
from consortium.wire import MetaValue

__all__ = [
    "STRATEGIES",
    "FitInstructions",
    "Round",
    "Schedule",
    "ServerState",
    "Strategy",
    "Weights",
    "build_strategy",
    "settings_model",
]

Weights = Mapping[str, np.ndarray]
Schedule = Literal["sync", "async"]


@dataclass(frozen=True, slots=True)
class ServerState:
    round: int
    weights: Weights
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FitInstructions:
    """What every selected trainer receives: the model, scalar settings for the client
    (``config``; ``config["client"]`` names a built-in client-side correction, e.g.
    ``"fedprox"``), and auxiliary tensors a client algorithm needs (named with the ``aux/``
    prefix, e.g. SCAFFOLD's server control variate)."""

    weights: Weights
    config: Mapping[str, MetaValue]
    aux: Weights = field(default_factory=dict)


class Round(Protocol):
    """One round's accumulator, made by :meth:`Strategy.begin`."""

    def add(self, party: str, weights: Weights, meta: Mapping[str, MetaValue]) -> str | None:
        """Fold one reply in; return a reason instead when the reply is unusable (it is then
        recorded as that party's failure, never raised)."""
        ...


RoundT = TypeVar("RoundT", bound=Round)


class Strategy(ABC, Generic[RoundT]):
    """An aggregation rule. Subclasses implement :meth:`begin` and :meth:`aggregate`; every
    other hook has a default that suits a synchronous averaging rule.

    The constructor takes the settings, keyword-only, annotated so that
    :func:`settings_model` can check them; it has no side effects. State that changes
    between rounds lives in :class:`ServerState`, never on the strategy.
    """

    schedule: ClassVar[Schedule] = "sync"
    """``sync``: rounds of selected trainers with quorum and deadline. ``async``: trainers
    never wait for each other; the server steps whenever :meth:`ready` says so."""

    def init(self, weights: Weights) -> ServerState:
        """The state before round 1, from the initial model."""
        return ServerState(round=0, weights=dict(weights))

    def configure(self, round: int, state: ServerState) -> FitInstructions:
        """What the trainers of ``round`` receive. Default: the current model."""
        return FitInstructions(weights=state.weights, config={})

    @abstractmethod
    def begin(self, round: int, state: ServerState, *, expected: int | None = None) -> RoundT:
        """A fresh accumulator for ``round``. ``expected`` is how many replies can arrive (the
        parties the model was sent to; None on the asynchronous schedule): a rule that keeps
        every update preallocates that many rows."""

    @abstractmethod
    def aggregate(
        self, round: int, state: ServerState, acc: RoundT, failures: Mapping[str, str]
    ) -> tuple[ServerState, dict[str, float]]:
        """The state after ``round`` and the round's metrics. ``failures`` names the parties
        whose replies were refused or missing, and why. Raise TooFewUpdates (see
        :mod:`consortium.errors`) when the accumulated replies cannot give a result."""

    def minimum_updates(self) -> int:
        """The fewest valid updates a round needs (Krum: 2f + 3). A job whose quorum and
        topology cannot guarantee that many is refused when it loads."""
        return 1

    def ready(self, acc: RoundT) -> bool:
        """Asynchronous schedule: whether ``acc`` holds enough updates for a server step."""
        return True

    def concurrency(self) -> int | None:
        """Asynchronous schedule: how many trainers train at once (None: all of them)."""
        return None


STRATEGIES: Registry[Callable[..., Strategy[Any]]] = Registry("strategy")
"""Strategy name -> its class (or any callable taking the settings as keywords)."""


def settings_model(factory: Callable[..., Any]) -> type[BaseModel]:
    """A strict pydantic model of ``factory``'s keyword-only arguments (a class: its
    constructor's), from their annotations and defaults. Positional parameters are refused:
    settings are named in a job file."""
    target = factory.__init__ if isinstance(factory, type) else factory  # type: ignore[misc]
    hints = typing.get_type_hints(target, include_extras=True)
    fields: dict[str, Any] = {}
    for name, param in inspect.signature(factory).parameters.items():
        if param.kind is param.VAR_KEYWORD:
            continue
        if param.kind is not param.KEYWORD_ONLY:
            raise TypeError(f"{factory!r}: setting {name!r} must be keyword-only")
        default = ... if param.default is param.empty else param.default
        fields[name] = (hints.get(name, Any), default)
    title = getattr(factory, "__name__", "Strategy")
    config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)
    return create_model(f"{title}Settings", __config__=config, **fields)


def build_strategy(name: str, args: Mapping[str, Any]) -> Strategy[Any]:
    """The registered strategy ``name`` built with ``args``, checked first.

    A bad setting raises :class:`ConfigError` naming ``algorithm.strategy.args.<field>``;
    a constructor that refuses a combination of settings (ValueError) names the strategy.
    """
    factory = STRATEGIES.get(name)
    try:
        settings_model(factory).model_validate(dict(args))
        return factory(**args)
    except ValidationError as exc:
        raise ConfigError(describe_args_error(name, exc)) from None
    except (ValueError, TypeError) as exc:  # a constructor's checks across settings
        raise ConfigError(f"algorithm.strategy.args: {exc} (strategy {name!r})") from None


def describe_args_error(name: str, exc: ValidationError) -> str:
    """One line per invalid setting, each naming ``algorithm.strategy.args.<field>``."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in ("algorithm", "strategy", "args", *err["loc"]))
        msg = "unknown key (check its spelling)" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"{loc}: {msg} (strategy {name!r})")
    return "\n".join(lines)
