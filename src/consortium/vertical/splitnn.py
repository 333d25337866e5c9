"""Split neural networks: a bottom network at every party that holds features, the master's
top network over their combined outputs (Vepakomma, Gupta, Swedish and Raskar (2018),
"Split learning for health: Distributed deep learning without sharing raw patient data";
Ceballos et al. (2020), "SplitNN-driven Vertical Partitioning").

Each party steps its own network with SGD: the master's top by ordinary backpropagation, a
bottom from the gradient w.r.t. its output that the master sends back; the same computation,
batch for batch, as training the whole network (:func:`central_network`) in one place.
torch is imported only when a network is built.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from consortium.errors import ConfigError
from consortium.ml.datasets import Task
from consortium.registry import Registry

if TYPE_CHECKING:
    import torch

__all__ = ["COMBINERS", "NETS", "TorchBottom", "TorchTop", "build_net", "central_network"]

NetFactory = Callable[..., "torch.nn.Module"]
NETS: Registry[NetFactory] = Registry("split network")
"""``factory(*, in_features, out_features, image_shape, **args) -> torch.nn.Module``"""

COMBINERS: Registry[Callable[[Sequence[Any]], Any]] = Registry("split combination")
"""How the master joins the bottoms' outputs: ``concat``, ``sum`` or ``mean``."""


@COMBINERS.decorator("concat")
def _concat(parts: Sequence[Any]) -> Any:
    import torch

    return torch.cat(list(parts), dim=1)


@COMBINERS.decorator("sum")
def _sum(parts: Sequence[Any]) -> Any:
    import torch

    return torch.stack(list(parts)).sum(dim=0)


@COMBINERS.decorator("mean")
def _mean(parts: Sequence[Any]) -> Any:
    import torch

    return torch.stack(list(parts)).mean(dim=0)


def _lazy(name: str) -> NetFactory:
    def build(**kwargs: Any) -> torch.nn.Module:
        from consortium.vertical import nets

        factory: NetFactory = getattr(nets, name)
        return factory(**kwargs)

    return build


NETS.register("mlp", _lazy("MLPNet"))
NETS.register("resnet", _lazy("ResNet"))
NETS.register("efficientnet", _lazy("EfficientNet"))


def build_net(
    name: str,
    args: Mapping[str, Any],
    *,
    in_features: int,
    out_features: int,
    image_shape: Sequence[int] | None,
    seed: int,
) -> torch.nn.Module:
    """The network registered as ``name``, initialised from ``seed``."""
    from consortium.ml import torch_seeded

    factory = NETS.get(name)
    try:
        with torch_seeded(seed):
            return factory(
                in_features=in_features, out_features=out_features, image_shape=image_shape, **args
            )
    except TypeError as exc:
        raise ConfigError(f"network {name!r} does not take these arguments: {exc}") from None


class _Sgd:
    """Stochastic gradient descent with momentum and weight decay, by torch's functional
    ``torch.optim.sgd.sgd``: the arithmetic of ``torch.optim.SGD`` to the last bit (what
    :func:`central_network` is trained with), without the optimiser object's per-step
    wrapping (hooks, profiler records, graph breaks), which for a small network costs more
    than the update itself, once per party and step."""

    def __init__(self, params: Any, *, lr: float, momentum: float, l2: float) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.buffers: list[Any] = [None] * len(self.params)
        self.lr, self.momentum, self.l2 = lr, momentum, l2

    def step(self) -> None:
        """One update with the gradients the last backward pass left; it clears them."""
        import torch
        from torch.optim.sgd import sgd

        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        buffers = [self.buffers[i] for i in live]
        with torch.no_grad():
            sgd(
                [self.params[i] for i in live],
                [self.params[i].grad for i in live],
                buffers,
                foreach=False,
                weight_decay=self.l2,
                momentum=self.momentum,
                lr=self.lr,
                dampening=0.0,
                nesterov=False,
                maximize=False,
            )
        for i, buffer in zip(live, buffers, strict=True):
            self.buffers[i] = buffer
            self.params[i].grad = None


def _mode(net: torch.nn.Module, train: bool) -> None:
    """Training or evaluation mode, set only when it changes (setting it walks every
    submodule, a cost per step that adds up over thousands of small batches)."""
    if net.training != train:
        net.train(train)


