from __future__ import annotations

import math

import numpy as np
import pytest

from consortium.errors import ConfigError
from consortium.ml import (
    Model,
    SoftmaxRegression,
    build_model,
    load_dataset,
    standardize,
    train_test_split,
)


def _reference_step(
    w: np.ndarray, b: np.ndarray, x: np.ndarray, y: np.ndarray, lr: float, l2: float
) -> tuple[np.ndarray, np.ndarray, float]:
    """One SGD step on the batch (x, y), written as plain loops in float64."""
    n, d = x.shape
    k = w.shape[1]
    grad_w = np.zeros((d, k))
    grad_b = np.zeros(k)
    loss = 0.0
    for i in range(n):
        logits = [
            sum(float(x[i, f]) * float(w[f, c]) for f in range(d)) + float(b[c]) for c in range(k)
        ]
        top = max(logits)
        exps = [math.exp(v - top) for v in logits]
        total = sum(exps)
        loss += -(logits[y[i]] - top - math.log(total))
        for c in range(k):
            g = exps[c] / total - (1.0 if c == y[i] else 0.0)
            grad_b[c] += g / n
            for f in range(d):
                grad_w[f, c] += float(x[i, f]) * g / n
    grad_w += l2 * w
    return w - lr * grad_w, b - lr * grad_b, loss


def _reference_fit(
    w: np.ndarray,
    b: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    l2: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, float]:
    """SGD with the documented batch order: one ``rng.permutation`` per epoch."""
    w, b = w.astype(np.float64), b.astype(np.float64)
    loss = 0.0
    for _ in range(epochs):
        order = rng.permutation(len(x))
        loss = 0.0
        for start in range(0, len(x), batch_size):
            rows = order[start : start + batch_size]
            w, b, batch_loss = _reference_step(w, b, x[rows], y[rows], lr, l2)
            loss += batch_loss
    return w, b, loss / len(x)


@pytest.fixture
def problem() -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(42)
    x = rng.normal(size=(10, 3)).astype(np.float32)
    y = rng.integers(0, 4, 10)
    start = {
        "W": rng.normal(scale=0.5, size=(3, 4)).astype(np.float32),
        "b": rng.normal(scale=0.5, size=4).astype(np.float32),
    }
    return x, y, start


@pytest.mark.parametrize("l2", [0.0, 0.3])
def test_one_step_matches_a_plain_loop(
    problem: tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]], l2: float
) -> None:
    x, y, start = problem
    model = SoftmaxRegression(n_features=3, n_classes=4, l2=l2)
    model.set_weights(start)
    stats = model.fit(x, y, epochs=1, batch_size=len(x), lr=0.7, rng=np.random.default_rng(0))
    w, b, loss = _reference_step(start["W"].astype(float), start["b"].astype(float), x, y, 0.7, l2)
    got = model.get_weights()
    np.testing.assert_allclose(got["W"], w, atol=1e-5)
    np.testing.assert_allclose(got["b"], b, atol=1e-5)
    assert stats["loss"] == pytest.approx(loss / len(x), abs=1e-5)


def test_minibatch_epochs_match_a_plain_loop(
    problem: tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]],
) -> None:
    x, y, start = problem
    model = SoftmaxRegression(n_features=3, n_classes=4, l2=0.01)
    model.set_weights(start)
    stats = model.fit(x, y, epochs=3, batch_size=4, lr=0.3, rng=np.random.default_rng(9))
    w, b, loss = _reference_fit(
        start["W"],
        start["b"],
        x,
        y,
        epochs=3,
        batch_size=4,
        lr=0.3,
        l2=0.01,
        rng=np.random.default_rng(9),
    )
    np.testing.assert_allclose(model.get_weights()["W"], w, atol=1e-5)
    np.testing.assert_allclose(model.get_weights()["b"], b, atol=1e-5)
    assert stats["loss"] == pytest.approx(loss, abs=1e-5)


def test_accuracy_matches_sklearn_on_breast_cancer() -> None:
    from sklearn.linear_model import LogisticRegression

    ds = load_dataset("breast_cancer", seed=0)
    train, test = standardize(*train_test_split(ds, test_fraction=0.25, seed=0))
    model = build_model("logreg", n_features=ds.n_features, n_classes=2, seed=0)
    model.fit(train.x, train.y, epochs=30, batch_size=16, lr=0.05, rng=np.random.default_rng(0))
    ours = model.evaluate(test.x, test.y)["accuracy"]
    theirs = LogisticRegression(max_iter=1000).fit(train.x, train.y).score(test.x, test.y)
    assert abs(ours - theirs) <= 0.02
    assert ours > 0.9


def test_evaluate_matches_sklearn_metrics(
    problem: tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]],
) -> None:
    from sklearn.metrics import accuracy_score, log_loss

    x, y, start = problem
    model = SoftmaxRegression(n_features=3, n_classes=4)
    model.set_weights(start)
    logits = x.astype(np.float64) @ start["W"] + start["b"]
    proba = np.exp(logits - logits.max(1, keepdims=True))
    proba /= proba.sum(1, keepdims=True)
    metrics = model.evaluate(x, y)
    assert metrics["loss"] == pytest.approx(log_loss(y, proba, labels=range(4)), rel=1e-5)
    assert metrics["accuracy"] == pytest.approx(accuracy_score(y, proba.argmax(1)))


