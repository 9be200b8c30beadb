"""Breach forecasts: a planted creep is predicted with its crossing time inside the interval, noise
below a threshold is not a coming breach, and the edge cases (constant, missing, short) are plain."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ajan.analysis.forecast import NO_FORECAST, breach_forecast, trend_lines

STEP = 15.0
HORIZON = 300.0
ROWS = 240  # an hour at 15 s
SPLIT = 180  # the newest quarter is judged, as the operator does


def ar1(rng: np.random.Generator, n: int, rho: float) -> np.ndarray:
    """Unit-variance AR(1) noise: what a rate or quantile over a range window looks like."""
    out = np.empty(n)
    out[0] = rng.standard_normal()
    for i in range(1, n):
        out[i] = rho * out[i - 1] + math.sqrt(1.0 - rho**2) * rng.standard_normal()
    return out


def test_trend_lines_fit_each_stretch_robustly() -> None:
    y = 2.0 + 0.5 * np.arange(12.0)
    y[5] = 100.0  # one spike tilts neither line through it
    level, slope = trend_lines(y, 6)
    assert level.shape == slope.shape == (7,)
    np.testing.assert_allclose(slope, 0.5)
    np.testing.assert_allclose(level, 2.0 + 0.5 * np.arange(5, 12))


def test_trend_lines_of_a_series_shorter_than_the_span_are_empty() -> None:
    level, slope = trend_lines([1.0, 2.0], 4)
    assert level.size == slope.size == 0


def creep(seed: int) -> tuple[np.ndarray, float]:
    """An hour of p99 whose last 15 minutes climb 6 ms a minute (about 0.49 s now), and the seconds
    from now until it actually stays above 0.5 s (the median of three samples), as it goes on."""
    rng = np.random.default_rng(seed)
    ahead = 40
    t = np.arange(ROWS + ahead)
    onset = ROWS - 60
    y = 0.40 + 0.005 * ar1(rng, t.size, 0.5) + np.where(t >= onset, (t - onset) * 0.0015, 0.0)
    held = np.array([np.median(y[i - 2 : i + 1]) for i in range(ROWS, t.size)])
    return y[:ROWS], float((np.argmax(held >= 0.5) + 1) * STEP)


def test_a_planted_creep_is_predicted_and_its_crossing_falls_in_the_interval() -> None:
    covered = 0
    seeds = range(40)
    for seed in seeds:
        y, crossing = creep(seed)
        forecast = breach_forecast(y, 0.5, step_s=STEP, horizon_s=HORIZON, split=SPLIT)
        assert forecast.probability > 0.75, seed
        assert 0.0 < forecast.eta_s < HORIZON
        assert forecast.slope == pytest.approx(0.0015 / STEP, rel=0.5)
        covered += forecast.eta_low_s <= crossing <= forecast.eta_high_s
    # A 90 % interval: most crossings fall in it (the latest bound is deliberately late).
    assert covered >= 0.8 * len(seeds)


@pytest.mark.parametrize("rho", [0.0, 0.8, 0.95])
def test_noise_below_a_threshold_is_no_coming_breach(rho: float) -> None:
    # Four standard deviations of headroom, smooth or not: the level wanders, lines through short
    # stretches tilt, and none of it is a breach in the next five minutes.
    rng = np.random.default_rng(7)
    probabilities = np.array(
        [
            breach_forecast(ar1(rng, ROWS, rho), 4.0, step_s=STEP, horizon_s=HORIZON, split=SPLIT).probability
            for _ in range(200)
        ]
    )
    assert np.mean(probabilities >= 0.75) <= 0.01
    assert np.median(probabilities) < 0.05


def test_a_metric_beyond_its_threshold_is_breached_now_whatever_its_baseline() -> None:
    y = np.full(20, 0.3)
    y[-3:] = 0.7  # a sudden burst: nothing to forecast, it is here
    forecast = breach_forecast(y, 0.5, step_s=STEP, horizon_s=HORIZON, split=15)
    assert forecast.breached and forecast.eta_s == 0.0
    assert forecast.probability == 1.0
    assert forecast.now == pytest.approx(0.7)


def test_one_spike_is_no_breach() -> None:
    y = np.full(ROWS, 0.3)
    y[-1] = 0.9  # the median of the newest three samples is still 0.3
    assert not breach_forecast(y, 0.5, step_s=STEP, horizon_s=HORIZON, split=SPLIT).breached


@pytest.mark.parametrize("level, breached", [(0.4, False), (0.5, True), (0.6, True)])
def test_a_constant_metric_is_certainly_beyond_or_certainly_not(level: float, breached: bool) -> None:
    forecast = breach_forecast(np.full(ROWS, level), 0.5, step_s=STEP, horizon_s=HORIZON, split=SPLIT)
    assert forecast.breached is breached
    assert forecast.probability == (1.0 if breached else 0.0)


def test_a_minimum_objective_is_forecast_downwards() -> None:
    rng = np.random.default_rng(3)
    # A success ratio that must stay above 0.99, sliding towards it.
    y = 0.999 - 0.0002 * np.abs(ar1(rng, ROWS, 0.5))
    y[-50:] -= 0.00015 * np.arange(1, 51)
    forecast = breach_forecast(y, 0.99, step_s=STEP, horizon_s=HORIZON, split=SPLIT, orient=-1.0)
    assert forecast.probability > 0.9
    assert forecast.slope < 0.0
    assert forecast.now > 0.99
    rising = breach_forecast(y[::-1].copy(), 0.99, step_s=STEP, horizon_s=HORIZON, split=SPLIT, orient=-1.0)
    assert rising.probability < 0.05


def test_missing_samples_are_skipped() -> None:
    rng = np.random.default_rng(4)
    y = 0.40 + 0.005 * rng.standard_normal(ROWS)
    y[-40:] += 0.003 * np.arange(1, 41)
    y[::7] = np.nan
    forecast = breach_forecast(y, 0.55, step_s=STEP, horizon_s=HORIZON, split=SPLIT)
    assert forecast.probability > 0.9
    assert math.isfinite(forecast.eta_s)


def test_too_short_a_baseline_forecasts_nothing_but_still_sees_a_breach() -> None:
    y = 0.40 + 0.002 * np.arange(30.0)
    assert breach_forecast(y, 0.5, step_s=STEP, horizon_s=HORIZON, split=25) is NO_FORECAST
    assert breach_forecast(y, 0.45, step_s=STEP, horizon_s=HORIZON, split=25).breached


def test_no_sample_at_all_is_no_forecast() -> None:
    assert (
        breach_forecast(np.full(ROWS, np.nan), 0.5, step_s=STEP, horizon_s=HORIZON, split=SPLIT)
        is NO_FORECAST
    )


def test_horizon_must_be_positive() -> None:
    with pytest.raises(ValueError, match="horizon_s"):
        breach_forecast(np.zeros(10), 1.0, step_s=STEP, horizon_s=0.0, split=5)
