"""The scikit-learn wrappers (``sk_sgd``, ``sk_logreg``, ``sk_sgd_regressor``) against
scikit-learn itself, hand-written SGD steps and the optimality conditions of the loss."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.linear_model import LogisticRegression, SGDClassifier, SGDRegressor
from sklearn.metrics import log_loss, mean_squared_error, r2_score

from consortium.errors import ConfigError
from consortium.ml import (
    MODELS,
    Correction,
    Dataset,
    LogisticRegressionModel,
    Model,
    SGDClassifierModel,
    SGDRegressorModel,
    build_model,
    load_dataset,
    standardize,
    train_test_split,
)

CLASSIFIERS = ("sk_sgd", "sk_logreg")


def _split(name: str) -> tuple[Dataset, Dataset]:
    return standardize(*train_test_split(load_dataset(name, seed=0), test_fraction=0.25, seed=0))


def _f64(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float64)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-z)))


def test_registered_and_built_with_their_classes() -> None:
    assert {"sk_sgd", "sk_logreg", "sk_sgd_regressor"} <= set(MODELS.names())
    assert isinstance(build_model("sk_sgd", n_features=3, n_classes=2, seed=0), SGDClassifierModel)
    assert isinstance(
        build_model("sk_logreg", n_features=3, n_classes=2, seed=0), LogisticRegressionModel
    )
    regressor = build_model("sk_sgd_regressor", n_features=3, n_classes=None, seed=0)
    assert isinstance(regressor, SGDRegressorModel) and isinstance(regressor, Model)


@pytest.mark.parametrize("name", CLASSIFIERS)
@pytest.mark.parametrize(("n_classes", "rows"), [(2, 1), (3, 3), (10, 10)])
def test_classifier_state_is_sklearn_shaped_float64_zeros(
    name: str, n_classes: int, rows: int
) -> None:
    model = build_model(name, n_features=5, n_classes=n_classes, seed=0)
    weights = model.get_weights()
    assert list(weights) == ["coef", "intercept"]
    assert weights["coef"].shape == (rows, 5) and weights["intercept"].shape == (rows,)
    assert all(w.dtype == np.float64 and not w.any() for w in weights.values())
    assert model.num_parameters() == rows * 6


def test_regressor_state_shapes() -> None:
    model = build_model("sk_sgd_regressor", n_features=4, n_classes=None, seed=0)
    weights = model.get_weights()
    assert weights["coef"].shape == (4,) and weights["intercept"].shape == (1,)
    assert model.num_parameters() == 5


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_round_trip_copies_and_dtypes_stay_float64_across_rounds(name: str) -> None:
    train, test = _split("wine")
    model = build_model(name, n_features=13, n_classes=3, seed=0)
    for rnd in range(3):
        model.fit(train.x, train.y, epochs=2, batch_size=8, lr=0.01, rng=np.random.default_rng(rnd))
        weights = model.get_weights()
        assert {k: v.dtype for k, v in weights.items()} == {
            "coef": np.float64,
            "intercept": np.float64,
        }
    fresh = build_model(name, n_features=13, n_classes=3, seed=1)
    weights["coef"].flags.writeable = False  # as decoded from the wire
    fresh.set_weights(weights)
    for key, arr in fresh.get_weights().items():
        np.testing.assert_array_equal(arr, weights[key], err_msg=key)
    assert fresh.evaluate(test.x, test.y) == model.evaluate(test.x, test.y)
    kept = fresh.get_weights()
    kept["coef"][:] = 7.0  # the caller's copy, not the model's state
    assert not np.array_equal(fresh.get_weights()["coef"], kept["coef"])


def test_set_weights_names_the_bad_array() -> None:
    model = build_model("sk_sgd", n_features=4, n_classes=3, seed=0)
    good = model.get_weights()
    with pytest.raises(ValueError, match="'coef' has dtype float32"):
        model.set_weights({**good, "coef": good["coef"].astype(np.float32)})
    with pytest.raises(ValueError, match="'intercept' has shape"):
        model.set_weights({**good, "intercept": np.zeros(1)})
    with pytest.raises(ValueError, match="missing \\['intercept'\\]"):
        model.set_weights({"coef": good["coef"]})


@pytest.mark.parametrize("dataset", ["breast_cancer", "digits"])
def test_sk_sgd_is_sklearn_partial_fit_epoch_by_epoch(dataset: str) -> None:
    """From zero weights, the wrapper is SGDClassifier.partial_fit called once per epoch."""
    train, test = _split(dataset)
    assert train.n_classes is not None
    model = build_model("sk_sgd", n_features=train.n_features, n_classes=train.n_classes, seed=0)
    model.fit(train.x, train.y, epochs=3, batch_size=32, lr=0.01, rng=np.random.default_rng(5))
    seed = int(np.random.default_rng(5).integers(2**32))
    oracle = SGDClassifier(
        loss="log_loss",
        learning_rate="constant",
        eta0=0.01,
        random_state=np.random.RandomState(seed),
    )
    for _ in range(3):
        oracle.partial_fit(_f64(train.x), train.y, classes=np.arange(train.n_classes))
    weights = model.get_weights()
    np.testing.assert_allclose(weights["coef"], oracle.coef_, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(weights["intercept"], oracle.intercept_, rtol=1e-12, atol=1e-12)
    metrics = model.evaluate(test.x, test.y)
    proba = oracle.predict_proba(_f64(test.x))
    assert metrics["loss"] == pytest.approx(log_loss(test.y, proba), rel=1e-9)
    assert metrics["accuracy"] == pytest.approx(oracle.score(_f64(test.x), test.y), abs=1e-12)
    assert metrics["accuracy"] > 0.9


def test_sk_sgd_steps_from_the_weights_it_was_given() -> None:
    """One row, three epochs, no penalty: three logistic SGD steps per one-vs-rest row from
    the loaded weights, classes missing from the row included (they see a negative)."""
    rng = np.random.default_rng(0)
    w, b = rng.normal(size=(4, 3)), rng.normal(size=4)
    x, label = rng.normal(size=(1, 3)).astype(np.float32), 2
    model = build_model("sk_sgd", n_features=3, n_classes=4, seed=0, penalty=None, alpha=0.0)
    model.set_weights({"coef": w, "intercept": b})
    model.fit(x, np.array([label]), epochs=3, batch_size=1, lr=0.3, rng=np.random.default_rng(1))
    xs = x[0].astype(np.float64)
    target = (np.arange(4) == label).astype(np.float64)
    for _ in range(3):
        residual = _sigmoid(w @ xs + b) - target
        w = w - 0.3 * residual[:, None] * xs[None, :]
        b = b - 0.3 * residual
    weights = model.get_weights()
    np.testing.assert_allclose(weights["coef"], w, rtol=1e-10)
    np.testing.assert_allclose(weights["intercept"], b, rtol=1e-10)


@pytest.mark.parametrize("name", [*CLASSIFIERS, "sk_sgd_regressor"])
def test_same_generator_same_result(name: str) -> None:
    ds = load_dataset("diabetes" if name == "sk_sgd_regressor" else "wine", seed=0)
    train, _ = _split(ds.name)
    runs = []
    for seed in (4, 4, 9):
        model = build_model(name, n_features=ds.n_features, n_classes=ds.n_classes, seed=0)
        stats = model.fit(
            train.x, train.y, epochs=2, batch_size=8, lr=0.01, rng=np.random.default_rng(seed)
        )
        runs.append((model.get_weights()["coef"], stats))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1]
    if name != "sk_logreg":  # lbfgs draws no random numbers; the SGD row order does
        assert not np.array_equal(runs[0][0], runs[2][0])


def test_sk_sgd_partition_missing_classes_keeps_every_row() -> None:
    train, _ = _split("digits")
    keep = train.y < 3
    model = build_model("sk_sgd", n_features=64, n_classes=10, seed=0)
    model.fit(
        train.x[keep], train.y[keep], epochs=2, batch_size=1, lr=0.01, rng=np.random.default_rng(0)
    )
    weights = model.get_weights()
    assert weights["coef"].shape == (10, 64)
    # classes never seen are trained as negatives: their scores fall below zero
    assert (weights["intercept"][3:] < 0).all()
    assert set(model.predict(train.x[keep])) <= {0, 1, 2}  # type: ignore[attr-defined]


def _multinomial_gradient(
    model: Model, x: np.ndarray, y: np.ndarray, c: float
) -> tuple[np.ndarray, np.ndarray]:
    """Gradient of mean cross-entropy + ||W||^2 / (2 C n) over all classes, in numpy."""
    weights = model.get_weights()
    xs, n = _f64(x), len(y)
    z = xs @ weights["coef"].T + weights["intercept"]
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(n), y] -= 1.0
    return p.T @ xs / n + weights["coef"] / (c * n), p.sum(axis=0) / n


def test_sk_logreg_on_a_partition_missing_classes_solves_the_global_class_problem() -> None:
    """Classes absent from the rows stay in the model, and the fit is the optimum of the
    local loss over all classes: its gradient vanishes."""
    train, _ = _split("digits")
    keep = train.y < 4
    model = build_model("sk_logreg", n_features=64, n_classes=10, seed=0, C=0.5, tol=1e-10)
    model.fit(
        train.x[keep],
        train.y[keep],
        epochs=3000,
        batch_size=1,
        lr=1.0,
        rng=np.random.default_rng(0),
    )
    assert model.get_weights()["coef"].shape == (10, 64)
    grad_w, grad_b = _multinomial_gradient(model, train.x[keep], train.y[keep], c=0.5)
    assert np.abs(grad_w).max() < 1e-6 and np.abs(grad_b).max() < 1e-6
    intercept = model.get_weights()["intercept"]
    assert intercept[4:].max() < intercept[:4].min()


def test_sk_logreg_accepts_a_single_class_partition() -> None:
    train, _ = _split("breast_cancer")
    model = build_model("sk_logreg", n_features=30, n_classes=2, seed=0)
    only = train.y == 1
    model.fit(
        train.x[only], train.y[only], epochs=5, batch_size=1, lr=1.0, rng=np.random.default_rng(0)
    )
    assert (model.predict(train.x[only]) == 1).all()  # type: ignore[attr-defined]


@pytest.mark.parametrize("dataset", ["breast_cancer", "digits"])
def test_sk_logreg_rounds_reach_sklearns_solution(dataset: str) -> None:
    """Warm-started rounds of a few lbfgs iterations end where one long fit ends."""
    train, test = _split(dataset)
    assert train.n_classes is not None
    model = build_model(
        "sk_logreg", n_features=train.n_features, n_classes=train.n_classes, seed=0, tol=1e-8
    )
    for rnd in range(60):
        model.fit(train.x, train.y, epochs=10, batch_size=1, lr=1.0, rng=np.random.default_rng(rnd))
    oracle = LogisticRegression(tol=1e-8, max_iter=5000).fit(_f64(train.x), train.y)
    weights = model.get_weights()
    np.testing.assert_allclose(weights["coef"], oracle.coef_, atol=2e-3)
    metrics = model.evaluate(test.x, test.y)
    assert metrics["loss"] == pytest.approx(
        log_loss(test.y, oracle.predict_proba(_f64(test.x))), rel=1e-3
    )
    assert metrics["accuracy"] == pytest.approx(oracle.score(_f64(test.x), test.y), abs=1e-12)
    assert metrics["accuracy"] > 0.9


def test_sk_sgd_regressor_against_sklearn() -> None:
    train, test = _split("diabetes")
    model = build_model("sk_sgd_regressor", n_features=10, n_classes=None, seed=0)
    stats = model.fit(
        train.x, train.y, epochs=5, batch_size=1, lr=0.001, rng=np.random.default_rng(2)
    )
    oracle = SGDRegressor(
        learning_rate="constant",
        eta0=0.001,
        random_state=np.random.RandomState(int(np.random.default_rng(2).integers(2**32))),
    )
    for _ in range(5):
        oracle.partial_fit(_f64(train.x), _f64(train.y))
    weights = model.get_weights()
    np.testing.assert_allclose(weights["coef"], oracle.coef_, rtol=1e-12)
    np.testing.assert_allclose(weights["intercept"], oracle.intercept_, rtol=1e-12)
    predicted = oracle.predict(_f64(test.x))
    metrics = model.evaluate(test.x, test.y)
    assert metrics["loss"] == pytest.approx(mean_squared_error(test.y, predicted), rel=1e-9)
    assert metrics["r2"] == pytest.approx(r2_score(test.y, predicted), rel=1e-9)
    assert metrics["r2"] > 0.3
    train_mse = mean_squared_error(train.y, oracle.predict(_f64(train.x)))
    assert stats["loss"] == pytest.approx(train_mse, rel=1e-9)


@pytest.mark.parametrize(
    ("name", "args", "match"),
    [
        ("sk_sgd", {"penalty": "l3"}, "penalty"),
        ("sk_sgd", {"alpha": -1.0}, "alpha"),
        ("sk_sgd", {"alpha": "big"}, "alpha"),
        ("sk_logreg", {"C": 0.0}, "C must be a positive"),
        ("sk_logreg", {"tol": float("nan")}, "tol"),
        ("sk_logreg", {"max_iter": 5}, "'sk_logreg' has no argument 'max_iter'"),
        ("sk_sgd_regressor", {"penalty": "ridge"}, "penalty"),
    ],
)
def test_bad_arguments_are_named(name: str, args: dict[str, object], match: str) -> None:
    n_classes = None if name == "sk_sgd_regressor" else 2
    with pytest.raises(ConfigError, match=match):
        build_model(name, n_features=3, n_classes=n_classes, seed=0, **args)


def test_wrong_task_is_refused_with_the_alternative() -> None:
    with pytest.raises(ConfigError, match="sk_sgd_regressor"):
        build_model("sk_sgd", n_features=3, n_classes=None, seed=0)
    with pytest.raises(ConfigError, match="classification"):
        build_model("sk_logreg", n_features=3, n_classes=None, seed=0)
    with pytest.raises(ConfigError, match="sk_sgd or sk_logreg"):
        build_model("sk_sgd_regressor", n_features=3, n_classes=2, seed=0)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_bad_fit_inputs(name: str) -> None:
    model = build_model(name, n_features=3, n_classes=3, seed=0)
    x = np.zeros((4, 3), np.float32)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="labels must lie in"):
        model.fit(x, np.array([0, 1, 2, 3]), epochs=1, batch_size=2, lr=0.1, rng=rng)
    with pytest.raises(ValueError, match=r"shape \(rows, 3\)"):
        model.fit(np.zeros((4, 2)), np.zeros(4, np.int64), epochs=1, batch_size=2, lr=0.1, rng=rng)
    with pytest.raises(ValueError, match="epochs"):
        model.fit(x, np.zeros(4, np.int64), epochs=0, batch_size=2, lr=0.1, rng=rng)
    with pytest.raises(ValueError, match="integer class labels"):
        model.evaluate(x, np.zeros(4))


@pytest.mark.parametrize("name", [*CLASSIFIERS, "sk_sgd_regressor"])
def test_steps_are_reported_and_corrections_refused(name: str) -> None:
    ds = load_dataset("diabetes" if name == "sk_sgd_regressor" else "iris", seed=0)
    model = build_model(name, n_features=ds.n_features, n_classes=ds.n_classes, seed=0)
    stats = model.fit(ds.x, ds.y, epochs=3, batch_size=10, lr=0.001, rng=np.random.default_rng(0))
    if name == "sk_logreg":  # lbfgs iterations, at most epochs
        assert stats["steps"] in (1.0, 2.0, 3.0)
    else:  # one SGD step per row and epoch
        assert stats["steps"] == 3 * ds.n_samples
    before = model.get_weights()
    with pytest.raises(ConfigError, match=f"{name} .*cannot add a gradient correction"):
        model.fit(
            ds.x,
            ds.y,
            epochs=1,
            batch_size=10,
            lr=0.001,
            rng=np.random.default_rng(0),
            correction=Correction(mu=0.1, anchor=before),
        )
    for key, arr in model.get_weights().items():
        np.testing.assert_array_equal(arr, before[key], err_msg=key)
