"""Differential privacy: mechanism scales, noise shares that add up to the mechanism's
distribution (statistical tests with fixed seeds), and the budget accountant."""

from __future__ import annotations

import math

import numpy as np
import pytest

from consortium.privacy.dp import (
    MECHANISMS,
    Accountant,
    Budget,
    BudgetExceeded,
    gaussian_sigma,
    laplace_scale,
    noise_share,
)

stats = pytest.importorskip("scipy.stats")


def test_scales_follow_the_mechanisms():
    assert laplace_scale(2.0, 0.5) == 4.0
    assert gaussian_sigma(1.0, 0.5, 1e-5) == pytest.approx(math.sqrt(2 * math.log(1.25e5)) / 0.5)
    with pytest.raises(ValueError):
        gaussian_sigma(1.0, 1.5, 1e-5)  # the classic bound holds for epsilon < 1
    with pytest.raises(ValueError):
        laplace_scale(1.0, 0.0)
    assert set(MECHANISMS) == {"gaussian", "laplace"}


def _summed(mechanism: str, cost: Budget, parties: int, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shares = [
        noise_share(mechanism, rng, sensitivity=3.0, cost=cost, parties=parties, shape=(n,))
        for _ in range(parties)
    ]
    return np.sum(shares, axis=0)


@pytest.mark.parametrize("parties", [1, 3, 10])
def test_laplace_shares_sum_to_laplace_noise(parties):
    noise = _summed("laplace", Budget(0.5), parties, 20_000, seed=parties)
    b = 3.0 / 0.5
    assert stats.kstest(noise, stats.laplace(scale=b).cdf).pvalue > 1e-3
    assert stats.kstest(noise, stats.laplace(scale=1.2 * b).cdf).pvalue < 1e-6
    assert stats.kstest(noise, stats.norm(scale=b * math.sqrt(2)).cdf).pvalue < 1e-6


@pytest.mark.parametrize("parties", [1, 4])
def test_gaussian_shares_sum_to_gaussian_noise(parties):
    cost = Budget(0.8, 1e-6)
    noise = _summed("gaussian", cost, parties, 20_000, seed=10 + parties)
    sigma = gaussian_sigma(3.0, 0.8, 1e-6)
    assert stats.kstest(noise, stats.norm(scale=sigma).cdf).pvalue > 1e-3
    assert stats.kstest(noise, stats.norm(scale=1.1 * sigma).cdf).pvalue < 1e-6


def test_accountant_composes_sequentially():
    acc = Accountant({"t": Budget(1.0, 1e-5), "u": Budget(0.5)})
    acc.charge("t", Budget(0.25))
    acc.charge("t", Budget(0.5, 4e-6))
    acc.charge("u", Budget(0.5))
    assert acc.spent("t") == Budget(0.75, 4e-6)
    assert acc.remaining("t").epsilon == pytest.approx(0.25)
    acc.charge("t", Budget(0.1))
    acc.charge("t", Budget(0.15))  # 0.75 + 0.1 + 0.15 == 1.0 up to rounding: allowed
    assert acc.spent("t").epsilon == pytest.approx(1.0)


def test_accountant_refuses_past_the_budget_and_spends_nothing():
    acc = Accountant({"t": Budget(1.0, 1e-5)})
    acc.charge("t", Budget(0.75))
    with pytest.raises(
        BudgetExceeded, match=r"'t'.*epsilon=0.5.*spent epsilon=0.75.*budget epsilon=1"
    ):
        acc.charge("t", Budget(0.5), what="query q")
    assert acc.spent("t") == Budget(0.75)
    with pytest.raises(BudgetExceeded, match="delta"):
        acc.charge("t", Budget(0.1, 1e-4))
    with pytest.raises(BudgetExceeded, match="no privacy budget"):
        acc.charge("other", Budget(0.1))


def test_budgets_are_validated():
    with pytest.raises(ValueError):
        Budget(-1.0)
    with pytest.raises(ValueError):
        Budget(1.0, 2.0)
