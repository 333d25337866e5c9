"""Bring your own aggregation rule: the strategy contract and its building blocks.

A strategy is server state plus pure functions, no I/O (the runtime owns rounds, waiting and
transport). Subclass :class:`Strategy` with the type of your round's accumulator, implement
``begin`` and ``aggregate``, give the constructor keyword-only, annotated settings, and
register it by name::

    @register_strategy("fedmean")
    class FedMean(Strategy[MeanRound]):
        def __init__(self, *, scale: Annotated[float, Field(gt=0)] = 1.0) -> None: ...
        def begin(self, round, state, *, expected=None) -> MeanRound: ...
        def aggregate(self, round, state, acc: MeanRound, failures): ...

A job file then names it (``algorithm.strategy: {name: fedmean, args: {scale: 0.5}}``, with
the module under ``plugins:``), or ``consortium.run(job, strategy=FedMean(scale=0.5))``
runs an instance in a simulation. ``examples/custom_strategy.py`` is a whole one;
``docs/extending.md`` walks through it.
"""

from __future__ import annotations

import typing
from collections import abc

from consortium.errors import TooFewUpdates
from consortium.horizontal import (
    STRATEGIES,
    Bulyan,
    FedAdagrad,
    FedAdam,
    FedAvg,
    FedAvgM,
    FedBuff,
    FedDyn,
    FedMedian,
    FedProx,
    FedTrimmedAvg,
    FedYogi,
    FitInstructions,
    Krum,
    MultiKrum,
    Round,
    Scaffold,
    ServerState,
    Strategy,
    UpdateStack,
    WeightedSum,
    build_strategy,
    check_update,
    settings_model,
)
from consortium.horizontal.strategy import Schedule, Weights

__all__ = [
    "STRATEGIES",
    "Bulyan",
    "FedAdagrad",
    "FedAdam",
    "FedAvg",
    "FedAvgM",
    "FedBuff",
    "FedDyn",
    "FedMedian",
    "FedProx",
    "FedTrimmedAvg",
    "FedYogi",
    "FitInstructions",
    "Krum",
    "MultiKrum",
    "Round",
    "Scaffold",
    "Schedule",
    "ServerState",
    "Strategy",
    "TooFewUpdates",
    "UpdateStack",
    "WeightedSum",
    "Weights",
    "build_strategy",
    "check_update",
    "register_strategy",
    "settings_model",
]

_T = typing.TypeVar("_T", bound=abc.Callable[..., Strategy])


def register_strategy(name: str, *, force: bool = False) -> abc.Callable[[_T], _T]:
    """Class decorator: register a strategy under ``name`` (an error if the name is taken,
    unless ``force``)."""
    return STRATEGIES.decorator(name, force=force)  # type: ignore[return-value]
