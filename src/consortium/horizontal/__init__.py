"""Horizontal federated learning: trainers hold different rows of the same features."""

from consortium.horizontal import data, regional, ring  # noqa: F401 (each registers its part)
from consortium.horizontal.aggregate import UpdateStack, WeightedSum, check_update
from consortium.horizontal.bulyan import Bulyan
from consortium.horizontal.clients import AUX, CLIENTS, Client, FitConfig, sgd_client
from consortium.horizontal.fedavg import FedAvg
from consortium.horizontal.fedavgm import FedAvgM
from consortium.horizontal.fedbuff import FedBuff
from consortium.horizontal.feddyn import FedDyn
from consortium.horizontal.fedmedian import FedMedian
from consortium.horizontal.fedopt import FedAdagrad, FedAdam, FedYogi
from consortium.horizontal.fedprox import FedProx
from consortium.horizontal.fedtrimmedavg import FedTrimmedAvg
from consortium.horizontal.krum import Krum, MultiKrum
from consortium.horizontal.programs import Trainer
from consortium.horizontal.scaffold import Scaffold
from consortium.horizontal.selection import SELECTORS, AllSelector, RandomSelector, Selector
from consortium.horizontal.settings import HorizontalSettings, StrategyRef
from consortium.horizontal.strategy import (
    STRATEGIES,
    FitInstructions,
    Round,
    ServerState,
    Strategy,
    build_strategy,
    settings_model,
)
from consortium.runtime import PROTOCOLS as _PROTOCOLS

_PROTOCOLS.register("horizontal", HorizontalSettings)

__all__ = [
    "AUX",
    "CLIENTS",
    "SELECTORS",
    "STRATEGIES",
    "AllSelector",
    "Bulyan",
    "Client",
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
    "FitConfig",
    "FitInstructions",
    "HorizontalSettings",
    "Krum",
    "MultiKrum",
    "RandomSelector",
    "Round",
    "Scaffold",
    "Selector",
    "ServerState",
    "Strategy",
    "StrategyRef",
    "Trainer",
    "UpdateStack",
    "WeightedSum",
    "build_strategy",
    "check_update",
    "settings_model",
    "sgd_client",
]
