"""The vertical models a job can name (``model: {name: ..., args: ...}``): ``linreg``,
``logreg`` and ``splitnn``. Each says which task it fits, how wide a bottom's output is, and
how to build a bottom (at every party with features) and the top (at the master)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import ValidationError

from consortium.errors import ConfigError, PluginError
from consortium.ml.datasets import Task
from consortium.registry import Registry
from consortium.spec import Strict
from consortium.vertical.parts import Bottom, LinearBottom, LinearTop, Top
from consortium.vertical.settings import LinearArgs, SplitNNArgs, VerticalSettings

__all__ = ["MODELS", "LinearKind", "ModelKind", "SplitNNKind", "VerticalModel", "resolve_model"]


class ModelKind(Protocol):
    args_model: type[Strict]
    tasks: frozenset[Task]

    def check(self, args: Any) -> None:
        """ConfigError naming the field for arguments that cannot build the model."""
        ...

    def width(self, args: Any, *, task: Task, n_classes: int | None) -> int:
        """The width of every bottom's output."""
        ...

    def bottom(
        self,
        args: Any,
        *,
        n_features: int,
        image_shape: Sequence[int] | None,
        width: int,
        settings: VerticalSettings,
        seed: int,
    ) -> Bottom: ...

    def top(
        self,
        args: Any,
        *,
        widths: Sequence[int],
        task: Task,
        n_classes: int | None,
        settings: VerticalSettings,
        seed: int,
    ) -> Top: ...


MODELS: Registry[ModelKind] = Registry("vertical model")


class LinearKind:
    """Linear (``regression``) or logistic/softmax (``classification``) regression."""

    args_model: type[Strict] = LinearArgs

    def __init__(self, task: Task) -> None:
        self.tasks = frozenset([task])

    def check(self, args: Any) -> None:
        return None

    def width(self, args: Any, *, task: Task, n_classes: int | None) -> int:
        return 1 if task == "regression" or n_classes == 2 else int(n_classes or 0)

    def bottom(
        self,
        args: Any,
        *,
        n_features: int,
        image_shape: Sequence[int] | None,
        width: int,
        settings: VerticalSettings,
        seed: int,
    ) -> Bottom:
        return LinearBottom(n_features=n_features, n_outputs=width, lr=settings.lr, l2=settings.l2)

    def top(
        self,
        args: Any,
        *,
        widths: Sequence[int],
        task: Task,
        n_classes: int | None,
        settings: VerticalSettings,
        seed: int,
    ) -> Top:
        return LinearTop(task=task, n_classes=n_classes, lr=settings.lr)


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

    def width(self, args: Any, *, task: Task, n_classes: int | None) -> int:
        return int(args.embedding)

    def bottom(
        self,
        args: Any,
        *,
        n_features: int,
        image_shape: Sequence[int] | None,
        width: int,
        settings: VerticalSettings,
        seed: int,
    ) -> Bottom:
        from consortium.vertical.splitnn import TorchBottom, build_net

        net = build_net(
            args.bottom.name,
            args.bottom.args,
            in_features=n_features,
            out_features=width,
            image_shape=image_shape,
            seed=seed,
        )
        return TorchBottom(net, lr=settings.lr, momentum=settings.momentum, l2=settings.l2)

    def top(
        self,
        args: Any,
        *,
        widths: Sequence[int],
        task: Task,
        n_classes: int | None,
        settings: VerticalSettings,
        seed: int,
    ) -> Top:
        from consortium.vertical.splitnn import TorchTop, build_net

        joined = sum(widths) if args.combine == "concat" else widths[0]
        net = build_net(
            args.top.name,
            args.top.args,
            in_features=joined,
            out_features=1 if task == "regression" else int(n_classes or 0),
            image_shape=None,
            seed=seed,
        )
        return TorchTop(
            net,
            combine=args.combine,
            task=task,
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