def test_softmax_is_stable_for_huge_logits() -> None:
    x = np.array([[1e4, -1e4], [-1e4, 1e4]], dtype=np.float32)
    y = np.array([0, 1])
    model = SoftmaxRegression(n_features=2, n_classes=2)
    model.set_weights(
        {"W": np.array([[10, -10], [-10, 10]], np.float32), "b": np.zeros(2, np.float32)}
    )
    assert model.evaluate(x, y) == {"loss": 0.0, "accuracy": 1.0}
    assert model.evaluate(x, 1 - y)["loss"] == pytest.approx(4e5, rel=1e-6)  # finite, not inf
    stats = model.fit(x, 1 - y, epochs=2, batch_size=2, lr=1e-6, rng=np.random.default_rng(0))
    assert np.isfinite(stats["loss"])
    assert all(np.isfinite(a).all() for a in model.get_weights().values())


def test_fit_is_deterministic_given_the_generator() -> None:
    ds = load_dataset("iris", seed=0)
    runs = []
    for _ in range(2):
        model = SoftmaxRegression(n_features=4, n_classes=3)
        model.fit(ds.x, ds.y, epochs=3, batch_size=7, lr=0.01, rng=np.random.default_rng(5))
        runs.append(model.get_weights())
    other = SoftmaxRegression(n_features=4, n_classes=3)
    other.fit(ds.x, ds.y, epochs=3, batch_size=7, lr=0.01, rng=np.random.default_rng(6))
    np.testing.assert_array_equal(runs[0]["W"], runs[1]["W"])
    assert not np.array_equal(runs[0]["W"], other.get_weights()["W"])


def test_weights_are_named_float32_copies() -> None:
    model = SoftmaxRegression(n_features=5, n_classes=3)
    assert isinstance(model, Model)
    assert model.num_parameters() == 5 * 3 + 3
    weights = model.get_weights()
    assert list(weights) == ["W", "b"]
    assert weights["W"].shape == (5, 3) and weights["b"].shape == (3,)
    assert all(a.dtype == np.float32 for a in weights.values())
    weights["W"][:] = 7.0
    assert not model.get_weights()["W"].any()  # the caller's copy is its own
    x = np.ones((4, 5), np.float32)
    model.fit(
        x, np.array([0, 1, 2, 0]), epochs=1, batch_size=2, lr=0.1, rng=np.random.default_rng(0)
    )
    assert (weights["W"] == 7.0).all()


@pytest.mark.parametrize(
    ("weights", "match"),
    [
        ({"W": np.zeros((5, 3), np.float32)}, "missing \\['b'\\]"),
        (
            {"W": np.zeros((5, 3), np.float32), "b": np.zeros(3, np.float32), "c": np.zeros(1)},
            "unexpected \\['c'\\]",
        ),
        ({"W": np.zeros((3, 5), np.float32), "b": np.zeros(3, np.float32)}, "'W' has shape"),
        (
            {"W": np.zeros((5, 3), np.float32), "b": np.zeros(3, np.float64)},
            "'b' has dtype float64",
        ),
    ],
)
def test_set_weights_names_the_bad_array(weights: dict[str, np.ndarray], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SoftmaxRegression(n_features=5, n_classes=3).set_weights(weights)


def test_set_weights_accepts_other_byte_orders_and_read_only_arrays() -> None:
    model = SoftmaxRegression(n_features=2, n_classes=2)
    w = np.arange(4, dtype=">f4").reshape(2, 2)
    w.flags.writeable = False
    model.set_weights({"W": w, "b": np.ones(2, np.float32)})
    np.testing.assert_array_equal(model.get_weights()["W"], np.arange(4).reshape(2, 2))


def test_bad_inputs_are_refused() -> None:
    model = SoftmaxRegression(n_features=2, n_classes=3)
    x = np.zeros((4, 2), np.float32)
    fit = {"epochs": 1, "batch_size": 2, "lr": 0.1, "rng": np.random.default_rng(0)}
    with pytest.raises(ValueError, match="labels"):
        model.fit(x, np.array([0, 1, 2, 3]), **fit)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shape"):
        model.fit(np.zeros((4, 3), np.float32), np.zeros(4, np.int64), **fit)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size"):
        model.fit(
            x, np.zeros(4, np.int64), epochs=1, batch_size=0, lr=0.1, rng=np.random.default_rng(0)
        )
    with pytest.raises(ConfigError, match="linreg"):
        build_model("logreg", n_features=2, n_classes=None, seed=0)
    with pytest.raises(ConfigError, match="l2"):
        build_model("logreg", n_features=2, n_classes=3, seed=0, l2=-1.0)


def test_a_model_factory_checks_once_and_builds_fresh_equal_models():
    from consortium.ml import model_factory

    with pytest.raises(ConfigError, match="no argument 'l3'"):
        model_factory("logreg", n_features=4, n_classes=3, seed=1, l3=0.1)  # before any build
    build = model_factory("logreg", n_features=4, n_classes=3, seed=1, l2=0.01)
    one, two = build(), build()
    assert one is not two
    for name, value in one.get_weights().items():
        np.testing.assert_array_equal(value, two.get_weights()[name])
    assert one.l2 == 0.01
