from __future__ import annotations

import numpy as np
import pytest

from consortium.errors import ConfigError
from consortium.ml import (
    LinearRegression,
    Model,
    build_model,
    load_dataset,
    standardize,
    train_test_split,
)


def test_one_step_matches_a_plain_loop() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 3)).astype(np.float32)
    y = rng.normal(size=6).astype(np.float32)
    w0 = rng.normal(size=(3, 1)).astype(np.float32)
    b0 = np.array([0.5], np.float32)
    model = LinearRegression(n_features=3, l2=0.2)
    model.set_weights({"W": w0, "b": b0})
    stats = model.fit(x, y, epochs=1, batch_size=6, lr=0.05, rng=np.random.default_rng(0))
    grad_w, grad_b, mse = np.zeros(3), 0.0, 0.0
    for i in range(6):
        residual = (
            sum(float(x[i, f]) * float(w0[f, 0]) for f in range(3)) + float(b0[0]) - float(y[i])
        )
        mse += residual**2 / 6
        grad_b += 2 * residual / 6
        for f in range(3):
            grad_w[f] += 2 * residual * float(x[i, f]) / 6
    grad_w += 0.2 * w0[:, 0]
    got = model.get_weights()
    np.testing.assert_allclose(got["W"][:, 0], w0[:, 0] - 0.05 * grad_w, atol=1e-5)
    np.testing.assert_allclose(got["b"], b0 - 0.05 * grad_b, atol=1e-5)
    assert stats["loss"] == pytest.approx(mse, rel=1e-5)


def test_sgd_reaches_the_least_squares_solution() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 4)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5, 3.0]) + 0.7 + rng.normal(scale=0.1, size=400)).astype(
        np.float32
    )
    model = LinearRegression(n_features=4)
    model.fit(x, y, epochs=40, batch_size=16, lr=0.01, rng=np.random.default_rng(0))
    design = np.hstack([x, np.ones((400, 1))]).astype(np.float64)
    exact = np.linalg.lstsq(design, y.astype(np.float64), rcond=None)[0]
    got = model.get_weights()
    np.testing.assert_allclose(got["W"][:, 0], exact[:4], atol=0.02)
    assert got["b"][0] == pytest.approx(exact[4], abs=0.02)


def test_evaluate_matches_sklearn_on_diabetes() -> None:
    from sklearn.linear_model import LinearRegression as Exact
    from sklearn.metrics import mean_squared_error, r2_score

    ds = load_dataset("diabetes", seed=0)
    train, test = standardize(*train_test_split(ds, test_fraction=0.25, seed=0))
    model = build_model("linreg", n_features=10, n_classes=None, seed=0)
    assert isinstance(model, Model)
    model.fit(train.x, train.y, epochs=100, batch_size=32, lr=0.01, rng=np.random.default_rng(0))
    metrics = model.evaluate(test.x, test.y)
    predicted = model.predict(test.x)  # type: ignore[attr-defined]
    assert metrics["loss"] == pytest.approx(mean_squared_error(test.y, predicted), rel=1e-5)
    assert metrics["r2"] == pytest.approx(r2_score(test.y, predicted), rel=1e-5)
    exact = Exact().fit(train.x, train.y).score(test.x, test.y)
    assert metrics["r2"] == pytest.approx(exact, abs=0.03)


def test_linreg_refuses_classification() -> None:
    with pytest.raises(ConfigError, match="logreg"):
        build_model("linreg", n_features=3, n_classes=2, seed=0)
