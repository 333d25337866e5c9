"""Validated settings of the horizontal protocol (the job file's ``algorithm`` section)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, PositiveFloat, PositiveInt, ValidationInfo, field_validator

from consortium.errors import ConfigError, PluginError
from consortium.horizontal.clients import CLIENTS
from consortium.horizontal.selection import SELECTORS
from consortium.horizontal.strategy import STRATEGIES, Strategy, build_strategy, settings_model
from consortium.registry import Registry
from consortium.runtime import ProtocolSettings, quorum_size
from consortium.spec import PluginRef, Strict
from consortium.topology import Topology

__all__ = ["Evaluation", "HorizontalSettings", "LocalTraining", "SemiSynchronous", "StrategyRef"]


class LocalTraining(Strict):
    epochs: PositiveInt = 1
    batch_size: PositiveInt = 32
    lr: PositiveFloat = 0.05


class SemiSynchronous(Strict):
    """Each trainer's local epochs sized to a shared time budget from its measured speed
    (MetisFL's semi-synchronous protocol): fast trainers do more local work per round,
    slow ones less, so that all finish at about the same time."""

    budget_s: PositiveFloat = Field(description="seconds of local training per round")
    max_epochs: PositiveInt = Field(default=20, description="cap on any trainer's epochs")


class StrategyRef(PluginRef):
    """A registered strategy and its settings, checked by building the strategy once.

    Strategy constructors have no side effects, so a bad setting fails when the job file is
    loaded, as ``algorithm.strategy.args.<field>``, not when the aggregator starts.
    """

    # Validated when left out too: a strategy may have required settings (Krum's byzantine).
    args: dict[str, Any] = Field(default_factory=dict, validate_default=True)

    @field_validator("args")
    @classmethod
    def _buildable(cls, args: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        name = info.data.get("name")
        if not isinstance(name, str) or name not in STRATEGIES:
            return args  # HorizontalSettings names the unknown strategy
        factory = STRATEGIES.get(name)
        # A ValidationError propagates as is: pydantic nests its errors here, so each one
        # is reported as args.<field>.
        settings_model(factory).model_validate(args)
        try:
            factory(**args)
        except (ValueError, TypeError) as exc:  # the constructor's checks across settings
            raise ValueError(f"strategy {name!r}: {exc}") from None
        return args

    def build(self) -> Strategy[Any]:
        """The strategy these settings name."""
        return build_strategy(self.name, self.args)


class Evaluation(Strict):
    """Federated evaluation: trainers score each new global model on their own held-out rows
    (``data.roles.trainer.holdout``) and the aggregator combines their metrics."""

    federated: bool = False
    every: PositiveInt = Field(default=1, description="evaluate every this many rounds")
    aggregation: PluginRef = Field(
        default=PluginRef(name="weighted_mean"), description="how the trainers' metrics combine"
    )


class HorizontalSettings(ProtocolSettings):
    protocol: Literal["horizontal"] = "horizontal"
    strategy: StrategyRef = StrategyRef(name="fedavg")
    rounds: PositiveInt
    local: LocalTraining = LocalTraining()
    client: PluginRef = Field(
        default=PluginRef(name="sgd"),
        description="what trainers do with the model they receive (a registered client)",
    )
    selection: PluginRef = PluginRef(name="all")
    quorum: float = Field(
        default=1.0, gt=0, le=1, description="fraction of selected trainers that must reply"
    )
    round_timeout: PositiveFloat = Field(default=300.0, description="seconds to wait for replies")
    join_timeout: PositiveFloat = Field(
        default=120.0, description="seconds to wait for trainers to join"
    )
    evaluation: Evaluation = Evaluation()
    semi_synchronous: SemiSynchronous | None = Field(
        default=None, description="size local epochs to a time budget (first round: local.epochs)"
    )

    @field_validator("strategy", "client", "selection")
    @classmethod
    def _registered(cls, ref: PluginRef, info: ValidationInfo) -> PluginRef:
        registry: dict[str, Registry[Any]] = {
            "strategy": STRATEGIES,
            "client": CLIENTS,
            "selection": SELECTORS,
        }
        try:
            registry[str(info.field_name)].get(ref.name)
        except PluginError as exc:
            raise ValueError(str(exc)) from None
        return ref

    def check_topology(self, topology: Topology) -> None:
        """Refuse, at load time, a selection the topology cannot satisfy, and a strategy that
        needs more updates per round than the topology and the quorum can guarantee (Krum's
        n > 2f + 2, say)."""
        need = self.strategy.build().minimum_updates()
        selector = SELECTORS.get(self.selection.name)(**self.selection.args)
        for party in topology.parties:
            children = topology.children(party.name)
            if not children or party.program not in ("aggregator", "regional"):
                continue
            selector.check(len(children), party.name)
            if need <= 1:
                continue
            selected = len(selector.select(1, children, seed=0))
            floor = quorum_size(self.quorum, selected)
            if floor < need:
                raise ConfigError(
                    f"algorithm.strategy.args: {self.strategy.name!r} needs {need} valid "
                    f"updates per round, but {party.name!r} may aggregate as few as {floor} "
                    f"(quorum {self.quorum:g} of {selected} selected); lower the strategy's "
                    "byzantine count, or raise algorithm.quorum or the number of trainers"
                )