def _tensor(arr: np.ndarray) -> torch.Tensor:
    import torch

    return torch.from_numpy(np.array(arr, dtype=np.float32))  # a writable float32 copy


class _TorchPart:
    """A party's network and its optimiser."""

    def __init__(self, net: torch.nn.Module, *, lr: float, momentum: float, l2: float) -> None:
        self.net = net
        self.opt = _Sgd(net.parameters(), lr=lr, momentum=momentum, l2=l2)

    def state(self) -> dict[str, np.ndarray]:
        return {k: v.detach().numpy().copy() for k, v in self.net.state_dict().items()}

    def load(self, state: Mapping[str, np.ndarray]) -> None:
        import torch

        self.net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})


class TorchBottom(_TorchPart):
    """A party's bottom network."""

    _out: torch.Tensor | None = None  # the last training output, for backward

    def forward(self, x: np.ndarray, *, train: bool) -> np.ndarray:
        import torch

        inputs = _tensor(x)
        _mode(self.net, train)
        if train:
            self._out = self.net(inputs)
            return self._out.detach().numpy().copy()
        with torch.no_grad():
            return self.net(inputs).numpy().copy()

    def backward(self, grad: np.ndarray) -> None:
        if self._out is None:
            raise RuntimeError("backward before a training forward")
        if tuple(grad.shape) != tuple(self._out.shape):  # no broadcasting in the product below
            raise ValueError(f"grad has shape {grad.shape}, the output {tuple(self._out.shape)}")
        import torch

        # d/d(out) of sum(out * grad) is grad, exactly; a scalar backward skips torch's
        # shape checks of a given gradient, whose first call imports a symbolic-shape
        # library (~0.5 s) in the middle of the first epoch.
        torch.sum(self._out * _tensor(grad)).backward()
        self.opt.step()
        self._out = None


class TorchTop(_TorchPart):
    """The master's combination of the bottoms' outputs, its top network and the loss."""

    def __init__(
        self,
        net: torch.nn.Module,
        *,
        combine: str,
        task: Task,
        lr: float,
        momentum: float,
        l2: float,
    ) -> None:
        super().__init__(net, lr=lr, momentum=momentum, l2=l2)
        self.combine = COMBINERS.get(combine)
        self.task = task

    def _loss(self, out: torch.Tensor, y: np.ndarray) -> torch.Tensor:
        import torch

        if self.task == "regression":
            target = torch.from_numpy(np.asarray(y, dtype=np.float32))
            return torch.nn.functional.mse_loss(out[:, 0], target)
        labels = torch.from_numpy(np.asarray(y, dtype=np.int64))
        return torch.nn.functional.cross_entropy(out, labels)

    def step(self, parts: Sequence[np.ndarray], y: np.ndarray) -> tuple[float, list[np.ndarray]]:
        inputs = [_tensor(p).requires_grad_() for p in parts]
        _mode(self.net, True)
        loss = self._loss(self.net(self.combine(inputs)), y)
        loss.backward()
        self.opt.step()
        grads = []
        for t in inputs:
            assert t.grad is not None
            grads.append(t.grad.numpy().copy())
        return float(loss.detach()), grads

    def predict(self, parts: Sequence[np.ndarray]) -> np.ndarray:
        import torch

        _mode(self.net, False)
        with torch.no_grad():
            out = self.net(self.combine([_tensor(p) for p in parts]))
            if self.task == "regression":
                return out[:, 0].numpy().astype(np.float64)
            return torch.softmax(out, dim=1).numpy().astype(np.float64)


def central_network(
    bottoms: Sequence[torch.nn.Module], top: torch.nn.Module, *, combine: str
) -> torch.nn.Module:
    """The whole split network as one module over the parties' column blocks, in the
    master's order (its own bottom first, then the members'): the centralised baseline that
    split training must reproduce. ``forward`` takes one tensor per bottom."""
    import torch

    join = COMBINERS.get(combine)

    class Central(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bottoms = torch.nn.ModuleList(bottoms)
            self.top = top

        def forward(self, *xs: torch.Tensor) -> torch.Tensor:
            return self.top(join([b(x) for b, x in zip(self.bottoms, xs, strict=True)]))

    return Central()
