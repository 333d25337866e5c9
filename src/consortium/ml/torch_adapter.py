"""PyTorch behind the :class:`~consortium.ml.model.Model` contract.

:class:`TorchModel` wraps any ``torch.nn.Module`` and a loss. Its state is the module's
``state_dict()``, buffers included (BatchNorm running statistics travel and are averaged like
parameters), as numpy arrays of the tensors' own dtypes. ``fit`` is plain minibatch SGD; the
caller's numpy generator seeds a ``torch.Generator`` for the batch order and, when the module
draws random numbers (dropout), torch's global generator for the duration of the fit.

torch is imported inside the functions of this module, never at import time, so the ``mlp``
and ``cnn`` models can be registered by ``import consortium.ml`` without loading torch. This
module never calls ``torch.set_num_threads``: thread budgets belong to the launcher.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from consortium.errors import ConfigError
from consortium.ml.datasets import Task
from consortium.ml.model import (
    MODELS,
    Correction,
    accuracy,
    check_fit_args,
    check_weights,
    r2_score,
)

if TYPE_CHECKING:
    import torch

__all__ = ["TorchModel", "build_cnn", "build_mlp", "torch_seeded"]

# torch draws dropout masks and initial weights from one process-wide generator. Simulated
# parties are threads of one process, so a seeded section holds this lock from seeding to its
# last draw; otherwise one party's draws would shift another's and runs would not repeat.
# Re-entrant, so that a seeded section may call code that seeds again.
_GLOBAL_RNG_LOCK = threading.RLock()

_SEED_BOUND = 2**63 - 1  # torch.manual_seed takes any 64-bit value; stay in int64 range


@contextlib.contextmanager
def torch_seeded(seed: int) -> Iterator[None]:
    """Run the block with torch's global generator seeded to ``seed`` and restored after, one
    such block at a time across threads (parties in one process). Build modules inside it for
    a deterministic initialisation: ``with torch_seeded(seed): net = MyNet()``."""
    import torch

    # manual_seed seeds every CUDA device too, so fork (save and restore) all of them
    devices = list(range(torch.cuda.device_count()))
    with _GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        yield


def _tensor(arr: np.ndarray, dtype: np.dtype[Any]) -> torch.Tensor:
    """A tensor over ``arr`` converted to ``dtype`` (copied only when needed; torch warns on
    read-only arrays, such as those decoded zero-copy from the wire)."""
    import torch

    data = np.ascontiguousarray(arr, dtype=dtype)
    return torch.from_numpy(data if data.flags.writeable else data.copy())


def _numpy_dtype(dtype: torch.dtype) -> np.dtype[Any]:
    import torch

    try:
        return torch.empty(0, dtype=dtype).numpy().dtype
    except TypeError as exc:  # e.g. bfloat16, which numpy has no dtype for
        raise ValueError(f"torch dtype {dtype} has no numpy equivalent") from exc


class TorchModel:
    """A ``torch.nn.Module`` and its loss as a :class:`~consortium.ml.model.Model`.

    ``loss(output, target)`` must return the mean over the batch; it defaults to
    cross-entropy for classification and mean squared error for regression. For regression,
    an output of shape ``(rows, 1)`` is compared with targets of shape ``(rows,)``.
    ``stochastic`` says whether the module draws from torch's global generator in training
    (dropout); ``None`` detects torch's dropout layers. Such fits hold a process-wide lock
    (see :func:`torch_seeded`), so they repeat exactly but do not run in parallel.
    """

    def __init__(
        self,
        *,
        module: torch.nn.Module,
        task: Task = "classification",
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        stochastic: bool | None = None,
        eval_batch_size: int = 4096,
    ) -> None:
        import torch

        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        if task not in ("classification", "regression"):
            raise ConfigError(f"task must be 'classification' or 'regression', got {task!r}")
        self.module = module
        self.task: Task = task
        if loss is None:
            loss = torch.nn.CrossEntropyLoss() if task == "classification" else torch.nn.MSELoss()
        self.loss = loss
        if stochastic is None:
            dropout = (
                torch.nn.Dropout,
                torch.nn.Dropout1d,
                torch.nn.Dropout2d,
                torch.nn.Dropout3d,
                torch.nn.AlphaDropout,
                torch.nn.FeatureAlphaDropout,
            )
            stochastic = any(isinstance(m, dropout) for m in module.modules())
        self.stochastic = stochastic
        self.eval_batch_size = int(eval_batch_size)
        floating = [p for p in module.parameters() if p.is_floating_point()]
        self._device = floating[0].device if floating else torch.device("cpu")
        self._input_dtype = _numpy_dtype(floating[0].dtype) if floating else np.dtype(np.float32)

    def get_weights(self) -> dict[str, np.ndarray]:
        """Parameters and buffers by ``state_dict`` name, copied to numpy, dtypes kept."""
        out: dict[str, np.ndarray] = {}
        for name, tensor in self.module.state_dict().items():
            try:
                out[name] = tensor.detach().cpu().numpy().copy()
            except TypeError as exc:  # e.g. bfloat16, which numpy has no dtype for
                raise ValueError(f"weight {name!r}: {exc}") from exc
        return out

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        state = self.module.state_dict()
        spec = {name: (tuple(t.shape), _numpy_dtype(t.dtype)) for name, t in state.items()}
        checked = check_weights(spec, weights)
        self.module.load_state_dict(
            {name: _tensor(arr, arr.dtype) for name, arr in checked.items()}, strict=True
        )

    def num_parameters(self) -> int:
        """Trainable scalars (buffers such as running statistics are not counted)."""
        return sum(p.numel() for p in self.module.parameters() if p.requires_grad)

    def _tensors(self, x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        target_dtype = np.dtype(np.int64) if self.task == "classification" else self._input_dtype
        return (
            _tensor(x, self._input_dtype).to(self._device),
            _tensor(y, target_dtype).to(self._device),
        )

    def _loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.task == "regression" and output.shape != target.shape:
            output = output.reshape(target.shape)
        return self.loss(output, target)

    def fit(
        self,
        x: np.ndarray,
        y: np.ndarray,
        *,
        epochs: int,
        batch_size: int,
        lr: float,
        rng: np.random.Generator,
        correction: Correction | None = None,
    ) -> dict[str, float]:
        """Minibatch SGD, ``correction`` added to each parameter's gradient. A final batch
        of one row is merged into the batch before it (BatchNorm cannot train on a single
        row)."""
        import torch

        x, y = np.asarray(x), np.asarray(y)
        check_fit_args(x, y, epochs=epochs, batch_size=batch_size, lr=lr)
        xt, yt = self._tensors(x, y)
        n = len(xt)
        shuffle_seed, global_seed = (int(s) for s in rng.integers(0, _SEED_BOUND, size=2))
        generator = torch.Generator().manual_seed(shuffle_seed)
        starts = list(range(0, n, int(batch_size)))
        if len(starts) > 1 and n - starts[-1] == 1:
            starts.pop()
        stops = [*starts[1:], n]
        optimizer = torch.optim.SGD(self.module.parameters(), lr=float(lr))
        correct = self._correction(correction)
        seeded = torch_seeded(global_seed) if self.stochastic else contextlib.nullcontext()
        self.module.train()
        total = torch.zeros((), dtype=torch.float64)
        with seeded:
            for epoch in range(int(epochs)):
                order = torch.randperm(n, generator=generator).to(self._device)
                last = epoch == epochs - 1
                for start, stop in zip(starts, stops, strict=True):
                    rows = order[start:stop]
                    optimizer.zero_grad(set_to_none=True)
                    loss = self._loss(self.module(xt[rows]), yt[rows])
                    loss.backward()
                    if correct is not None:
                        correct()
                    optimizer.step()
                    if last:
                        total += loss.detach().cpu().double() * (stop - start)
        return {"loss": float(total) / n, "steps": float(int(epochs) * len(starts))}

    def _correction(self, correction: Correction | None) -> Callable[[], None] | None:
        """A function adding ``mu * (p - anchor) + shift`` to each named parameter's
        gradient, or None."""
        if correction is None:
            return None
        import torch

        params = dict(self.module.named_parameters())
        for what, arrays in (("anchor", correction.anchor), ("shift", correction.shift)):
            unknown = set(arrays or {}) - set(params)
            if unknown:
                raise ValueError(f"correction {what} names unknown parameters {sorted(unknown)}")

        def as_tensor(name: str, arr: np.ndarray) -> Any:
            p = params[name]
            if tuple(np.shape(arr)) != tuple(p.shape):
                raise ValueError(f"correction for {name!r} has shape {np.shape(arr)}")
            return torch.as_tensor(np.array(arr), dtype=p.dtype, device=p.device)  # a copy

        mu = float(correction.mu)
        anchor = {k: as_tensor(k, v) for k, v in (correction.anchor or {}).items()}
        shift = {k: as_tensor(k, v) for k, v in (correction.shift or {}).items()}

        def correct() -> None:
            with torch.no_grad():
                for name, p in params.items():
                    if p.grad is None:
                        continue
                    if mu and name in anchor:
                        p.grad.add_(p.detach() - anchor[name], alpha=mu)
                    if name in shift:
                        p.grad.add_(shift[name])

        return correct

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The predicted class of each row, or the predicted target (regression)."""
        return self._run(np.asarray(x), None)[0]

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        x, y = np.asarray(x), np.asarray(y)
        if len(y) == 0 or len(x) != len(y):
            raise ValueError(f"cannot evaluate on x of shape {x.shape} and y of shape {y.shape}")
        predicted, total = self._run(x, y)
        if self.task == "classification":
            return {"loss": total / len(y), "accuracy": accuracy(predicted, y)}
        return {"loss": total / len(y), "r2": r2_score(predicted.astype(np.float64), y)}

    def _run(self, x: np.ndarray, y: np.ndarray | None) -> tuple[np.ndarray, float]:
        """The predictions for ``x`` by batches, and the summed loss against ``y`` (0.0
        without labels)."""
        import torch

        xt, yt = self._tensors(x, np.zeros(len(x)) if y is None else y)
        self.module.eval()
        classify = self.task == "classification"
        total = 0.0
        outputs = []
        with torch.no_grad():
            for start in range(0, len(xt), self.eval_batch_size):
                stop = start + self.eval_batch_size
                out = self.module(xt[start:stop])
                if y is not None:
                    total += float(self._loss(out, yt[start:stop])) * len(out)
                outputs.append((out.argmax(dim=1) if classify else out.reshape(-1)).cpu().numpy())
        return np.concatenate(outputs), total


