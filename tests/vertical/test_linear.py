"""Vertical linear and logistic regression against the same models trained on pooled data."""

from __future__ import annotations

import numpy as np
import pytest

from consortium.jobs import run

# The oracle pools the aligned columns in one place (the protocol never does) and solves or
# trains there with numpy; the parties' saved parts, stacked, must give the same model.


def _ridge(x: np.ndarray, y: np.ndarray, lam: float) -> tuple[np.ndarray, float]:
    """argmin |Xw + b - y|^2 + lam |w|^2 (the intercept not penalised), by numpy."""
    aug = np.hstack([x, np.ones((len(x), 1))])
    penalty = lam * np.eye(aug.shape[1])
    penalty[-1, -1] = 0.0
    if lam == 0.0:
        sol = np.linalg.lstsq(aug, y, rcond=None)[0]
    else:
        sol = np.linalg.solve(aug.T @ aug + penalty, aug.T @ y)
    return sol[:-1], float(sol[-1])


@pytest.mark.parametrize("l2", [0.0, 0.05], ids=["least-squares", "ridge"])
def test_exact_solver_equals_centralised_least_squares(tmp_path, vfl, l2):
    job = vfl.example(
        "vfl_linreg_diabetes",
        algorithm__solver="exact",
        algorithm__l2=l2,
        algorithm__parts_dir=str(tmp_path / "parts"),
    )
    result = run(job, out=tmp_path / "run", quiet=True)
    assert result.ok, result.error
    pool = vfl.pooled(job)
    n = pool.n_train
    w, b = _ridge(pool.x[:n], pool.y[:n].astype(np.float64), l2 * n)
    got = vfl.load_parts(tmp_path / "run", tmp_path / "parts", pool, "master")
    np.testing.assert_allclose(got["weight"][:, 0], w, rtol=0, atol=1e-6)
    assert got["bias"][0] == pytest.approx(b, abs=1e-6)
    # the same as scikit-learn's ridge with alpha = l2 * rows
    from sklearn.linear_model import Ridge

    sk = Ridge(alpha=l2 * n if l2 else 1e-12).fit(pool.x[:n], pool.y[:n].astype(np.float64))
    np.testing.assert_allclose(got["weight"][:, 0], sk.coef_, rtol=0, atol=1e-5)
    assert result.metrics["steps"] <= 10 * 11 + 20


def test_gradient_training_equals_centralised_gradient_descent(tmp_path, vfl):
    job = vfl.example(
        "vfl_linreg_diabetes",
        algorithm__rounds=5,
        algorithm__l2=0.01,
        algorithm__parts_dir=str(tmp_path / "parts"),
    )
    result = run(job, out=tmp_path / "run", quiet=True)
    assert result.ok, result.error
    pool = vfl.pooled(job)
    plan = vfl.schedule(job, pool.n_train)
    w, b = vfl.central_gd(pool, plan, outputs=1, link="identity", lr=0.05, l2=0.01)
    got = vfl.load_parts(tmp_path / "run", tmp_path / "parts", pool, "master")
    np.testing.assert_allclose(got["weight"], w, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(got["bias"], b, rtol=1e-9, atol=1e-9)


def _accuracy(x: np.ndarray, y: np.ndarray, w: np.ndarray, b: np.ndarray) -> float:
    z = x @ w + b
    predicted = (z[:, 0] > 0).astype(int) if z.shape[1] == 1 else z.argmax(axis=1)
    return float(np.mean(predicted == y))


@pytest.mark.parametrize(
    ("dataset", "link", "outputs"),
    [("breast_cancer", "logistic", 1), ("wine", "softmax", 3)],
    ids=["binary", "multiclass"],
)
def test_logistic_regression_matches_central_training(tmp_path, vfl, dataset, link, outputs):
    job = vfl.example(
        "vfl_logreg_breast_cancer",
        data__dataset={"name": dataset},
        algorithm__rounds=8,
        algorithm__parts_dir=str(tmp_path / "parts"),
    )
    result = run(job, out=tmp_path / "run", quiet=True)
    assert result.ok, result.error
    pool = vfl.pooled(job)
    settings = job["algorithm"]
    plan = vfl.schedule(job, pool.n_train)
    w, b = vfl.central_gd(
        pool, plan, outputs=outputs, link=link, lr=settings["lr"], l2=settings.get("l2", 0.0)
    )
    got = vfl.load_parts(tmp_path / "run", tmp_path / "parts", pool, "master")
    np.testing.assert_allclose(got["weight"], w, rtol=1e-8, atol=1e-10)
    test = slice(pool.n_train, None)
    central = _accuracy(pool.x[test], pool.y[test], w, b)
    assert abs(result.metrics["accuracy"] - central) <= 0.005
    assert result.metrics["accuracy"] > 0.85
