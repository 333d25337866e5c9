"""The two halves of a vertical model, and the linear ones.

A *bottom* is the part a party owns over its own columns: it maps the party's rows of one
batch to an output it hands the master, and takes back the gradient of the loss with respect
to that output. The *top* is the master's: it combines the bottoms' outputs with the labels,
computes the loss and the gradient for each bottom's output, and updates its own weights.
Training the parts this way is exactly gradient descent on the whole model, because the
chain rule splits at the cut: ``dL/dW_p = (dL/dz_p) (dz_p/dW_p)``.

The linear models (``linreg``, ``logreg``) are ``z = sum_p X_p W_p + b``: each bottom is
``X_p W_p`` (float64, zero-initialised), the top adds the intercept ``b`` and applies the
link (identity; the logistic function for two classes; softmax for more). For the objective
``mean loss + l2/2 ||W||^2``, the gradient of a batch of ``B`` rows w.r.t. ``z`` is
``(p - y) / B`` for every link, the canonical-link identity of generalised linear models
(McCullagh and Nelder, "Generalized Linear Models", 1989).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np

from consortium.ml.datasets import Task

__all__ = ["Bottom", "LinearBottom", "LinearTop", "Top", "score", "targets"]


class Bottom(Protocol):
    def forward(self, x: np.ndarray, *, train: bool) -> np.ndarray:
        """The output for these rows; with ``train``, remembered for :meth:`backward`."""
        ...

    def backward(self, grad: np.ndarray) -> None:
        """Take one step with the gradient w.r.t. the last training output."""

    def state(self) -> dict[str, np.ndarray]: ...

    def load(self, state: Mapping[str, np.ndarray]) -> None: ...


class Top(Protocol):
    def step(self, parts: Sequence[np.ndarray], y: np.ndarray) -> tuple[float, list[np.ndarray]]:
        """Loss of a training batch and the gradient w.r.t. each part; updates the top."""
        ...

    def predict(self, parts: Sequence[np.ndarray]) -> np.ndarray:
        """Scores: values (regression) or class probabilities, shape ``(rows, classes)``."""

    def state(self) -> dict[str, np.ndarray]: ...

    def load(self, state: Mapping[str, np.ndarray]) -> None: ...


def _load(target: np.ndarray, state: Mapping[str, np.ndarray], name: str) -> None:
    value = np.asarray(state[name], dtype=np.float64)
    if value.shape != target.shape:
        raise ValueError(f"{name!r} has shape {value.shape}, the part needs {target.shape}")
    target[...] = value


class LinearBottom:
    """``X_p W_p`` with plain gradient steps ``W <- W - lr (X^T g + l2 W)``."""

    def __init__(self, *, n_features: int, n_outputs: int, lr: float, l2: float) -> None:
        self.weight = np.zeros((n_features, n_outputs), dtype=np.float64)
        self.lr, self.l2 = lr, l2
        self._x: np.ndarray | None = None

    def forward(self, x: np.ndarray, *, train: bool) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if train:
            self._x = x
        return x @ self.weight

    def backward(self, grad: np.ndarray) -> None:
        assert self._x is not None  # the member checks that it ran the step's forward
        self.apply(self._x.T @ grad)
        self._x = None

    def apply(self, gradient: np.ndarray) -> None:
        """One step with the gradient of the loss w.r.t. the weights, ``X^T d`` (the
        arbitered mode computes it under encryption); the l2 term is added here."""
        if gradient.shape != self.weight.shape:
            raise ValueError(
                f"a gradient of shape {gradient.shape} for weights {self.weight.shape}"
            )
        self.weight -= self.lr * (gradient + self.l2 * self.weight)

    def state(self) -> dict[str, np.ndarray]:
        return {"weight": self.weight.copy()}

    def load(self, state: Mapping[str, np.ndarray]) -> None:
        _load(self.weight, state, "weight")


def targets(y: np.ndarray, task: Task, n_outputs: int) -> np.ndarray:
    """The labels as ``(rows, n_outputs)`` targets: the values, or one-hot classes."""
    rows = len(y)
    if task == "regression" or n_outputs == 1:
        return np.asarray(y, dtype=np.float64).reshape(rows, 1)
    onehot = np.zeros((rows, n_outputs), dtype=np.float64)
    onehot[np.arange(rows), np.asarray(y, dtype=np.int64)] = 1.0
    return onehot


class LinearTop:
    """The intercept and the link: ``identity`` (regression, one output), ``logistic`` (two
    classes, one output) or ``softmax`` (one output per class)."""

    def __init__(self, *, task: Task, n_outputs: int, lr: float) -> None:
        self.task, self.n_outputs, self.lr = task, n_outputs, lr
        self.bias = np.zeros(n_outputs, dtype=np.float64)

    def _probabilities(self, z: np.ndarray) -> np.ndarray:
        if self.task == "regression":
            return z
        if self.n_outputs == 1:
            return 1.0 / (1.0 + np.exp(-z))
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def step(self, parts: Sequence[np.ndarray], y: np.ndarray) -> tuple[float, list[np.ndarray]]:
        z = np.sum(parts, axis=0) + self.bias
        p = self._probabilities(z)
        rows = len(z)
        grad = (p - targets(y, self.task, self.n_outputs)) / rows
        loss = _loss(p, y, self.task)
        self.apply(grad.sum(axis=0))
        return loss, [grad] * len(parts)

    def apply(self, gradient: np.ndarray) -> None:
        """One step of the intercept with its gradient, ``sum_rows d``."""
        self.bias -= self.lr * gradient

    def predict(self, parts: Sequence[np.ndarray]) -> np.ndarray:
        p = self._probabilities(np.sum(parts, axis=0) + self.bias)
        if self.task == "regression":
            return p[:, 0]
        if self.n_outputs == 1:
            return np.hstack([1.0 - p, p])
        return p

    def state(self) -> dict[str, np.ndarray]:
        return {"bias": self.bias.copy()}

    def load(self, state: Mapping[str, np.ndarray]) -> None:
        _load(self.bias, state, "bias")


def _loss(p: np.ndarray, y: np.ndarray, task: Task) -> float:
    if task == "regression":
        return float(np.mean((p[:, 0] - np.asarray(y, dtype=np.float64)) ** 2))
    labels = np.asarray(y, dtype=np.int64)
    probs = np.hstack([1.0 - p, p]) if p.shape[1] == 1 else p
    picked = np.clip(probs[np.arange(len(labels)), labels], 1e-300, None)
    return float(-np.mean(np.log(picked)))


def score(scores: np.ndarray, y: np.ndarray, task: Task) -> dict[str, float]:
    """``loss`` (cross-entropy) and ``accuracy``, or ``loss`` (mean squared error) and
    ``r2``, of predicted scores (see :meth:`Top.predict`)."""
    from consortium.ml import accuracy, r2_score

    if task == "regression":
        values = np.asarray(scores, dtype=np.float64)
        target = np.asarray(y, dtype=np.float64)
        return {"loss": float(np.mean((values - target) ** 2)), "r2": r2_score(values, target)}
    probs = np.asarray(scores, dtype=np.float64)
    return {
        "loss": _loss(probs, y, task),
        "accuracy": accuracy(np.argmax(probs, axis=1), np.asarray(y)),
    }