def _classifier(name: str, *, n_classes: int | None, seed: int, **args: Any) -> TorchModel:
    """The module ``name.upper()`` of :mod:`consortium.ml.torch_models`, initialised from
    ``seed``; ConfigError for a regression dataset or when PyTorch is missing."""
    if n_classes is None:
        raise ConfigError(f"{name} is a classifier and needs a classification dataset")
    try:
        from consortium.ml import torch_models
    except ImportError as exc:
        raise ConfigError(
            f"the {name} model needs PyTorch ({exc}); install it, "
            "e.g. pip install 'consortium[torch]'"
        ) from exc
    with torch_seeded(seed):
        module = getattr(torch_models, name.upper())(n_classes=n_classes, **args)
    return TorchModel(module=module, task="classification")


@MODELS.decorator("mlp")
def build_mlp(
    *,
    n_features: int,
    n_classes: int | None,
    seed: int,
    hidden: Sequence[int] = (64,),
    dropout: float = 0.0,
) -> TorchModel:
    """:class:`~consortium.ml.torch_models.MLP`, initialised from ``seed``. Needs PyTorch."""
    return _classifier(
        "mlp", n_classes=n_classes, seed=seed, n_features=n_features, hidden=hidden, dropout=dropout
    )


@MODELS.decorator("cnn")
def build_cnn(
    *,
    n_features: int,
    n_classes: int | None,
    seed: int,
    channels: Sequence[int] = (16, 32),
    hidden: int = 64,
    dropout: float = 0.0,
    batch_norm: bool = False,
) -> TorchModel:
    """:class:`~consortium.ml.torch_models.CNN` (digits are 8x8 images, MNIST 28x28),
    initialised from ``seed``. Needs PyTorch."""
    return _classifier(
        "cnn",
        n_classes=n_classes,
        seed=seed,
        n_features=n_features,
        channels=channels,
        hidden=hidden,
        dropout=dropout,
        batch_norm=batch_norm,
    )
