"""Tests of :mod:`ajan.analysis.anomaly`: residual z-scores, calibration, aggregation, alerts, tails."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special, stats

from ajan.analysis.anomaly import (
    aggregate_scores,
    calibrate_zscore,
    critical_anomalies,
    detect_period,
    hysteresis_alerts,
    percentile_shift,
    residual_zscore,
    score_to_zscore,
    trailing_calibrate_zscore,
    trend_zscore,
    zscore_to_score,
)

SETTINGS = settings(max_examples=50, deadline=None)

ints = st.integers(min_value=-100, max_value=100).map(float)
cells = st.one_of(ints, ints, ints, st.just(float("nan")))  # about one NaN in four


# --- residual_zscore ------------------------------------------------------------------------------


def test_spike_is_the_largest_z_at_its_index() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(0.0, 1.0, 500)
    x[321] += 12.0
    z = residual_zscore(x)[0]
    assert np.nanargmax(np.abs(z)) == 321
    assert z[321] > 6.0
    # The median forecast ignores one outlier: the points after the spike are not inflated.
    assert np.all(np.abs(z[322:327]) < 4.0)


def test_negative_spike_gives_negative_z() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(50.0, 2.0, 400)
    x[250] -= 30.0
    z = residual_zscore(x)[0]
    assert np.nanargmax(np.abs(z)) == 250 and z[250] < -6.0


def test_level_shift_flagged_when_it_happens_then_absorbed() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(0.0, 1.0, 600)
    x[400:] += 10.0
    z = residual_zscore(x)[0]
    assert np.all(np.abs(z[:400][np.isfinite(z[:400])]) < 5.0)
    assert z[400] > 6.0
    # Once most of the level window has the new level the forecast has moved with it.
    assert np.all(np.abs(z[410:]) < 5.0)


def test_first_points_are_nan_until_min_periods() -> None:
    x = np.random.default_rng(3).normal(size=200)
    z = residual_zscore(x, min_periods=20)[0]
    assert np.isnan(z[:20]).all()
    assert np.isfinite(z[30:]).all()


def test_baseline_warms_up_and_equals_scoring_the_concatenation() -> None:
    rng = np.random.default_rng(4)
    base, x = rng.normal(size=(2, 300)), rng.normal(size=(2, 50))
    z = residual_zscore(x, baseline=base, scale_window=120, min_periods=20)
    assert np.isfinite(z).all()  # the first points are scored
    whole = residual_zscore(np.hstack([base, x]), scale_window=120, min_periods=20)
    np.testing.assert_array_equal(z, whole[:, 300:])


def test_constant_and_all_nan_series_give_nan_without_warnings() -> None:
    x = np.vstack([np.full(100, 3.0), np.full(100, np.nan), np.random.default_rng(5).normal(size=100)])
    z = residual_zscore(x)
    assert np.isnan(z[0]).all() and np.isnan(z[1]).all()  # no spread, no score; no data, no score
    assert np.isfinite(z[2, 30:]).all()


@SETTINGS
@given(data=st.data())
def test_residual_zscore_is_causal(data: st.DataObject) -> None:
    n = data.draw(st.integers(min_value=10, max_value=120))
    x = np.array([data.draw(st.lists(cells, min_size=n, max_size=n)) for _ in range(2)])
    t = data.draw(st.integers(min_value=0, max_value=n - 1))
    period = data.draw(st.sampled_from([None, 7, [0, 5]]))
    kw = dict(level_window=3, scale_window=32, min_periods=6, period=period)
    z = residual_zscore(x, **kw)
    # Changing everything after t leaves z up to t alone ...
    y = x.copy()
    y[:, t + 1 :] = np.array(
        [data.draw(st.lists(cells, min_size=n - t - 1, max_size=n - t - 1)) for _ in range(2)]
    )
    np.testing.assert_allclose(
        residual_zscore(y, **kw)[:, : t + 1], z[:, : t + 1], rtol=1e-12, equal_nan=True
    )
    # ... and so does scoring only the prefix (data not yet arrived); a prefix shorter than the
    # period is test_seasonal_forecast_on_a_series_shorter_than_the_period.
    if t + 1 >= 7 or period is None:
        np.testing.assert_allclose(
            residual_zscore(x[:, : t + 1], **kw), z[:, : t + 1], rtol=1e-12, equal_nan=True
        )


def test_seasonal_forecast_on_a_series_shorter_than_the_period() -> None:
    x = np.random.default_rng(30).normal(size=(1, 30))
    z = residual_zscore(x, period=48, min_periods=10)
    np.testing.assert_array_equal(z, residual_zscore(x, min_periods=10))


# --- trend_zscore ---------------------------------------------------------------------------------


def test_trend_zscore_flags_a_slow_leak_that_the_residual_follows() -> None:
    rng = np.random.default_rng(40)
    leak = rng.normal(0, 1, 600) + np.r_[np.zeros(300), np.arange(300) * 0.1]
    trend = trend_zscore(leak)[0]
    resid = residual_zscore(leak)[0]
    assert np.isnan(trend[: 60 + 20]).all()  # NaN until horizon + min_periods points exist
    assert np.nanmax(np.abs(trend[:300])) < 5.0
    # The leak gains 6 noise widths per horizon; the reference window (240 points ending 60 points ago)
    # stays mostly before the onset at 300 until about 300 + 60 + 240 / 2 = 480.
    assert np.all(trend[380:480] > 5.0)
    assert np.nanmax(np.abs(resid[380:480])) < 5.0  # the adaptive forecast follows it step by step


@SETTINGS
@given(data=st.data())
def test_trend_zscore_is_causal(data: st.DataObject) -> None:
    n = data.draw(st.integers(min_value=12, max_value=100))
    x = np.array([data.draw(st.lists(cells, min_size=n, max_size=n)) for _ in range(2)])
    t = data.draw(st.integers(min_value=10, max_value=n - 1))
    kw = dict(horizon=10, window=20, smooth=3, min_periods=5)
    z = trend_zscore(x, **kw)
    y = x.copy()
    y[:, t + 1 :] = 1e6
    np.testing.assert_allclose(trend_zscore(y, **kw)[:, : t + 1], z[:, : t + 1], rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(trend_zscore(x[:, : t + 1], **kw), z[:, : t + 1], rtol=1e-12, equal_nan=True)


def test_trend_zscore_on_a_series_shorter_than_the_horizon() -> None:
    z = trend_zscore(np.random.default_rng(41).normal(size=(1, 30)), horizon=60)
    assert z.shape == (1, 30) and np.isnan(z).all()


# --- seasonality ----------------------------------------------------------------------------------


def _daily_peaks(seed: int, n: int = 1200, period: int = 48) -> np.ndarray:
    """Noise with a 3-point peak of 10 sigma at the start of every period (a "daily peak")."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, n)
    x[(np.arange(n) % period) < 3] += 10.0
    return x


