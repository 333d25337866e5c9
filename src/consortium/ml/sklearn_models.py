"""scikit-learn linear models behind the :class:`~consortium.ml.model.Model` contract:
``sk_sgd``, ``sk_logreg`` and ``sk_sgd_regressor``. Their state is two float64 arrays in
scikit-learn's own layout: ``coef`` of shape ``(rows, features)`` and ``intercept`` of shape
``(rows,)``, where ``rows`` is 1 for a binary classifier and the number of classes otherwise;
the regressor has ``coef`` of shape ``(features,)`` and ``intercept`` of shape ``(1,)``. Every
model starts at zero (scikit-learn's own start, so the registry's ``seed`` is unused) and keeps
no other state between fits: each ``fit`` builds a fresh estimator, loads the current arrays
into it and reads them back, so that the same weights and generator give the same result
whatever was fitted before.

- ``sk_sgd`` / ``sk_sgd_regressor``: each epoch is one ``partial_fit`` pass of per-row SGD
  (Bottou (2010), "Large-Scale Machine Learning with Stochastic Gradient Descent", COMPSTAT)
  with a constant step ``lr`` (``eta0``); the rows are shuffled by scikit-learn from a
  ``RandomState`` seeded from the caller's generator. ``batch_size`` does not apply (the
  updates are per row). The classifier is one-vs-rest for more than two classes and is told
  the full class set, so a party whose rows lack some classes still trains every row of
  ``coef``.
- ``sk_logreg``: ``epochs`` lbfgs iterations (Liu and Nocedal (1989), "On the limited memory
  BFGS method for large scale optimization", Math. Programming) warm-started from the current
  arrays; ``batch_size`` and ``lr`` do not apply and lbfgs draws no random numbers. The loss is
  the multinomial cross-entropy (binary: logistic) plus ``||coef||^2 / (2 C n)``. A class
  absent from a party's rows is added as one all-zero row of sample weight 0: the loss is then
  exactly the local loss over the global class set, and ``coef`` keeps one row per class.
  Because ``n`` is the party's own row count, ``k`` equal parties with ``C`` each penalise
  ``k`` times harder than one central fit with ``C``: use ``k * C`` to aim at the central
  problem.

The training runs inside scikit-learn, so these models take no gradient ``correction``
(FedProx, SCAFFOLD, FedDyn): ``fit`` refuses one with a ConfigError. The evaluation is numpy
on the arrays (probabilities as scikit-learn's ``predict_proba`` computes them), so it needs
no estimator. scikit-learn is imported only inside ``fit``.
"""

from __future__ import annotations

import numbers
import threading
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from consortium.errors import ConfigError
from consortium.ml._checks import check_positive_int
from consortium.ml.model import (
    MODELS,
    Correction,
    accuracy,
    check_fit_args,
    check_weights,
    r2_score,
)

__all__ = ["LogisticRegressionModel", "SGDClassifierModel", "SGDRegressorModel"]

_PENALTIES = ("l2", "l1", "elasticnet", None)
_SEED_BOUND = 2**32  # RandomState seeds are 32-bit

# lbfgs stopped after ``epochs`` iterations warns that it did not converge; in federated
# rounds that is the intent. warnings.catch_warnings swaps process-wide filters, so the
# sections that use it are serialised (simulated parties are threads of one process).
_WARNINGS_LOCK = threading.Lock()


def _check_penalty(penalty: object) -> str | None:
    if penalty not in _PENALTIES:
        raise ConfigError(f"penalty must be one of l2, l1, elasticnet or null, got {penalty!r}")
    return penalty if isinstance(penalty, str) else None


def _check_number(value: object, what: str, *, positive: bool = False) -> float:
    number = float("nan")
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        number = float(value)
    if not np.isfinite(number) or number < 0 or (positive and number == 0):
        kind = "positive" if positive else "non-negative"
        raise ConfigError(f"{what} must be a {kind} number, got {value!r}")
    return number


