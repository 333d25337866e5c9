"""The vertical models a job can name (``model: {name: ..., args: ...}``): ``linreg``,
``logreg`` and ``splitnn``. Each says which task it fits, how wide a bottom's output is, and
how to build a bottom (at every party with features) and the top (at the master)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import ValidationError

from consortium.errors import ConfigError, PluginError
from consortium.ml.datasets import Task
from consortium.registry import Registry
from consortium.spec import Strict
from consortium.vertical.parts import Bottom, LinearBottom, LinearTop, Top
from consortium.vertical.settings import LinearArgs, SplitNNArgs, VerticalSettings

if TYPE_CHECKING:
    from consortium.vertical.data import VerticalData

__all__ = ["MODELS", "LinearKind", "ModelKind", "SplitNNKind", "VerticalModel", "resolve_model"]


class ModelKind(Protocol):
    args_model: type[Strict]
    tasks: frozenset[Task]

    def check(self, args: Any) -> None:
        """ConfigError naming the field for arguments that cannot build the model."""

    def width(self, args: Any, data: VerticalData) -> int:
        """The width of every bottom's output."""

    def bottom(
        self, args: Any, data: VerticalData, *, width: int, settings: VerticalSettings, seed: int
    ) -> Bottom:
        """A party's bottom over its own columns of ``data``."""

    def top(
        self, args: Any, data: VerticalData, *, parts: int, settings: VerticalSettings, seed: int
    ) -> Top:
        """The master's top over ``parts`` bottom outputs."""


MODELS: Registry[ModelKind] = Registry("vertical model")


class LinearKind:
    """Linear (``regression``) or logistic/softmax (``classification``) regression."""

    args_model: type[Strict] = LinearArgs

    def __init__(self, task: Task) -> None:
        self.tasks = frozenset([task])

    def check(self, args: Any) -> None:
        return None

    def width(self, args: Any, data: VerticalData) -> int:
        return 1 if data.task == "regression" or data.n_classes == 2 else int(data.n_classes or 0)

    def bottom(
        self, args: Any, data: VerticalData, *, width: int, settings: VerticalSettings, seed: int
    ) -> Bottom:
        return LinearBottom(
            n_features=data.n_features, n_outputs=width, lr=settings.lr, l2=settings.l2
        )

    def top(
        self, args: Any, data: VerticalData, *, parts: int, settings: VerticalSettings, seed: int
    ) -> Top:
        return LinearTop(task=data.task, n_outputs=self.width(args, data), lr=settings.lr)


class SplitNNKind:
    """A split neural network (see :mod:`consortium.vertical.splitnn`)."""

    args_model: type[Strict] = SplitNNArgs
    tasks = frozenset[Task](["classification", "regression"])

    def check(self, args: Any) -> None:
        from consortium.vertical.splitnn import NETS

        for where, ref in (("bottom", args.bottom), ("top", args.top)):
            try:
                NETS.get(ref.name)
            except PluginError as exc:
                raise ConfigError(f"model.args.{where}.name: {exc}") from None

    def width(self, args: Any, data: VerticalData) -> int:
        return int(args.embedding)

    def bottom(
        self, args: Any, data: VerticalData, *, width: int, settings: VerticalSettings, seed: int
    ) -> Bottom:
        from consortium.vertical.splitnn import TorchBottom, build_net

        net = build_net(
            args.bottom.name,
            args.bottom.args,
            in_features=data.n_features,
            out_features=width,
            image_shape=data.image_shape,
            seed=seed,
        )
        return TorchBottom(net, lr=settings.lr, momentum=settings.momentum, l2=settings.l2)

    def top(
        self, args: Any, data: VerticalData, *, parts: int, settings: VerticalSettings, seed: int
    ) -> Top:
        from consortium.vertical.splitnn import TorchTop, build_net

        net = build_net(
            args.top.name,
            args.top.args,
            in_features=args.embedding * (parts if args.combine == "concat" else 1),
            out_features=1 if data.task == "regression" else int(data.n_classes or 0),
            image_shape=None,
            seed=seed,
        )
        return TorchTop(
            net,
            combine=args.combine,
            task=data.task,
            lr=settings.lr,
            momentum=settings.momentum,
            l2=settings.l2,
        )


MODELS.register("linreg", LinearKind("regression"))
MODELS.register("logreg", LinearKind("classification"))
MODELS.register("splitnn", SplitNNKind())


@dataclass(frozen=True, slots=True)
class VerticalModel:
    """A job's model: its name, kind and validated arguments."""

    name: str
    kind: ModelKind
    args: Any


def resolve_model(name: str, args: Mapping[str, Any]) -> VerticalModel:
    """Look up and validate the job's ``model``; ConfigError names the field."""
    kind = MODELS.get(name)
    try:
        parsed = kind.args_model.model_validate(dict(args))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"model.args.{where}: {first['msg']}") from None
    kind.check(parsed)
    return VerticalModel(name=name, kind=kind, args=parsed)