def test_seasonal_forecast_does_not_mistake_the_daily_peak_for_an_incident() -> None:
    x = _daily_peaks(3)
    t = np.arange(x.size)
    onsets = (t % 48 == 0) & (t >= 4 * 48)  # after three periods the seasonal forecast is active
    plain = residual_zscore(x)[0]
    seasonal = residual_zscore(x, period=48)[0]
    assert np.all(np.abs(plain[onsets]) > 4.0)  # a 10-sigma surprise every period
    assert np.all(np.abs(seasonal[onsets]) < 4.0)  # predicted from the same phase of past periods
    assert np.nanmax(np.abs(seasonal[4 * 48 :])) < np.nanmax(np.abs(plain[4 * 48 :]))


def test_seasonal_forecast_makes_a_spike_on_a_sine_more_visible() -> None:
    # The median of the last 5 points lags a sine (amplitude 10, period 48) by ~3 points, an error
    # of up to 10 * 2 * pi / 48 * 3 ~ 4 that inflates the scale; the same phase a period ago does not lag.
    t = np.arange(1200)
    plain, seasonal = [], []
    for seed in range(5):
        x = 10.0 * np.sin(2 * np.pi * t / 48) + np.random.default_rng(100 + seed).normal(0, 1, t.size)
        x[1000] += 8.0
        plain.append(abs(residual_zscore(x)[0, 1000]))
        seasonal.append(abs(residual_zscore(x, period=48)[0, 1000]))
    assert np.mean(seasonal) > 1.5 * np.mean(plain)


