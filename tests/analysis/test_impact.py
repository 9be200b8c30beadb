"""Tests of :func:`ajan.analysis.impact.predict_impact`."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from ajan.analysis.correlation import lagged_correlation
from ajan.analysis.impact import ImpactPrediction, predict_impact


def _leading_pair(r: float, lag: int, n: int = 800, seed: int = 0) -> np.ndarray:
    """A source and a target that follows it ``lag`` points later with correlation ``r``."""
    rng = np.random.default_rng(seed)
    src = rng.normal(size=n + lag)
    tgt = r * src[:n] + np.sqrt(1 - r * r) * rng.normal(size=n)
    return np.vstack([src[lag:], tgt])  # tgt[t] depends on src[t - lag]


def test_leading_indicator_predicts_target_with_lag_and_sign() -> None:
    x = _leading_pair(0.8, 5)
    corr = lagged_correlation(x, max_lag=10)
    [p] = predict_impact([6.0, 0.0], corr)
    assert isinstance(p, ImpactPrediction)
    assert (p.target, p.source, p.lag) == (1, 0, 5)
    assert p.r == pytest.approx(0.8, abs=0.05)
    assert p.expected_z == pytest.approx(p.r * 6.0)  # regression in standardised units
    assert p.low_z < p.expected_z < p.high_z
    assert p.high_z - p.low_z == pytest.approx(2 * 1.96 * np.sqrt(1 - p.r**2), rel=0.1)
    # A source anomalous downwards predicts the target downwards.
    [q] = predict_impact([-6.0, 0.0], corr)
    assert q.expected_z == pytest.approx(-p.expected_z)
    assert q.breach_probability == pytest.approx(p.breach_probability)


def test_negative_correlation_flips_the_sign() -> None:
    x = _leading_pair(0.8, 3)
    x[1] *= -1
    [p] = predict_impact([6.0, 0.0], lagged_correlation(x, max_lag=6))
    assert p.lag == 3 and p.r < 0 and p.expected_z < 0 and p.high_z < 0


def test_interval_and_breach_probability_match_simulation() -> None:
    r, z_src, breach = 0.8, 5.0, 4.0
    x = _leading_pair(r, 2, n=2000, seed=1)
    [p] = predict_impact([z_src, 0.0], lagged_correlation(x, max_lag=4), breach_z=breach)
    # Draw the target's z given the source's under the true model.
    sim = r * z_src + np.sqrt(1 - r * r) * np.random.default_rng(2).normal(size=200_000)
    coverage = np.mean((sim >= p.low_z) & (sim <= p.high_z))
    assert 0.93 <= coverage <= 0.98
    assert p.breach_probability == pytest.approx(np.mean(np.abs(sim) >= breach), abs=0.05)


def test_stronger_source_means_higher_breach_probability() -> None:
    corr = lagged_correlation(_leading_pair(0.7, 2), max_lag=4)
    probs = [predict_impact([z, 0.0], corr)[0].breach_probability for z in (4.0, 5.0, 6.0, 8.0)]
    assert all(0.0 <= q <= 1.0 for q in probs)
    assert probs == sorted(probs) and probs[0] < probs[-1] - 0.3


def test_best_source_per_target_and_ordering() -> None:
    rng = np.random.default_rng(3)
    n = 800
    a, b = rng.normal(size=(2, n + 4))
    strong = 0.9 * a[:n] + np.sqrt(1 - 0.81) * rng.normal(size=n)  # follows a by 4
    weak = 0.5 * b[:n] + np.sqrt(1 - 0.25) * rng.normal(size=n)  # follows b by 4
    x = np.vstack([a[4:], b[4:], strong, weak])
    corr = lagged_correlation(x, max_lag=6)
    preds = predict_impact([6.0, 6.0, 0.0, 0.0], corr)
    assert [(p.target, p.source) for p in preds] == [(2, 0), (3, 1)]  # most likely breach first
    assert preds[0].breach_probability > preds[1].breach_probability
    only = predict_impact([6.0, 6.0, 0.0, 0.0], corr, targets=[3])
    assert [(p.target, p.source) for p in only] == [(3, 1)]


def test_no_prediction_without_significant_correlation_or_anomaly() -> None:
    rng = np.random.default_rng(4)
    corr = lagged_correlation(rng.normal(size=(3, 600)), max_lag=5)
    assert not corr.significant.any()
    assert predict_impact([9.0, 9.0, 9.0], corr) == []
    lead = lagged_correlation(_leading_pair(0.8, 5), max_lag=10)
    assert predict_impact([3.9, 0.0], lead) == []  # source below anomalous_z
    assert len(predict_impact([3.9, 0.0], lead, anomalous_z=3.0)) == 1
    assert predict_impact([np.nan, 0.0], lead) == []


def test_a_follower_does_not_predict_its_leader() -> None:
    corr = lagged_correlation(_leading_pair(0.8, 5), max_lag=10)
    assert corr.best_lag[1, 0] == -5
    # Metric 1 is anomalous, but it moves 5 points *after* metric 0: no prediction for 0.
    assert predict_impact([0.0, 6.0], corr) == []


def test_sources_are_not_default_targets() -> None:
    rng = np.random.default_rng(5)
    a = rng.normal(size=600)
    x = np.vstack([a, a + 0.3 * rng.normal(size=600), np.roll(a, 3) + 0.3 * rng.normal(size=600)])
    preds = predict_impact([8.0, 8.0, 0.0], lagged_correlation(x, max_lag=5))
    assert [p.target for p in preds] == [2]


def test_interval_is_wider_with_less_data() -> None:
    # The uncertainty of r itself: the same r estimated from fewer points gives a wider interval.
    long = predict_impact([6.0, 0.0], lagged_correlation(_leading_pair(0.8, 1, n=3000), max_lag=2))[0]
    short = predict_impact([6.0, 0.0], lagged_correlation(_leading_pair(0.8, 1, n=60), max_lag=2))[0]
    w_long = (long.high_z - long.low_z) / np.sqrt(1 - long.r**2)
    w_short = (short.high_z - short.low_z) / np.sqrt(1 - short.r**2)
    assert w_short > w_long
    assert stats.norm.ppf(0.975) * 2 == pytest.approx(w_long, rel=0.05)
