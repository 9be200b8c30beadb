"""Tests of :mod:`ajan.analysis.detector`: the (T, N) glue behind ``ajan detect`` and ``ajan rank``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ajan.analysis.detector import (
    DEFAULT_CONFIG,
    DetectorConfig,
    InsufficientDataError,
    detect,
    min_rows,
    rank_metrics,
)

SETTINGS = settings(max_examples=40, deadline=None)


def _quiet(seed: int, rows: int = 800, metrics: int = 4) -> np.ndarray:
    return np.random.default_rng(seed).normal(10.0, 1.0, (rows, metrics))


def _incidents(seed: int) -> np.ndarray:
    x = _quiet(seed)
    x[600, 2] += 40.0  # a one-row spike in metric 2
    x[700:703, 0] -= 40.0  # a three-row outage in metric 0
    return x


def _check_shapes_and_ranges(res, rows: int, metrics: int) -> None:
    assert res.score.shape == res.alert.shape == (rows,)
    assert res.metric_scores.shape == res.zscores.shape == (rows, metrics)
    assert np.all((res.score >= 0) & (res.score <= 1))
    assert np.all((res.metric_scores >= 0) & (res.metric_scores <= 1))
    assert res.alert.dtype == bool


@pytest.mark.parametrize("seed", range(5))
def test_planted_anomalies_raise_the_alert_at_their_rows(seed: int) -> None:
    res = detect(_incidents(seed))
    _check_shapes_and_ranges(res, 800, 4)
    alerts = set(np.flatnonzero(res.alert).tolist())
    assert 600 in alerts and 700 in alerts
    # Nothing before the first incident; the outage's alert also covers its end (a jump back up, held
    # by the hysteresis) but is over a few rows later.
    assert alerts <= {600} | set(range(700, 708))
    assert np.argmax(np.abs(res.zscores[600])) == 2 and res.zscores[600, 2] > 0
    assert np.argmax(np.abs(res.zscores[700])) == 0 and res.zscores[700, 0] < 0
    assert res.metric_scores[600, 2] == res.metric_scores[600].max()


@pytest.mark.parametrize("seed", range(5))
def test_quiet_data_raises_no_alert(seed: int) -> None:
    res = detect(_quiet(seed, rows=1500, metrics=5))
    assert not res.alert.any()
    assert res.score.max() < DEFAULT_CONFIG.alert_off


def test_no_baseline_scores_nothing_until_min_rows() -> None:
    res = detect(_quiet(10))
    k = min_rows()
    assert k == DEFAULT_CONFIG.min_periods + DEFAULT_CONFIG.level_window + DEFAULT_CONFIG.min_calibration
    assert np.isnan(res.zscores[: k - 1]).all()
    assert np.all(res.score[: k - 1] == 0.0) and np.all(res.metric_scores[: k - 1] == 0.0)
    assert np.isfinite(res.zscores[k + 20 :]).all()


def test_baseline_scores_the_first_rows() -> None:
    base, x = _quiet(11, rows=400), _quiet(12, rows=50)
    x[0, 1] += 40.0  # an incident in the very first row
    res = detect(x, baseline=base)
    _check_shapes_and_ranges(res, 50, 4)
    assert np.isfinite(res.zscores).all()
    assert res.alert[0] and np.argmax(np.abs(res.zscores[0])) == 1
    assert not res.alert[5:].any()


def test_insufficient_data() -> None:
    x = _quiet(13, rows=min_rows())
    detect(x)
    with pytest.raises(InsufficientDataError, match=str(min_rows())):
        detect(x[:-1])
    detect(x[:-1], baseline=x[:1])  # the baseline counts towards the rows
    assert issubclass(InsufficientDataError, ValueError)
    with pytest.raises(ValueError, match="shaped"):
        detect(x[:, 0])
    small = DetectorConfig(min_periods=10, level_window=3, min_calibration=30, use_trend=False)
    assert min_rows(small) == 43
    detect(x[:43], config=small)
    with pytest.raises(InsufficientDataError):
        detect(x[:42], config=small)


def test_detect_with_fewer_rows_than_the_trend_horizon() -> None:
    small = DetectorConfig(min_periods=10, level_window=3, min_calibration=30)
    x = _quiet(21, rows=min_rows(small))
    try:
        res = detect(x, config=small)
    except InsufficientDataError:
        return  # refusing is fine too
    assert res.score.shape == (x.shape[0],)


def test_nan_column_and_gaps_do_not_raise_or_warn() -> None:
    x = _incidents(14)
    x[:, 3] = np.nan  # a metric with no data at all
    x[100:180, 1] = np.nan  # an outage of the scraper
    x[::7, 0] = np.nan  # sparse gaps
    res = detect(x)  # RuntimeWarnings are errors under pytest here
    _check_shapes_and_ranges(res, 800, 4)
    assert np.isnan(res.zscores[:, 3]).all() and np.all(res.metric_scores[:, 3] == 0.0)
    assert res.alert[600]  # the other metrics still work
    assert not res.alert[:600].any()
    res = detect(x[300:], baseline=x[:300])
    assert res.alert[300] and np.isnan(res.zscores[:, 3]).all()


def test_weights_scale_a_metrics_evidence() -> None:
    x = _incidents(15)
    plain = detect(x)
    damped = detect(x, config=DetectorConfig(weights=(1.0, 1.0, 0.2, 1.0)))
    assert damped.score[600] < plain.score[600]
    np.testing.assert_array_equal(damped.zscores, plain.zscores)  # weights act on the aggregation only


@SETTINGS
@given(seed=st.integers(min_value=0, max_value=3), k=st.integers(min_value=min_rows(), max_value=799))
def test_detect_is_causal_without_baseline(seed: int, k: int) -> None:
    x = _incidents(seed)
    full = detect(x)
    part = detect(x[:k])
    np.testing.assert_allclose(part.score, full.score[:k], rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(part.alert, full.alert[:k])
    np.testing.assert_allclose(part.zscores, full.zscores[:k], rtol=1e-12, equal_nan=True)


@SETTINGS
@given(seed=st.integers(min_value=0, max_value=3), k=st.integers(min_value=1, max_value=500))
def test_detect_is_causal_with_baseline(seed: int, k: int) -> None:
    base, x = _quiet(100 + seed, rows=300), _incidents(seed)[300:]
    full = detect(x, baseline=base)
    part = detect(x[:k], baseline=base)
    np.testing.assert_allclose(part.score, full.score[:k], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(part.zscores, full.zscores[:k], rtol=1e-12, equal_nan=True)


def test_seasonal_baseline_is_used() -> None:
    t = np.arange(1200)
    rng = np.random.default_rng(16)
    x = rng.normal(0.0, 1.0, (1200, 2))
    x[(t % 48) < 3, 0] += 12.0  # a daily peak in metric 0
    res = detect(x[800:], baseline=x[:800])
    plain = detect(x[800:], baseline=x[:800], config=DetectorConfig(seasonal=False))
    assert not res.alert.any()  # the peaks are expected
    assert plain.score.max() > res.score.max()


def test_use_level_without_baseline() -> None:
    res = detect(_incidents(17), config=DetectorConfig(use_level=True))
    assert res.alert[600]


def test_use_level_with_baseline_catches_a_slow_drift() -> None:
    base = _quiet(18, rows=400)
    x = _quiet(19, rows=600)
    x[:, 1] += np.linspace(0.0, 20.0, 600)  # a slow drift of 20 sigma over 600 rows
    res = detect(x, baseline=base, config=DetectorConfig(use_level=True, use_trend=False))
    off = detect(x, baseline=base, config=DetectorConfig(use_level=False, use_trend=False))
    assert res.alert[-100:].all()
    assert not off.alert[-100:].any()


# --- rank_metrics ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_rank_metrics_puts_the_planted_metric_first(seed: int) -> None:
    x = _quiet(seed)
    rng = np.random.default_rng(1000 + seed)
    x[600:620, 2] = 10.0 + 6.0 * rng.normal(size=20)  # metric 2 turns erratic
    scores = rank_metrics(x, 600, 620)
    assert scores.shape == (4,) and np.all((scores >= 0) & (scores <= 1))
    assert np.argmax(scores) == 2
    shift = _quiet(seed)
    shift[600:640, 1] += 8.0  # metric 1 moves up for the whole interval
    assert np.argmax(rank_metrics(shift, 600, 640)) == 1
    base = _quiet(50 + seed, rows=300)
    assert np.argmax(rank_metrics(shift[300:], 300, 340, baseline=base)) == 1


def test_rank_metrics_on_a_short_history_uses_the_rows_before() -> None:
    # 12 rows: far below min_rows, which used to be refused; the level comes from the 4 rows before.
    x = _quiet(7, rows=12)
    x[4:, 3] += 6.0
    scores = rank_metrics(x, 4, 12)
    assert np.argmax(scores) == 3 and np.all((scores >= 0) & (scores <= 1))
    with pytest.raises(ValueError, match="a row before the interval"):
        rank_metrics(x, 0, 12)


def test_rank_metrics_with_a_reference_from_elsewhere() -> None:
    # A long reference at another level: as history it would make every metric look shifted;
    # as a reference from elsewhere (contiguous=False) it only gives the spread.
    x = _quiet(8, rows=12)
    x[4:, 1] -= 6.0
    reference = _quiet(9, rows=400) + 30.0
    elsewhere = rank_metrics(x, 4, 12, baseline=reference, contiguous=False)
    assert np.argmax(elsewhere) == 1
    assert np.sort(elsewhere)[-2] < 0.3 < elsewhere[1]


def test_rank_metrics_bad_interval() -> None:
    with pytest.raises(ValueError):
        rank_metrics(_quiet(20), 500, 500)
    with pytest.raises(ValueError):
        rank_metrics(_quiet(20), 0, 801)