def test_detect_period_finds_a_planted_period() -> None:
    t = np.arange(1200)
    rng = np.random.default_rng(7)
    clean_sine = 10.0 * np.sin(2 * np.pi * t / 48) + rng.normal(0, 0.1, t.size)
    trend_and_peaks = _daily_peaks(8) + 0.05 * t  # differencing removes the trend
    periods = detect_period(np.vstack([_daily_peaks(6), clean_sine, trend_and_peaks]))
    assert periods.tolist() == [48, 48, 48]


def test_detect_period_returns_zero_for_noise_constant_and_gappy_series() -> None:
    t = np.arange(1200)
    gappy = _daily_peaks(9)
    gappy[::5] = np.nan  # 20 % missing
    for seed in range(5):
        noise = np.random.default_rng(seed).normal(size=(3, 1200))
        assert detect_period(noise).tolist() == [0, 0, 0]
        walk = np.cumsum(noise, axis=1)
        assert detect_period(walk).tolist() == [0, 0, 0]
    odd = np.vstack([np.full(t.size, 4.0), gappy, np.full(t.size, np.nan)])
    assert detect_period(odd).tolist() == [0, 0, 0]
    assert detect_period(np.ones((2, 10))).tolist() == [0, 0]  # too short to see two periods


def test_detect_period_finds_a_smooth_noisy_sine() -> None:
    t = np.arange(1200)
    sine = 10.0 * np.sin(2 * np.pi * t / 48)
    found = [int(detect_period(sine + np.random.default_rng(s).normal(0, 1, t.size))[0]) for s in range(10)]
    assert all(abs(p - 48) <= 1 for p in found), found


# --- calibrate_zscore -----------------------------------------------------------------------------


def test_calibration_of_normal_z_against_a_normal_reference_is_near_identity() -> None:
    ref = np.random.default_rng(10).normal(size=(1, 20000))
    z = np.array([[-2.0, -1.0, 0.5, 1.0, 2.0, 3.0]])
    np.testing.assert_allclose(calibrate_zscore(z, ref), z, atol=0.1)


def test_calibration_tames_a_heavy_tailed_metric_and_keeps_extremes_ordered() -> None:
    rng = np.random.default_rng(11)
    ref = 10.0 * rng.standard_t(df=2, size=(1, 5000))  # routine |z| of 10 and beyond
    routine = float(np.median(np.abs(ref)))
    top = float(np.max(np.abs(ref)))
    z = np.array([[routine, -routine, top, 2 * top, 10 * top, np.nan, 0.0]])
    c = calibrate_zscore(z, ref)[0]
    # Half the reference is at least as far out as `routine`: two-sided p 0.5, i.e. |z| = 0.674.
    assert c[0] == pytest.approx(stats.norm.isf(0.25), abs=0.05)
    assert c[1] == pytest.approx(-c[0])  # sign preserved
    assert abs(c[0]) < 1.0 < c[2] < c[3] < c[4]  # beyond the reference, still ranked by extremity
    assert np.isnan(c[5])
    assert c[6] == 0.0


def test_calibration_needs_min_reference_points() -> None:
    ref = np.full((2, 80), np.nan)
    ref[0, :] = np.random.default_rng(12).normal(size=80) * 10
    ref[1, :30] = 1.0
    z = np.array([[20.0], [20.0]])
    c = calibrate_zscore(z, ref, min_reference=50)
    assert c[0, 0] < 20.0  # calibrated
    # Too few reference points (30): capped at the normal z of tail probability 1/31.
    assert c[1, 0] == pytest.approx(-special.ndtri(0.5 / 31))
    none = calibrate_zscore(np.array([[-7.0]]), np.full((1, 10), np.nan))
    assert none[0, 0] == 0.0  # no normal history at all: no evidence


