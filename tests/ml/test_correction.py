"""The gradient-correction hook of the numpy models, against a plain-loop oracle."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consortium.ml import Correction, LinearRegression, SoftmaxRegression


def _oracle_linreg(x, y, w, b, *, lr, epochs, mu, anchor, shift):
    """Full-batch gradient descent on the mean squared error, plus the correction."""
    w, b = w.astype(np.float64), b.astype(np.float64)
    for _ in range(epochs):
        r = x @ w[:, 0] + b[0] - y
        gw = 2 * x.T @ r / len(y)
        gb = 2 * r.mean()
        gw = gw + mu * (w[:, 0] - anchor["W"][:, 0]) + shift["W"][:, 0]
        gb = gb + mu * (b[0] - anchor["b"][0]) + shift["b"][0]
        w = w - lr * gw[:, None]
        b = b - lr * np.array([gb])
    return w, b


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    mu=st.floats(0.0, 2.0),
    epochs=st.integers(1, 4),
    with_shift=st.booleans(),
)
def test_linreg_correction_matches_the_oracle(seed, mu, epochs, with_shift):
    rng = np.random.default_rng(seed)
    n, d = 20, 3
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = rng.normal(size=n).astype(np.float32)
    model = LinearRegression(n_features=d)
    start = {
        "W": rng.normal(size=(d, 1)).astype(np.float32),
        "b": rng.normal(size=1).astype(np.float32),
    }
    model.set_weights(start)
    anchor = {
        "W": rng.normal(size=(d, 1)).astype(np.float32),
        "b": rng.normal(size=1).astype(np.float32),
    }
    shift = (
        {
            "W": rng.normal(size=(d, 1)).astype(np.float32),
            "b": rng.normal(size=1).astype(np.float32),
        }
        if with_shift
        else {"W": np.zeros((d, 1), np.float32), "b": np.zeros(1, np.float32)}
    )
    stats = model.fit(
        x,
        y,
        epochs=epochs,
        batch_size=n,
        lr=0.05,
        rng=np.random.default_rng(0),
        correction=Correction(mu=mu, anchor=anchor, shift=shift if with_shift else None),
    )
    w, b = _oracle_linreg(
        x, y, start["W"], start["b"], lr=0.05, epochs=epochs, mu=mu, anchor=anchor, shift=shift
    )
    got = model.get_weights()
    np.testing.assert_allclose(got["W"], w, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got["b"], b, rtol=1e-4, atol=1e-5)
    assert stats["steps"] == epochs


def test_a_zero_correction_changes_nothing():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 4)).astype(np.float32)
    y = rng.integers(0, 3, size=50)
    a, b = (
        SoftmaxRegression(n_features=4, n_classes=3),
        SoftmaxRegression(n_features=4, n_classes=3),
    )
    zero = {k: np.zeros_like(v) for k, v in a.get_weights().items()}
    a.fit(x, y, epochs=2, batch_size=8, lr=0.1, rng=np.random.default_rng(3))
    b.fit(
        x,
        y,
        epochs=2,
        batch_size=8,
        lr=0.1,
        rng=np.random.default_rng(3),
        correction=Correction(mu=0.0, anchor=zero, shift=zero),
    )
    for k, v in a.get_weights().items():
        np.testing.assert_array_equal(b.get_weights()[k], v)


def test_a_strong_proximal_term_keeps_the_model_near_its_anchor():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 5)).astype(np.float32)
    y = rng.integers(0, 4, size=200)
    anchor = {"W": np.zeros((5, 4), np.float32), "b": np.zeros(4, np.float32)}
    free, held = (
        SoftmaxRegression(n_features=5, n_classes=4),
        SoftmaxRegression(n_features=5, n_classes=4),
    )
    free.fit(x, y, epochs=5, batch_size=10, lr=0.1, rng=np.random.default_rng(0))
    held.fit(
        x,
        y,
        epochs=5,
        batch_size=10,
        lr=0.1,
        rng=np.random.default_rng(0),
        correction=Correction(mu=5.0, anchor=anchor),
    )
    assert np.abs(held.get_weights()["W"]).sum() < 0.5 * np.abs(free.get_weights()["W"]).sum()


def test_bad_corrections_are_refused():
    with pytest.raises(ValueError, match="mu must be"):
        Correction(mu=-1.0, anchor={})
    with pytest.raises(ValueError, match="needs an anchor"):
        Correction(mu=1.0)
    model = LinearRegression(n_features=2)
    with pytest.raises(ValueError, match="unknown arrays"):
        model.fit(
            np.zeros((4, 2), np.float32),
            np.zeros(4, np.float32),
            epochs=1,
            batch_size=2,
            lr=0.1,
            rng=np.random.default_rng(0),
            correction=Correction(shift={"V": np.zeros(1)}),
        )


def test_torch_models_apply_the_correction():
    pytest.importorskip("torch")
    from consortium.ml import build_model

    rng = np.random.default_rng(4)
    x = rng.normal(size=(64, 6)).astype(np.float32)
    y = rng.integers(0, 3, size=64)
    free = build_model("mlp", n_features=6, n_classes=3, seed=1)
    held = build_model("mlp", n_features=6, n_classes=3, seed=1)
    anchor = free.get_weights()
    floats = {k: v for k, v in anchor.items() if v.dtype.kind == "f"}
    free.fit(x, y, epochs=5, batch_size=8, lr=0.1, rng=np.random.default_rng(0))
    stats = held.fit(
        x,
        y,
        epochs=5,
        batch_size=8,
        lr=0.1,
        rng=np.random.default_rng(0),
        correction=Correction(mu=8.0, anchor=floats),
    )
    assert stats["steps"] == 5 * 8

    def moved(m):
        return sum(float(np.abs(m.get_weights()[k] - v).sum()) for k, v in floats.items())

    assert moved(held) < 0.5 * moved(free)
    # A shift alone moves parameters against it, whatever the data says.
    shifted = build_model("mlp", n_features=6, n_classes=3, seed=1)
    shift = {k: np.full_like(v, 0.5) for k, v in floats.items()}
    shifted.fit(
        x,
        y,
        epochs=1,
        batch_size=64,
        lr=0.1,
        rng=np.random.default_rng(0),
        correction=Correction(shift=shift),
    )
    plain = build_model("mlp", n_features=6, n_classes=3, seed=1)
    plain.fit(x, y, epochs=1, batch_size=64, lr=0.1, rng=np.random.default_rng(0))
    for k in floats:
        np.testing.assert_allclose(
            shifted.get_weights()[k], plain.get_weights()[k] - 0.05, rtol=1e-4, atol=1e-5
        )
