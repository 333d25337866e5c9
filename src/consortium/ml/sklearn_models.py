"""scikit-learn linear models behind the :class:`~consortium.ml.model.Model` contract.

Registered as ``sk_sgd`` (``SGDClassifier`` with the logistic loss), ``sk_logreg``
(``LogisticRegression``, lbfgs) and ``sk_sgd_regressor`` (``SGDRegressor``, squared error).
Their state is two float64 arrays in scikit-learn's own layout: ``coef`` of shape
``(rows, features)`` and ``intercept`` of shape ``(rows,)``, where ``rows`` is 1 for a binary
classifier and the number of classes otherwise; the regressor has ``coef`` of shape
``(features,)`` and ``intercept`` of shape ``(1,)``. Every model starts at zero (scikit-learn's
own start) and keeps no other state between fits: each ``fit`` builds a fresh estimator, loads
the current arrays into it and reads them back, so that the same weights and generator give the
same result whatever was fitted before.

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

__all__ = [
    "LogisticRegressionModel",
    "SGDClassifierModel",
    "SGDRegressorModel",
    "build_sk_logreg",
    "build_sk_sgd",
    "build_sk_sgd_regressor",
]

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


def _check_nonnegative(value: object, what: str, *, positive: bool = False) -> float:
    kind = "positive" if positive else "non-negative"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{what} must be a {kind} number, got {value!r}")
    number = float(value)
    if not np.isfinite(number) or number < 0 or (positive and number == 0):
        raise ConfigError(f"{what} must be a {kind} number, got {value!r}")
    return number


class _SklearnLinear:
    """State and shape checks shared by the three wrappers."""

    #: the registry name, for messages
    name = ""

    def __init__(self, *, n_features: int, coef_shape: tuple[int, ...], n_intercepts: int) -> None:
        self.n_features = check_positive_int(n_features, "n_features")
        self._coef = np.zeros(coef_shape, dtype=np.float64)
        self._intercept = np.zeros(n_intercepts, dtype=np.float64)

    def get_weights(self) -> dict[str, np.ndarray]:
        return {"coef": self._coef.copy(), "intercept": self._intercept.copy()}

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        spec = {
            "coef": (self._coef.shape, np.dtype(np.float64)),
            "intercept": (self._intercept.shape, np.dtype(np.float64)),
        }
        checked = check_weights(spec, weights)
        self._coef = np.array(checked["coef"], dtype=np.float64, order="C")
        self._intercept = np.array(checked["intercept"], dtype=np.float64)

    def num_parameters(self) -> int:
        return int(self._coef.size + self._intercept.size)

    def _features(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"x must have shape (rows, {self.n_features}), got {x.shape}")
        return np.ascontiguousarray(x, dtype=np.float64)

    def _refuse(self, correction: Correction | None) -> None:
        if correction is not None:
            raise ConfigError(
                f"{self.name} trains inside scikit-learn and cannot add a gradient correction "
                "(FedProx, SCAFFOLD, FedDyn); use a model that takes one, such as logreg or linreg"
            )

    def _load(self, estimator: Any) -> None:
        """Put the current arrays into a fresh estimator as if it had been fitted."""
        estimator.coef_ = self._coef.copy()
        estimator.intercept_ = self._intercept.copy()
        estimator.n_features_in_ = self.n_features

    def _store(self, estimator: Any) -> None:
        self._coef = np.array(estimator.coef_, dtype=np.float64, order="C").reshape(
            self._coef.shape
        )
        self._intercept = np.array(estimator.intercept_, dtype=np.float64).reshape(
            self._intercept.shape
        )


class _LinearClassifier(_SklearnLinear):
    """A linear classifier over ``n_classes`` labels ``0..n_classes-1``; ``one_vs_rest``
    says how more than two classes turn decisions into probabilities."""

    one_vs_rest = False

    def __init__(self, *, n_features: int, n_classes: int | None) -> None:
        if n_classes is None or isinstance(n_classes, bool) or n_classes < 2:
            raise ConfigError(
                f"{self.name} needs a classification dataset with at least 2 classes, got "
                f"n_classes={n_classes!r}"
            )
        self.n_classes = int(n_classes)
        rows = 1 if self.n_classes == 2 else self.n_classes
        super().__init__(n_features=n_features, coef_shape=(rows, n_features), n_intercepts=rows)
        self.classes = np.arange(self.n_classes, dtype=np.int64)

    def _labels(self, y: np.ndarray, rows: int) -> np.ndarray:
        labels = np.asarray(y)
        if labels.ndim != 1 or len(labels) != rows:
            raise ValueError(f"y must be 1-D with one label per row, got shape {labels.shape}")
        if not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"{self.name} needs integer class labels, got dtype {labels.dtype}")
        if len(labels) and (labels.min() < 0 or labels.max() >= self.n_classes):
            raise ValueError(f"labels must lie in [0, {self.n_classes})")
        return labels.astype(np.int64, copy=False)

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

    def _log_loss(self, x: np.ndarray, labels: np.ndarray) -> float:
        return float(-self.log_proba(x)[np.arange(len(labels)), labels].mean())

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        labels = self._labels(y, len(np.asarray(x)))
        if len(labels) == 0:
            raise ValueError("cannot evaluate on zero rows")
        return {
            "loss": self._log_loss(x, labels),
            "accuracy": accuracy(self.predict(x), labels),
        }


class SGDClassifierModel(_LinearClassifier):
    """``sklearn.linear_model.SGDClassifier(loss="log_loss")`` with a constant step."""

    name = "sk_sgd"
    one_vs_rest = True

    def __init__(
        self,
        *,
        n_features: int,
        n_classes: int | None,
        alpha: float = 1e-4,
        penalty: str | None = "l2",
    ) -> None:
        super().__init__(n_features=n_features, n_classes=n_classes)
        self.alpha = _check_nonnegative(alpha, "alpha")
        self.penalty = _check_penalty(penalty)

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
        """``epochs`` passes of per-row SGD with step ``lr``; ``batch_size`` is not used.
        Returns the log-loss on ``x`` after the last pass and the steps (one per row)."""
        from sklearn.linear_model import SGDClassifier

        self._refuse(correction)
        features = self._features(x)
        labels = self._labels(y, len(features))
        check_fit_args(features, labels, epochs=epochs, batch_size=batch_size, lr=lr)
        estimator = SGDClassifier(
            loss="log_loss",
            penalty=self.penalty,
            alpha=self.alpha,
            learning_rate="constant",
            eta0=float(lr),
            shuffle=True,
            random_state=np.random.RandomState(int(rng.integers(_SEED_BOUND))),
        )
        self._load(estimator)
        estimator.classes_ = self.classes.copy()
        for _ in range(int(epochs)):
            estimator.partial_fit(features, labels, classes=self.classes)
        self._store(estimator)
        steps = float(int(epochs) * len(labels))
        return {"loss": self._log_loss(features, labels), "steps": steps}


class LogisticRegressionModel(_LinearClassifier):
    """``sklearn.linear_model.LogisticRegression`` (lbfgs, L2 penalty ``1 / C``)."""

    name = "sk_logreg"

    def __init__(
        self, *, n_features: int, n_classes: int | None, C: float = 1.0, tol: float = 1e-4
    ) -> None:
        super().__init__(n_features=n_features, n_classes=n_classes)
        self.C = _check_nonnegative(C, "C", positive=True)
        self.tol = _check_nonnegative(tol, "tol")

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
        """At most ``epochs`` lbfgs iterations from the current weights; ``batch_size``,
        ``lr`` and ``rng`` are not used. Returns the log-loss on ``x`` after the fit and the
        lbfgs iterations run as ``steps``."""
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression

        self._refuse(correction)
        features = self._features(x)
        labels = self._labels(y, len(features))
        check_fit_args(features, labels, epochs=epochs, batch_size=batch_size, lr=lr)
        missing = np.setdiff1d(self.classes, labels)
        weight = None
        fx, fy = features, labels
        if len(missing):  # zero-weight rows make every class known to the solver
            fx = np.vstack([features, np.zeros((len(missing), self.n_features))])
            fy = np.concatenate([labels, missing])
            weight = np.concatenate([np.ones(len(labels)), np.zeros(len(missing))])
        estimator = LogisticRegression(
            C=self.C, tol=self.tol, max_iter=int(epochs), warm_start=True, solver="lbfgs"
        )
        self._load(estimator)
        with _WARNINGS_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            estimator.fit(fx, fy, sample_weight=weight)
        self._store(estimator)
        steps = float(np.max(estimator.n_iter_))
        return {"loss": self._log_loss(features, labels), "steps": steps}


class SGDRegressorModel(_SklearnLinear):
    """``sklearn.linear_model.SGDRegressor`` (squared error) with a constant step."""

    name = "sk_sgd_regressor"

    def __init__(self, *, n_features: int, alpha: float = 1e-4, penalty: str | None = "l2") -> None:
        super().__init__(n_features=n_features, coef_shape=(n_features,), n_intercepts=1)
        self.alpha = _check_nonnegative(alpha, "alpha")
        self.penalty = _check_penalty(penalty)

    def _targets(self, y: np.ndarray, rows: int) -> np.ndarray:
        target = np.asarray(y)
        if target.ndim != 1 or len(target) != rows:
            raise ValueError(f"y must be 1-D with one target per row, got shape {target.shape}")
        if not np.issubdtype(target.dtype, np.number) or not np.all(np.isfinite(target)):
            raise ValueError(f"{self.name} needs finite numeric targets")
        return np.ascontiguousarray(target, dtype=np.float64)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predicted targets, float64, shape (rows,)."""
        out: np.ndarray = self._features(x) @ self._coef + self._intercept[0]
        return out

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
        """``epochs`` passes of per-row SGD with step ``lr``; ``batch_size`` is not used.
        Returns the mean squared error on ``x`` after the last pass and the steps (one per
        row)."""
        from sklearn.linear_model import SGDRegressor

        self._refuse(correction)
        features = self._features(x)
        target = self._targets(y, len(features))
        check_fit_args(features, target, epochs=epochs, batch_size=batch_size, lr=lr)
        estimator = SGDRegressor(
            penalty=self.penalty,
            alpha=self.alpha,
            learning_rate="constant",
            eta0=float(lr),
            shuffle=True,
            random_state=np.random.RandomState(int(rng.integers(_SEED_BOUND))),
        )
        self._load(estimator)
        for _ in range(int(epochs)):
            estimator.partial_fit(features, target)
        self._store(estimator)
        return {
            "loss": float(np.mean((self.predict(features) - target) ** 2)),
            "steps": float(int(epochs) * len(target)),
        }

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        features = self._features(x)
        target = self._targets(y, len(features))
        if len(target) == 0:
            raise ValueError("cannot evaluate on zero rows")
        predicted = self.predict(features)
        return {
            "loss": float(np.mean((predicted - target) ** 2)),
            "r2": r2_score(predicted, target),
        }