@SETTINGS
@given(
    z=st.lists(st.floats(min_value=-1e6, max_value=1e6), min_size=2, max_size=40),
    seed=st.integers(min_value=0, max_value=10),
    flat=st.booleans(),
)
def test_calibration_is_monotone_in_abs_z_and_keeps_sign(z: list[float], seed: int, flat: bool) -> None:
    rng = np.random.default_rng(seed)
    ref = np.full((1, 200), 1.0) if flat else rng.standard_t(df=3, size=(1, 200)) * 5
    zs = np.array([z])
    c = calibrate_zscore(zs, ref)[0]
    assert np.all(np.isfinite(c))
    # Sign preserved; a z below the whole reference calibrates to 0, which has no sign.
    assert np.all(c * zs[0] >= 0)
    assert np.all((np.sign(c) == np.sign(zs[0])) | (c == 0))
    order = np.argsort(np.abs(zs[0]))
    assert np.all(np.diff(np.abs(c[order])) >= 0)


def test_trailing_calibration_is_causal() -> None:
    rng = np.random.default_rng(13)
    z = rng.standard_t(df=3, size=(2, 400)) * 4
    full = trailing_calibrate_zscore(z, window=200, refresh=10, min_periods=50)
    assert np.isnan(full[:, :50]).all() and np.isfinite(full[:, 50:]).all()
    for k in (60, 123, 333):
        part = trailing_calibrate_zscore(z[:, :k], window=200, refresh=10, min_periods=50)
        np.testing.assert_array_equal(part, full[:, :k])


# --- zscore_to_score / score_to_zscore ------------------------------------------------------------


def test_zscore_to_score_known_points() -> None:
    s = zscore_to_score([0.0, 6.0, -6.0, 12.0, np.nan, np.inf, -np.inf])
    np.testing.assert_allclose(s[:4], [0.0, 0.5, 0.5, 1 - 2.0**-4], rtol=1e-12)
    assert s[4] == 0.0  # missing data is no evidence
    assert s[5] == 1.0 and s[6] == 1.0
    assert zscore_to_score(3.0, z_half=3.0) == pytest.approx(0.5)


@SETTINGS
@given(
    a=st.floats(min_value=0, max_value=1e3),
    b=st.floats(min_value=0, max_value=1e3),
    z_half=st.floats(min_value=0.5, max_value=20),
)
def test_zscore_to_score_monotone_bounded_and_inverted(a: float, b: float, z_half: float) -> None:
    sa, sb = float(zscore_to_score(a, z_half)), float(zscore_to_score(b, z_half))
    assert 0.0 <= sa <= 1.0
    assert float(zscore_to_score(-a, z_half)) == sa
    if a <= b:
        assert sa <= sb
    if sa < 1.0 - 1e-9:  # away from saturation the map is invertible
        assert float(score_to_zscore(sa, z_half)) == pytest.approx(a, rel=1e-6, abs=1e-6)


def test_score_to_zscore_edges() -> None:
    np.testing.assert_allclose(score_to_zscore([0.0, 0.5, 0.75]), [0.0, 6.0, 6.0 * math.sqrt(2.0)])
    assert np.isinf(score_to_zscore(1.0)) and np.isinf(score_to_zscore(1.5))
    assert score_to_zscore(-0.2) == 0.0


# --- aggregate_scores -----------------------------------------------------------------------------


def test_one_strong_metric_gives_a_high_score() -> None:
    z = np.zeros((5, 2))
    z[2, 1] = 12.0
    agg = aggregate_scores(z)
    assert agg.score[0] < 0.05
    assert agg.score[1] > 0.5
    # Bonferroni over 5 metrics and 2 tests makes the combined evidence a little weaker than 12.
    assert 10.0 < agg.zscore[1] < 12.0


def test_several_moderate_metrics_beat_any_one_alone() -> None:
    moderate = np.full((6, 1), 3.5)
    together = aggregate_scores(moderate).score[0]
    for i in range(6):
        alone = np.zeros((6, 1))
        alone[i] = 3.5
        assert together > aggregate_scores(alone).score[0] + 0.2
    # The chi-square test: sum of squares 73.5 on 6 degrees of freedom is far beyond any single 3.5.
    assert together > float(zscore_to_score(3.5))