class _SklearnLinear:
    """The state, ``fit`` and ``evaluate`` of the three models; a subclass reads the targets
    (``_targets``), trains a fresh estimator (``_train``) and measures (``_metrics``)."""

    #: the registry name, for messages
    name = ""

    def __init__(self, *, n_features: int, coef_shape: tuple[int, ...], n_intercepts: int) -> None:
        self.n_features = check_positive_int(n_features, "n_features")
        self._coef = np.zeros(coef_shape, dtype=np.float64)
        self._intercept = np.zeros(n_intercepts, dtype=np.float64)

    def get_weights(self) -> dict[str, np.ndarray]:
        return {"coef": self._coef.copy(), "intercept": self._intercept.copy()}

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        state = {"coef": self._coef, "intercept": self._intercept}
        checked = check_weights({k: (v.shape, v.dtype) for k, v in state.items()}, weights)
        self._coef = np.array(checked["coef"], dtype=np.float64, order="C")
        self._intercept = np.array(checked["intercept"], dtype=np.float64)

    def num_parameters(self) -> int:
        return int(self._coef.size + self._intercept.size)

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
        """Train as the module docstring says; returns the loss on ``x`` after the fit and
        the ``steps`` taken (SGD: one per row and epoch; lbfgs: its iterations)."""
        if correction is not None:
            raise ConfigError(
                f"{self.name} trains inside scikit-learn and cannot add a gradient correction "
                "(FedProx, SCAFFOLD, FedDyn); use a model that takes one, such as logreg or linreg"
            )
        features, target = self._inputs(x, y)
        check_fit_args(features, target, epochs=epochs, batch_size=batch_size, lr=lr)
        steps = self._train(features, target, epochs=int(epochs), lr=float(lr), rng=rng)
        return {"loss": self._metrics(features, target)["loss"], "steps": float(steps)}

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        features, target = self._inputs(x, y)
        if len(target) == 0:
            raise ValueError("cannot evaluate on zero rows")
        return self._metrics(features, target)

    def _features(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"x must have shape (rows, {self.n_features}), got {x.shape}")
        return np.ascontiguousarray(x, dtype=np.float64)

    def _inputs(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        features = self._features(x)
        target = np.asarray(y)
        if target.ndim != 1 or len(target) != len(features):
            raise ValueError(f"y must be 1-D with one value per row, got shape {target.shape}")
        return features, self._targets(target)

    def _partial_fits(
        self, estimator: Any, features: np.ndarray, target: np.ndarray, epochs: int, **args: Any
    ) -> int:
        """``epochs`` passes of ``estimator.partial_fit`` from the current arrays; the steps
        taken, one per row and pass."""
        self._load(estimator)
        for _ in range(epochs):
            estimator.partial_fit(features, target, **args)
        self.set_weights({"coef": estimator.coef_, "intercept": estimator.intercept_})
        return epochs * len(target)

    def _load(self, estimator: Any) -> None:
        """Put the current arrays into a fresh estimator as if it had been fitted."""
        estimator.coef_ = self._coef.copy()
        estimator.intercept_ = self._intercept.copy()
        estimator.n_features_in_ = self.n_features

    def _targets(self, y: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _train(
        self, x: np.ndarray, y: np.ndarray, *, epochs: int, lr: float, rng: np.random.Generator
    ) -> float:
        raise NotImplementedError

    def _metrics(self, features: np.ndarray, target: np.ndarray) -> dict[str, float]:
        raise NotImplementedError


class _LinearClassifier(_SklearnLinear):
    """A linear classifier over ``n_classes`` labels ``0..n_classes-1``; ``one_vs_rest``
    says how more than two classes turn decisions into probabilities."""

    one_vs_rest = False

    def __init__(self, *, n_features: int, n_classes: int | None) -> None:
        if n_classes is None or isinstance(n_classes, bool) or n_classes < 2:
            raise ConfigError(
                f"{self.name} needs a classification dataset with at least 2 classes, got "
                f"n_classes={n_classes!r}; use sk_sgd_regressor for regression"
            )
        self.n_classes = int(n_classes)
        rows = 1 if self.n_classes == 2 else self.n_classes
        super().__init__(n_features=n_features, coef_shape=(rows, n_features), n_intercepts=rows)
        self.classes = np.arange(self.n_classes, dtype=np.int64)

    def _targets(self, y: np.ndarray) -> np.ndarray:
        if not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"{self.name} needs integer class labels, got dtype {y.dtype}")
        if len(y) and (y.min() < 0 or y.max() >= self.n_classes):
            raise ValueError(f"labels must lie in [0, {self.n_classes})")
        return y.astype(np.int64, copy=False)

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        """``x @ coef.T + intercept``, float64, shape ``(rows, coef rows)``."""
        out: np.ndarray = self._features(x) @ self._coef.T
        out += self._intercept
        return out

    def log_proba(self, x: np.ndarray) -> np.ndarray:
        """Log class probabilities, float64, shape (rows, classes): a logistic for two
        classes; for more, a softmax, or normalised one-vs-rest logistics for SGD."""
        z = self.decision_function(x)
        if self.n_classes == 2:
            return np.hstack([-np.logaddexp(0.0, z), -np.logaddexp(0.0, -z)])
        if self.one_vs_rest:
            z = -np.logaddexp(0.0, -z)  # log sigmoid of each one-vs-rest decision
        peak = z.max(axis=1, keepdims=True)
        return np.asarray(z - peak - np.log(np.exp(z - peak).sum(axis=1, keepdims=True)))

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The predicted class of each row (as scikit-learn's ``predict``)."""
        z = self.decision_function(x)
        if self.n_classes == 2:
            return (z[:, 0] > 0).astype(np.int64)
        return np.asarray(np.argmax(z, axis=1))

    def _metrics(self, features: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        return {
            "loss": float(-self.log_proba(features)[np.arange(len(labels)), labels].mean()),
            "accuracy": accuracy(self.predict(features), labels),
        }


@MODELS.decorator("sk_sgd")
class SGDClassifierModel(_LinearClassifier):
    """``sklearn.linear_model.SGDClassifier(loss="log_loss")`` with a constant step and
    penalty ``alpha`` (``l2``, ``l1``, ``elasticnet`` or null)."""

    name = "sk_sgd"
    one_vs_rest = True

    def __init__(
        self,
        *,
        n_features: int,
        n_classes: int | None,
        seed: int = 0,
        alpha: float = 1e-4,
        penalty: str | None = "l2",
    ) -> None:
        super().__init__(n_features=n_features, n_classes=n_classes)
        self.alpha = _check_number(alpha, "alpha")
        self.penalty = _check_penalty(penalty)

    def _train(
        self, x: np.ndarray, y: np.ndarray, *, epochs: int, lr: float, rng: np.random.Generator
    ) -> float:
        from sklearn.linear_model import SGDClassifier

        estimator = SGDClassifier(
            loss="log_loss",
            penalty=self.penalty,
            alpha=self.alpha,
            learning_rate="constant",
            eta0=lr,
            shuffle=True,
            random_state=np.random.RandomState(int(rng.integers(_SEED_BOUND))),
        )
        estimator.classes_ = self.classes.copy()
        return self._partial_fits(estimator, x, y, epochs, classes=self.classes)


@MODELS.decorator("sk_logreg")
class LogisticRegressionModel(_LinearClassifier):
    """``sklearn.linear_model.LogisticRegression`` (lbfgs, L2 penalty ``1 / C``); each fit
    runs at most ``epochs`` lbfgs iterations."""

    name = "sk_logreg"

    def __init__(
        self,
        *,
        n_features: int,
        n_classes: int | None,
        seed: int = 0,
        C: float = 1.0,
        tol: float = 1e-4,
    ) -> None:
        super().__init__(n_features=n_features, n_classes=n_classes)
        self.C = _check_number(C, "C", positive=True)
        self.tol = _check_number(tol, "tol")

    def _train(
        self, x: np.ndarray, y: np.ndarray, *, epochs: int, lr: float, rng: np.random.Generator
    ) -> float:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression

        missing = np.setdiff1d(self.classes, y)
        weight = None
        if len(missing):  # zero-weight rows make every class known to the solver
            weight = np.concatenate([np.ones(len(y)), np.zeros(len(missing))])
            x = np.vstack([x, np.zeros((len(missing), self.n_features))])
            y = np.concatenate([y, missing])
        estimator = LogisticRegression(
            C=self.C, tol=self.tol, max_iter=epochs, warm_start=True, solver="lbfgs"
        )
        self._load(estimator)
        with _WARNINGS_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            estimator.fit(x, y, sample_weight=weight)
        self.set_weights({"coef": estimator.coef_, "intercept": estimator.intercept_})
        return float(np.max(estimator.n_iter_))


@MODELS.decorator("sk_sgd_regressor")
class SGDRegressorModel(_SklearnLinear):
    """``sklearn.linear_model.SGDRegressor`` (squared error) with a constant step and penalty
    ``alpha`` (``l2``: ridge)."""

    name = "sk_sgd_regressor"

    def __init__(
        self,
        *,
        n_features: int,
        n_classes: int | None = None,
        seed: int = 0,
        alpha: float = 1e-4,
        penalty: str | None = "l2",
    ) -> None:
        if n_classes is not None:
            raise ConfigError(
                f"sk_sgd_regressor needs a regression dataset, got one with {n_classes} "
                "classes; use sk_sgd or sk_logreg for classification"
            )
        super().__init__(n_features=n_features, coef_shape=(n_features,), n_intercepts=1)
        self.alpha = _check_number(alpha, "alpha")
        self.penalty = _check_penalty(penalty)

    def _targets(self, y: np.ndarray) -> np.ndarray:
        if not np.issubdtype(y.dtype, np.number) or not np.all(np.isfinite(y)):
            raise ValueError(f"{self.name} needs finite numeric targets")
        return np.ascontiguousarray(y, dtype=np.float64)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predicted targets, float64, shape (rows,)."""
        out: np.ndarray = self._features(x) @ self._coef + self._intercept[0]
        return out

    def _train(
        self, x: np.ndarray, y: np.ndarray, *, epochs: int, lr: float, rng: np.random.Generator
    ) -> float:
        from sklearn.linear_model import SGDRegressor

        estimator = SGDRegressor(
            penalty=self.penalty,
            alpha=self.alpha,
            learning_rate="constant",
            eta0=lr,
            shuffle=True,
            random_state=np.random.RandomState(int(rng.integers(_SEED_BOUND))),
        )
        return self._partial_fits(estimator, x, y, epochs)

    def _metrics(self, features: np.ndarray, target: np.ndarray) -> dict[str, float]:
        predicted = self.predict(features)
        return {
            "loss": float(np.mean((predicted - target) ** 2)),
            "r2": r2_score(predicted, target),
        }