@MODELS.decorator("sk_sgd")
def build_sk_sgd(
    *,
    n_features: int,
    n_classes: int | None,
    seed: int,
    alpha: float = 1e-4,
    penalty: str | None = "l2",
) -> SGDClassifierModel:
    """scikit-learn's ``SGDClassifier`` with the logistic loss, penalty ``alpha`` (``l2``,
    ``l1``, ``elasticnet`` or null). ``seed`` is unused (the weights start at zero)."""
    if n_classes is None:
        raise ConfigError(
            "sk_sgd needs a classification dataset; use sk_sgd_regressor for regression"
        )
    return SGDClassifierModel(
        n_features=n_features, n_classes=n_classes, alpha=alpha, penalty=penalty
    )


@MODELS.decorator("sk_logreg")
def build_sk_logreg(
    *, n_features: int, n_classes: int | None, seed: int, C: float = 1.0, tol: float = 1e-4
) -> LogisticRegressionModel:
    """scikit-learn's ``LogisticRegression`` (lbfgs) with inverse penalty ``C``; each fit
    runs at most ``epochs`` lbfgs iterations. ``seed`` is unused (the weights start at
    zero)."""
    if n_classes is None:
        raise ConfigError(
            "sk_logreg needs a classification dataset; use sk_sgd_regressor for regression"
        )
    return LogisticRegressionModel(n_features=n_features, n_classes=n_classes, C=C, tol=tol)


@MODELS.decorator("sk_sgd_regressor")
def build_sk_sgd_regressor(
    *,
    n_features: int,
    n_classes: int | None,
    seed: int,
    alpha: float = 1e-4,
    penalty: str | None = "l2",
) -> SGDRegressorModel:
    """scikit-learn's ``SGDRegressor`` (squared error) with penalty ``alpha`` (``l2``:
    ridge). ``seed`` is unused (the weights start at zero)."""
    if n_classes is not None:
        raise ConfigError(
            f"sk_sgd_regressor needs a regression dataset, got one with {n_classes} classes; "
            "use sk_sgd or sk_logreg for classification"
        )
    return SGDRegressorModel(n_features=n_features, alpha=alpha, penalty=penalty)