def test_nan_metrics_take_no_part() -> None:
    z = np.array([[5.0, 0.1, np.nan], [np.nan, 2.0, np.nan], [1.0, np.nan, np.nan]])
    with_nan = aggregate_scores(z)
    np.testing.assert_array_equal(with_nan.score[0], aggregate_scores(z[[0, 2], :1]).score[0])
    np.testing.assert_array_equal(with_nan.score[1], aggregate_scores(z[[0, 1], 1:2]).score[0])
    assert with_nan.score[2] == 0.0 and with_nan.zscore[2] == 0.0 and with_nan.log_pvalue[2] == 0.0


def test_weights_matter_and_are_relative() -> None:
    z = np.array([[9.0], [0.0], [0.0]])
    full = aggregate_scores(z, [1.0, 1.0, 1.0]).score[0]
    damped = aggregate_scores(z, [0.25, 1.0, 1.0]).score[0]
    assert damped < full - 0.3
    np.testing.assert_array_equal(aggregate_scores(z, [2.0, 2.0, 2.0]).score, aggregate_scores(z).score)
    np.testing.assert_array_equal(aggregate_scores(z, [0.5, 2.0, 2.0]).score[0], damped)


def test_infinite_z_counts_as_strongest_evidence() -> None:
    agg = aggregate_scores(np.array([[np.inf], [0.0]]))
    assert agg.score[0] > 0.99


@SETTINGS
@given(
    data=st.data(),
    n=st.integers(min_value=1, max_value=6),
    t=st.integers(min_value=1, max_value=5),
)
def test_aggregate_bounded_and_monotone(data: st.DataObject, n: int, t: int) -> None:
    cell = st.one_of(st.floats(min_value=-50, max_value=50), st.just(float("nan")))
    z = np.array([data.draw(st.lists(cell, min_size=t, max_size=t)) for _ in range(n)])
    w = data.draw(
        st.one_of(st.none(), st.lists(st.floats(min_value=0.01, max_value=10), min_size=n, max_size=n))
    )
    agg = aggregate_scores(z, w)
    assert np.all((agg.score >= 0) & (agg.score <= 1))
    assert np.all(agg.zscore >= 0) and np.all(agg.log_pvalue <= 0)
    # More deviation in any one metric never lowers the score.
    i = data.draw(st.integers(min_value=0, max_value=n - 1))
    bump = data.draw(st.floats(min_value=0, max_value=20))
    z2 = z.copy()
    z2[i] = np.where(np.isfinite(z[i]), np.sign(z[i]) * (np.abs(z[i]) + bump), z[i])
    assert np.all(aggregate_scores(z2, w).score >= agg.score - 1e-12)


# --- hysteresis_alerts ----------------------------------------------------------------------------


def test_hysteresis_known_sequence() -> None:
    s = [0.1, 0.6, 0.4, 0.3, 0.2, 0.4, 0.5, 0.29, 0.49, np.nan, 0.7]
    expected = [0, 1, 1, 1, 0, 0, 1, 0, 0, 0, 1]
    assert hysteresis_alerts(s, on=0.5, off=0.3).astype(int).tolist() == expected
    # off == on is a plain threshold.
    assert hysteresis_alerts(s, on=0.5, off=0.5).astype(int).tolist() == [0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 1]
    with pytest.raises(ValueError, match="off"):
        hysteresis_alerts(s, on=0.3, off=0.5)


# --- percentile_shift -----------------------------------------------------------------------------


def test_tail_shift_detected_at_p99_with_unchanged_median() -> None:
    rng = np.random.default_rng(20)
    base = rng.normal(100.0, 5.0, (1, 5000))
    # A perfectly typical current window (the baseline's own quantiles), so that only the shift differs.
    cur = np.quantile(base, (np.arange(1000) + 0.5) / 1000)[None, :]
    shifted = cur.copy()
    shifted[0, -100:] += 40.0  # the slowest 10 % get 40 slower: the median does not move
    res = percentile_shift(shifted, base, quantiles=(0.5, 0.99))
    assert np.median(shifted) == np.median(cur)
    assert res.pvalue[0, 0] > 0.05  # median: nothing to see
    assert res.pvalue[1, 0] < 1e-20  # p99: 10 % above it where 1 % is expected
    assert res.exceedance[1, 0] >= 0.1
    assert res.ratio[1, 0] > 1.2
    # The p-value is the one-sided binomial test of the exceedance count.
    k = int(np.sum(shifted > np.quantile(base, 0.99)))
    assert res.pvalue[1, 0] == pytest.approx(
        stats.binomtest(k, 1000, 0.01, alternative="greater").pvalue, rel=1e-6
    )
    np.testing.assert_allclose(res.baseline[:, 0], np.quantile(base, [0.5, 0.99]))


def test_no_shift_gives_no_small_pvalue() -> None:
    rng = np.random.default_rng(21)
    base = rng.normal(100.0, 5.0, (3, 5000))
    cur = rng.normal(100.0, 5.0, (3, 1000))
    res = percentile_shift(cur, base)
    assert res.pvalue.shape == (2, 3)
    assert np.all(res.pvalue > 0.01)
    assert np.all(np.abs(res.ratio - 1.0) < 0.05)


def test_percentile_shift_nan_rows() -> None:
    base = np.vstack([np.random.default_rng(22).normal(size=200), np.full(200, np.nan)])
    cur = np.vstack([np.full(50, np.nan), np.random.default_rng(23).normal(size=50)])
    res = percentile_shift(cur, base)  # no warnings
    # No current data: nothing to test.
    assert np.isnan(res.pvalue[:, 0]).all() and np.isnan(res.exceedance[:, 0]).all()
    assert np.isnan(res.current[:, 0]).all()
    # No baseline data: no quantile to compare with, and never reported as a shift.
    assert np.isnan(res.baseline[:, 1]).all() and np.isnan(res.ratio[:, 1]).all()
    assert not np.any(res.pvalue[:, 1] < 0.5)


# --- critical_anomalies ---------------------------------------------------------------------------


def test_critical_anomalies_names_since_and_order() -> None:
    z = np.array(
        [
            [0.0, 1.0, 7.0, 4.0, 7.0, 8.0],  # dips to 4 (above hold 3): the run began at 2
            [0.0, 0.0, 0.0, 0.0, 0.0, 2.0],  # quiet
            [9.0, 9.0, 9.0, 9.0, 9.0, -20.0],  # never quiet: since 0
            [0.0, 9.0, np.nan, 9.0, 9.0, 7.0],  # a gap counts as quiet
        ]
    )
    x = np.array([[0, 0, 0, 0, 0, 30.0], [1] * 6, [5] * 6, [0, 0, 0, 0, 0, 0.0]])
    res = critical_anomalies(x, z, ["cpu", "mem", "lat", "err"], [10.0, 1.0, -10.0, 0.0])
    assert [a.metric for a in res] == ["lat", "cpu", "err"]  # by |z|
    assert [a.since for a in res] == [0, 2, 3]
    lat, cpu, err = res
    assert lat.zscore == -20.0 and lat.value == 5.0 and lat.baseline == -10.0
    assert lat.deviation == pytest.approx(1.5)  # (5 - -10) / |-10|
    assert cpu.deviation == pytest.approx(2.0)
    assert math.isnan(err.deviation)  # zero baseline
    # A higher hold makes the dip at index 3 quiet, restarting cpu's run there.
    res = critical_anomalies(x, z, ["cpu", "mem", "lat", "err"], [10.0, 1.0, -10.0, 0.0], hold=5.0)
    assert {a.metric: a.since for a in res}["cpu"] == 4
    assert critical_anomalies(x, z, ["a", "b", "c", "d"], np.zeros(4), threshold=25.0) == []


def test_rounding_noise_over_an_exactly_flat_reference_is_not_extreme() -> None:
    # A metric that never moved has a reference of exact zeros; an ulp of change is a tie, not a record.
    out = calibrate_zscore(np.array([[1e-12, -1e-12, 0.0, 3.0]]), np.zeros((1, 200)))
    assert np.abs(out[0, :3]).max() == 0.0
    assert out[0, 3] > 2.5
