"""Anomaly scoring: adaptive residual z-scores, tail (p95/p99) analysis, aggregation, critical anomalies.

Time runs along the last axis: arrays are shaped ``(n_metrics, n_times)`` unless a
function says otherwise. Every function is causal where it scores points: the
value at time ``t`` depends only on data up to ``t``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import ArrayLike, NDArray
from scipy import special, stats

from ajan.analysis.robust import (
    FloatArray,
    ScaleMethod,
    block_starts,
    by_row_chunks,
    quiet_nanmedian,
    quiet_nanquantile,
    trailing_location_scale,
)

#: |z| at which :func:`zscore_to_score` gives 0.5.
DEFAULT_Z_HALF: Final = 6.0
_LN2: Final = math.log(2.0)
BETA_FLOOR: Final = 0.3  # z-units: keeps a flat reference's tail from collapsing
#: z-scores closer than this are ties: floating-point noise on a metric that is otherwise exactly flat
#: (a ratio computed as 0.002 every time) must not rank above a reference of exact zeros.
Z_TIE: Final = 1e-6


def _as_2d(x: ArrayLike) -> FloatArray:
    a = np.asarray(x, dtype=float)
    if a.ndim == 1:
        return a[None, :]
    if a.ndim != 2:
        raise ValueError(f"expected shape (n_metrics, n_times), got {a.shape}")
    return a


def _past_median(x: FloatArray, k: int) -> FloatArray:
    """Median of the ``k`` points strictly before each time (NaN where fewer than one exists)."""
    n, t = x.shape
    padded = np.concatenate([np.full((n, k), np.nan), x], axis=1)
    windows = sliding_window_view(padded[:, :-1], k, axis=1)  # (n, t, k), ends at t-1
    return quiet_nanmedian(windows, axis=-1)[:, :t]


def detect_period(
    baseline: ArrayLike, *, min_period: int = 4, max_period: int | None = None, min_acf: float = 0.3
) -> NDArray[np.int64]:
    """Dominant seasonal period of each series, from the autocorrelation of its baseline.

    Parameters
    ----------
    baseline : array_like, shape (n_metrics, n_times)
        Normal history; at least two periods are needed to see one.
    min_period, max_period : int
        Range of candidate periods in points (``max_period`` defaults to a third of
        the baseline length).
    min_acf : float
        The autocorrelation peak must reach this for the period to count.

    Returns
    -------
    ndarray of int, shape (n_metrics,)
        The period in points, or 0 where no period is credible (including series
        with NaN gaps over 10 % or constant series).
    """
    b = _as_2d(baseline)
    n, t = b.shape
    max_p = min(max_period or t // 3, t // 2)
    out = np.zeros(n, dtype=np.int64)
    if max_p <= min_period:
        return out
    filled = b - quiet_nanmedian(b, axis=1)[:, None]
    ok = np.mean(np.isfinite(b), axis=1) >= 0.9
    filled = np.where(np.isfinite(filled), filled, 0.0)
    # Two views: the detrended series finds smooth cycles (a sine, a daily traffic
    # curve), its first difference finds spiky ones (a daily batch job). A trend or
    # a slowly decaying ACF has no prominent peak in either, so it is not a period.
    steps = np.arange(t) - (t - 1) / 2.0
    slope = (filled @ steps) / (steps @ steps)
    detrended = filled - filled.mean(axis=1, keepdims=True) - slope[:, None] * steps
    for series in (detrended, np.diff(filled, axis=1)):
        found = _acf_period(series, min_period, max_p, min_acf)
        out = np.where((out == 0) & ok, found, out)
    return out


def _acf_period(d: FloatArray, min_period: int, max_p: int, min_acf: float) -> NDArray[np.int64]:
    """Lag of the highest prominent local maximum of each row's ACF in [min_period, max_p], or 0."""
    n = d.shape[0]
    d = d - d.mean(axis=1, keepdims=True)
    nfft = 1 << int(np.ceil(np.log2(2 * d.shape[1])))
    spec = np.fft.rfft(d, nfft, axis=1)
    acov = np.fft.irfft(spec * np.conj(spec), nfft, axis=1)[:, : max_p + 1]
    var = acov[:, :1]
    with np.errstate(invalid="ignore", divide="ignore"):
        acf = np.where(var > 0, acov / np.where(var > 0, var, 1.0), 0.0)
    cand = acf[:, min_period : max_p + 1]
    # A period is a local maximum of the ACF that stands well above the trough
    # before it, not the tail of the lag-0 peak nor a ripple on a slow decay.
    is_peak = np.zeros_like(cand, dtype=bool)
    is_peak[:, 1:-1] = (cand[:, 1:-1] >= cand[:, :-2]) & (cand[:, 1:-1] >= cand[:, 2:])
    trough = np.minimum.accumulate(acf[:, 1 : max_p + 1], axis=1)[:, min_period - 1 :]
    prominent = is_peak & (cand - trough >= min_acf)
    masked = np.where(prominent, cand, -np.inf)
    best = np.argmax(masked, axis=1)
    peak = masked[np.arange(n), best]
    return np.where(peak >= min_acf, best + min_period, 0).astype(np.int64)


def residual_zscore(
    x: ArrayLike,
    baseline: ArrayLike | None = None,
    *,
    level_window: int = 5,
    scale_window: int = 1440,
    refresh: int | None = None,
    min_periods: int = 20,
    period: int | Sequence[int] | NDArray[np.int64] | None = None,
    seasonal_from: int = 0,
    select_until: int = 0,
    method: ScaleMethod = "mad",
    min_scale: float | ArrayLike = 0.0,
) -> FloatArray:
    """Causal z-score of each point against an adaptive forecast: ajan's main detector.

    A plain robust z-score compares every point with one fixed baseline, so it
    fires for hours after a benign level shift, misses a variance change inside
    the baseline's range, and mistakes a daily peak for an incident. Here each
    point is compared with what the series itself predicted a moment earlier:

    * forecast: the median of the previous ``level_window`` points (a level shift
      is flagged when it happens, then absorbed), or, with a seasonal ``period``,
      the median of the same phase in the previous three periods shifted by the
      current level difference;
    * scale: the robust spread of past forecast errors over ``scale_window``
      points, re-estimated every ``refresh`` points, so a variance change raises
      scores until the new variance becomes the norm.

    Parameters
    ----------
    x : array_like, shape (n_metrics, n_times)
        Values to score.
    baseline : array_like, shape (n_metrics, n_baseline), optional
        Normal history that precedes ``x``; it warms the forecast and scale up so
        that the first points of ``x`` are scored too.
    level_window, scale_window, refresh, min_periods : int
        In points. ``refresh`` defaults to ``scale_window // 16``.
    period : int or sequence of int, optional
        Seasonal period per metric in points (0 = none); see :func:`detect_period`.
    seasonal_from : int
        Index (into baseline followed by ``x``) from which the seasonal forecast is
        used; before it the plain level forecast is. A period learnt from the first
        points of a stream applies only after them, which keeps scoring causal.
    select_until : int
        If positive, a metric keeps its seasonal forecast only if, over the first
        ``select_until`` points (baseline followed by ``x``; they must precede
        every point scored with it), its errors are clearly smaller (mean absolute
        error below 0.9x) than those of the plain level forecast. A real daily cycle in
        one-minute data is often smoother than its day-to-day noise, and then the
        previous minutes predict better than the same minute of previous days.
    method, min_scale
        Scale estimator and floor, see :func:`ajan.analysis.robust.robust_location_scale`.

    Returns
    -------
    ndarray, shape (n_metrics, n_times)
        Signed z-scores; NaN where there is not yet enough history or the value is NaN.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> series = rng.normal(0, 1, 400)
    >>> series[300:] += 8.0  # a level shift
    >>> z = residual_zscore(series)
    >>> bool(z[0, 300] > 5), bool(abs(z[0, 399]) < 3)
    (True, True)
    """
    xs = _as_2d(x)
    n = xs.shape[0]
    hist = np.zeros((n, 0)) if baseline is None else _as_2d(baseline)
    full = np.concatenate([hist, xs], axis=1)
    forecast = _past_median(full, level_window)
    periods = (
        np.zeros(n, dtype=np.int64)
        if period is None
        else np.broadcast_to(np.asarray(period, dtype=np.int64), (n,))
    )
    for p in np.unique(periods[periods > 0]):
        rows = periods == p
        seasonal = _seasonal_forecast(full[rows], int(p), level_window)
        if select_until > 0:
            judged = slice(0, select_until)
            # Mean absolute error, not MAD: what seasonality explains is often a few
            # points a day (a nightly batch peak), which a median-based error ignores.
            err_seasonal = _mean_abs(full[rows, judged] - seasonal[:, judged])
            err_level = _mean_abs(full[rows, judged] - forecast[rows, judged])
            better = err_seasonal < 0.9 * err_level
            seasonal = np.where(better[:, None], seasonal, forecast[rows])
        forecast[rows, seasonal_from:] = seasonal[:, seasonal_from:]
    resid = full - forecast
    ls = trailing_location_scale(
        resid,
        window=scale_window,
        refresh=refresh or max(1, scale_window // 16),
        min_periods=min_periods,
        method=method,
        min_scale=min_scale,
    )
    scale = np.where(ls.scale > 0, ls.scale, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (resid - ls.location) / scale
    return z[:, hist.shape[1] :]


def _mean_abs(err: FloatArray) -> FloatArray:
    """Mean |err| of each row over its finite entries (inf for a row without any)."""
    finite = np.isfinite(err)
    count = finite.sum(axis=1)
    total = np.where(finite, np.abs(err), 0.0).sum(axis=1)
    return np.where(count > 0, total / np.maximum(count, 1), np.inf)


def _seasonal_forecast(x: FloatArray, period: int, level_window: int, seasons: int = 3) -> FloatArray:
    n, t = x.shape
    if period >= t:
        return _past_median(x, level_window)
    lagged = np.full((seasons, n, t), np.nan)
    for j in range(1, seasons + 1):
        lag = j * period
        if lag < t:
            lagged[j - 1, :, lag:] = x[:, : t - lag]
    same_phase = quiet_nanmedian(lagged, axis=0)
    level = _past_median(x, level_window)
    level_then = np.full_like(level, np.nan)
    level_then[:, period:] = level[:, : t - period]
    adjusted = same_phase + (level - level_then)
    # Until three periods of history exist, fall back to the plain level forecast.
    return np.where(np.isfinite(adjusted), adjusted, level)


def zscore_to_score(z: ArrayLike, z_half: float = DEFAULT_Z_HALF) -> FloatArray:
    """Map |z| to an anomaly score in [0, 1): ``1 - 2 ** -((z / z_half) ** 2)``.

    Gaussian-tail shaped (the log tail probability grows with z squared), 0.5 at
    ``|z| = z_half``, 0.94 at twice that. NaN (no data) maps to 0: missing data is
    never evidence of an anomaly.
    """
    zf = np.asarray(z, dtype=float)
    if zf.ndim == 2:
        return by_row_chunks(lambda part: _score_of(part, z_half), zf)
    return _score_of(zf, z_half)


def _score_of(zf: FloatArray, z_half: float) -> FloatArray:
    za = np.empty(zf.shape)
    np.abs(zf, out=za)
    np.nan_to_num(za, copy=False, nan=0.0, posinf=np.inf)
    # In place: on 10^7 points every temporary costs as much as the arithmetic.
    za *= 1.0 / z_half
    with np.errstate(over="ignore"):
        np.square(za, out=za)
    za *= -_LN2
    np.expm1(za, out=za)
    np.negative(za, out=za)
    return za


def score_to_zscore(score: ArrayLike, z_half: float = DEFAULT_Z_HALF) -> FloatArray:
    """Inverse of :func:`zscore_to_score` (|z| for a score in [0, 1])."""
    s = np.clip(np.asarray(score, dtype=float), 0.0, 1.0)
    with np.errstate(divide="ignore"):
        return z_half * np.sqrt(-np.log1p(-s) / _LN2)


@dataclass(frozen=True)
class AggregateScore:
    """Aggregated anomaly evidence per time step.

    score: in [0, 1], shape (n_times,).
    zscore: the equivalent two-sided |z| of the combined p-value, shape (n_times,).
    log_pvalue: natural log of the combined p-value, shape (n_times,).
    """

    score: FloatArray
    zscore: FloatArray
    log_pvalue: FloatArray


def aggregate_scores(
    z: ArrayLike,
    weights: ArrayLike | None = None,
    *,
    z_half: float = DEFAULT_Z_HALF,
    z_clip: float = 12.0,
    chi_square: bool = True,
) -> AggregateScore:
    """Combine per-metric z-scores into one anomaly score in [0, 1] per time step.

    Two tests run side by side and the stronger wins (Bonferroni over the two):

    * the max test finds one metric far from normal (p-value of the largest
      weighted |z|, Bonferroni-corrected for the number of metrics);
    * the chi-square test finds several metrics moderately off at once, the slow
      multi-metric degradation that per-metric thresholds miss (sum of squared
      weighted z, each clipped at ``z_clip`` so that one metric cannot carry it).

    Parameters
    ----------
    z : array_like, shape (n_metrics, n_times)
        Per-metric z-scores; NaN means no data for that metric at that time and
        takes no part (the metric count shrinks accordingly).
    weights : array_like, shape (n_metrics,), optional
        Relative importance; scaled so that the largest is 1.
    chi_square : bool
        Run the chi-square test too (default); False leaves the max test alone.

    Examples
    --------
    >>> agg = aggregate_scores([[0.5, 9.0], [0.2, 0.1]])
    >>> bool(agg.score[0] < 0.1), bool(agg.score[1] > 0.5)
    (True, True)
    """
    zz = _as_2d(z)
    n, _ = zz.shape
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
    w = w / np.max(w) if np.max(w) > 0 else np.ones(n)
    # NaN is "no data"; an infinite z is the strongest possible evidence, not missing.
    present = ~np.isnan(zz)
    with np.errstate(invalid="ignore"):
        wz = np.where(present & (w[:, None] > 0), np.abs(zz) * w[:, None], 0.0)
    count = present.sum(axis=0)
    has = count > 0
    m = np.maximum(count, 1)
    zmax = wz.max(axis=0)
    log_p_max = np.minimum(0.0, _LN2 + special.log_ndtr(-zmax) + np.log(m))
    chi = np.minimum(wz, z_clip) ** 2
    log_p_chi = np.asarray(stats.chi2.logsf(chi.sum(axis=0), m), dtype=float)
    log_p = np.minimum(0.0, np.minimum(log_p_max, log_p_chi) + _LN2) if chi_square else log_p_max
    log_p = np.where(has, log_p, 0.0)
    zeq = -special.ndtri_exp(log_p - _LN2)
    zeq = np.where(has, np.maximum(zeq, 0.0), 0.0)
    return AggregateScore(score=zscore_to_score(zeq, z_half), zscore=zeq, log_pvalue=log_p)


def hysteresis_alerts(score: ArrayLike, on: float, off: float) -> NDArray[np.bool_]:
    """Causal alert state: raised when ``score >= on``, held until ``score < off``.

    Holding with a lower threshold keeps one incident one alert instead of a
    flapping series of alerts while the score hovers around ``on``.
    """
    s = np.asarray(score, dtype=float)
    if off > on:
        raise ValueError("off must not exceed on")
    out = np.zeros(s.shape, dtype=bool)
    active = False
    for i, v in enumerate(s):
        active = v >= off if active else v >= on
        out[i] = active
    return out


def trailing_median(score: ArrayLike, window: int) -> FloatArray:
    """Causal median of each point and the ``window - 1`` before it (fewer at the start).

    An anomaly that lasts is worth more than one that flickers for a single
    sample: the median of three needs two of the last three points to be high.
    """
    s = np.asarray(score, dtype=float)
    padded = np.concatenate([np.full(window - 1, np.nan), s])
    return quiet_nanmedian(sliding_window_view(padded, window), axis=-1)


def onset_scores(score: ArrayLike, hold: int) -> FloatArray:
    """Causal incident-onset signal: the score where it exceeds every score of the
    previous ``hold`` points, 0 elsewhere.

    An incident lifts the score for many consecutive points; a pager, a plan or a
    benchmark that counts each point above a threshold wants it once, when it
    starts or gets worse.

    Examples
    --------
    >>> onset_scores([0.1, 0.8, 0.9, 0.85, 0.2, 0.3], hold=3).tolist()
    [0.1, 0.8, 0.9, 0.0, 0.0, 0.0]
    """
    s = np.asarray(score, dtype=float)
    padded = np.concatenate([np.full(hold, -np.inf), s])
    previous = sliding_window_view(padded[:-1], hold).max(axis=1)
    return np.where(s > previous, s, 0.0)


@dataclass(frozen=True)
class PercentileShift:
    """Tail comparison of a current window with the baseline, per metric and quantile.

    All arrays have shape (n_quantiles, n_metrics).

    quantiles: the quantiles examined, e.g. (0.95, 0.99).
    baseline, current: the quantile values of the baseline and of the current window.
    ratio: current / baseline (inf when the baseline quantile is 0 and current is not).
    exceedance: share of current points above the baseline quantile (expected 1 - q).
    pvalue: binomial probability of at least that many exceedances if nothing changed.
    """

    quantiles: FloatArray
    baseline: FloatArray
    current: FloatArray
    ratio: FloatArray
    exceedance: FloatArray
    pvalue: FloatArray


def percentile_shift(
    current: ArrayLike, baseline: ArrayLike, quantiles: Sequence[float] = (0.95, 0.99)
) -> PercentileShift:
    """p95/p99 analysis: has the tail of each metric moved up, even if its mean has not?

    A mean or median test misses a latency regression that only hits the slowest
    requests; counting how many current points exceed the baseline's p95 and p99
    catches it, and the binomial p-value says whether the excess is chance.

    Parameters
    ----------
    current : array_like, shape (n_metrics, n_current)
    baseline : array_like, shape (n_metrics, n_baseline)
    quantiles : sequence of float in (0, 1)

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> base = rng.normal(100, 5, (1, 2000))
    >>> cur = rng.normal(100, 5, (1, 300)); cur[0, ::10] += 40  # 10 % slow requests
    >>> shift = percentile_shift(cur, base)
    >>> bool(shift.pvalue[1, 0] < 1e-6)
    True
    """
    cur = _as_2d(current)
    base = _as_2d(baseline)
    q = np.asarray(quantiles, dtype=float)
    bq = quiet_nanquantile(base, q, axis=1)  # (Q, N)
    cq = quiet_nanquantile(cur, q, axis=1)
    valid = np.isfinite(cur)
    n = valid.sum(axis=1)  # (N,)
    above = np.sum(np.where(valid[None], cur[None] > bq[:, :, None], False), axis=2)  # (Q, N)
    with np.errstate(invalid="ignore", divide="ignore"):
        exceed = np.where(n > 0, above / np.maximum(n, 1), np.nan)
        ratio = np.where(bq != 0, cq / bq, np.where(cq == 0, 1.0, np.inf))
    pval = stats.binom.sf(above - 1, n[None, :], 1.0 - q[:, None])
    pval = np.where((n > 0) & np.isfinite(bq), pval, np.nan)
    exceed = np.where(np.isfinite(bq), exceed, np.nan)
    return PercentileShift(q, bq, cq, ratio, exceed, np.asarray(pval, dtype=float))


@dataclass(frozen=True)
class CriticalAnomaly:
    """One metric that is anomalous now.

    metric: name; value: its latest value; baseline: its baseline median;
    zscore: latest z; deviation: (value - baseline) / |baseline| (NaN for a zero
    baseline); since: index of the first point of the current anomalous run.
    """

    metric: str
    value: float
    baseline: float
    zscore: float
    deviation: float
    since: int


def critical_anomalies(
    x: ArrayLike,
    z: ArrayLike,
    names: Sequence[str],
    baseline_location: ArrayLike,
    *,
    threshold: float = DEFAULT_Z_HALF,
    hold: float | None = None,
) -> list[CriticalAnomaly]:
    """Metrics whose latest |z| reaches ``threshold``, with how far and since when.

    ``since`` is where the current run began: the point after the last one whose
    |z| was below ``hold`` (default ``threshold / 2``), so that a dip just under
    the threshold does not restart the clock. Sorted by |z|, largest first.

    Parameters
    ----------
    x, z : array_like, shape (n_metrics, n_times)
    names : sequence of str, length n_metrics
    baseline_location : array_like, shape (n_metrics,)
    """
    xs, zs = _as_2d(x), _as_2d(z)
    loc = np.asarray(baseline_location, dtype=float)
    hold_at = threshold / 2 if hold is None else hold
    za = np.abs(np.nan_to_num(zs, nan=0.0))
    latest = za[:, -1]
    t = zs.shape[1]
    quiet = za < hold_at
    # Index of the last quiet point per metric (-1 if none), found from the reversed array.
    last_quiet = np.where(quiet.any(axis=1), t - 1 - np.argmax(quiet[:, ::-1], axis=1), -1)
    out = []
    for i in np.flatnonzero(latest >= threshold).tolist():
        base = float(loc[i])
        value = float(xs[i, -1])
        dev = (value - base) / abs(base) if base != 0 else float("nan")
        out.append(CriticalAnomaly(str(names[i]), value, base, float(zs[i, -1]), dev, int(last_quiet[i] + 1)))
    return sorted(out, key=lambda a: -abs(a.zscore))


def _tail_pvalues(a: FloatArray, ref: FloatArray, r: NDArray[np.intp], tail: float) -> FloatArray:
    """P(|Z| >= a) per metric from its reference |z| sample, with an exponential tail past its top ``tail``.

    ``a`` is (n, t); ``ref`` is (n, m), each row sorted with its ``r`` finite values first and +inf
    after them. One pass for all metrics: a loop over metrics was a seventh of a quiet evaluation.
    """
    n, m = ref.shape
    u = ref[np.arange(n), np.floor((1.0 - tail) * (r - 1)).astype(np.intp)][:, None]
    real = np.arange(m) < r[:, None]
    above = (ref > u) & real
    n_excess = np.count_nonzero(above, axis=1)
    excess = np.where(above, ref - u, 0.0).sum(axis=1) / np.maximum(n_excess, 1)
    # A reference whose top is flat (a metric that never moved) still needs a decay
    # rate: take a tenth of the threshold, or 1 z-unit, whichever is larger.
    beta = np.maximum(np.maximum(excess, 0.1 * u[:, 0]), BETA_FLOOR)[:, None]
    # How many reference values lie below each a (the +inf padding never does).
    below = np.stack([np.searchsorted(ref[i], a[i] - Z_TIE, side="left") for i in range(n)])
    p_emp = (r[:, None] - below + 1.0) / (r[:, None] + 1.0)
    p_u = (np.count_nonzero((ref >= u) & real, axis=1)[:, None] + 1.0) / (r[:, None] + 1.0)
    with np.errstate(over="ignore"):
        p_tail = p_u * np.exp(-(a - u) / beta)
    return np.where(a > u + Z_TIE, np.minimum(p_tail, p_emp), p_emp)


def calibrate_zscore(
    z: ArrayLike, reference: ArrayLike, *, tail: float = 0.02, min_reference: int = 50
) -> FloatArray:
    """Re-express each metric's z as the normal z with the same tail probability under its reference.

    Real metrics are not normal: a step-like counter has a MAD near zero and
    routine |z| of 50, while a smooth gauge rarely passes 4. Calibrating against
    each metric's own z-scores on normal data puts them on one scale, so that
    aggregation and thresholds mean the same for every metric. Beyond the top
    ``tail`` of the reference the tail is modelled as exponential
    (peaks-over-threshold with a generalised Pareto of shape 0, as in SPOT,
    Siffer et al., KDD 2017), so extreme values still rank by how extreme they are.

    Parameters
    ----------
    z : array_like, shape (n_metrics, n_times)
    reference : array_like, shape (n_metrics, n_reference)
        z-scores of the same metrics on normal data (NaN ignored).
    tail : float
        Share of the reference treated as the tail.
    min_reference : int
        Metrics with fewer finite reference points cannot be calibrated: their
        |z| is capped at the normal z of the smallest tail probability their
        ``r`` points can show, 1 / (r + 1) (0 without any), so that a metric
        with hardly any normal history cannot outshout the well-known ones.

    Returns
    -------
    ndarray, shape (n_metrics, n_times)
        Signed calibrated z (sign of the input); NaN stays NaN.
    """
    zs = _as_2d(z)
    ref = np.abs(_as_2d(reference))
    za = np.abs(zs)
    finite_ref = np.isfinite(ref)
    r = np.count_nonzero(finite_ref, axis=1)
    out = zs.copy()
    short = r < min_reference
    if short.any():
        cap = -special.ndtri(0.5 / (r[short] + 1.0))[:, None]
        out[short] = np.sign(zs[short]) * np.minimum(za[short], cap)
    known = np.flatnonzero(~short)
    if known.size:
        ordered = np.sort(np.where(finite_ref[known], ref[known], np.inf), axis=1)
        finite = np.isfinite(za[known])
        # Non-finite z are left as they are: computed on them, the p-values are discarded below.
        with np.errstate(invalid="ignore"):
            p = _tail_pvalues(np.where(finite, za[known], 0.0), ordered, r[known], tail)
        calibrated = np.sign(zs[known]) * -special.ndtri(np.clip(p / 2.0, 1e-300, 0.5))
        out[known] = np.where(finite, calibrated, zs[known])
    return out


def trailing_calibrate_zscore(
    z: ArrayLike, *, window: int, refresh: int, min_periods: int, tail: float = 0.02
) -> FloatArray:
    """Causal :func:`calibrate_zscore`: each block of ``refresh`` points is calibrated
    against the ``window`` z-scores strictly before it; NaN until ``min_periods`` exist."""
    zs = _as_2d(z)
    t = zs.shape[1]
    out = np.full_like(zs, np.nan)
    starts = block_starts(t, refresh, min_periods)
    for start, stop in zip(starts, [*starts[1:], t], strict=True):
        ref = zs[:, max(0, start - window) : start]
        if ref.shape[1] < min_periods:
            continue
        out[:, start:stop] = calibrate_zscore(zs[:, start:stop], ref, tail=tail, min_reference=min_periods)
        short = np.count_nonzero(np.isfinite(ref), axis=1) < min_periods
        out[short, start:stop] = np.nan
    return out


def trend_zscore(
    x: ArrayLike,
    *,
    horizon: int = 60,
    window: int = 240,
    smooth: int = 5,
    min_periods: int = 20,
    refresh: int | None = None,
    min_scale: float | ArrayLike = 0.0,
) -> FloatArray:
    """Causal z of the recent level against the level ``horizon`` points ago.

    The adaptive forecast of :func:`residual_zscore` follows a slow leak step by
    step and never calls it anomalous. This view compares the median of the last
    ``smooth`` points with a reference window that ended ``horizon`` points
    earlier, so a drift of several noise widths per horizon stands out, while a
    benign step is forgotten once the reference window has moved past it
    (about ``horizon + window / 2`` points later).

    Parameters
    ----------
    x : array_like, shape (n_metrics, n_times)
    horizon, window, smooth, min_periods, refresh : int
        In points; ``refresh`` defaults to ``window // 8``.

    Returns
    -------
    ndarray, shape (n_metrics, n_times)
        Signed z; NaN until ``horizon + min_periods`` points exist.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> leak = rng.normal(0, 1, 600) + np.r_[np.zeros(300), np.arange(300) * 0.1]
    >>> z = trend_zscore(leak)
    >>> bool(np.nanmax(np.abs(z[0, :300])) < 5), bool(z[0, 400] > 5)  # 100 points into the leak
    (True, True)
    """
    xs = _as_2d(x)
    n, t = xs.shape
    recent = _past_median(np.concatenate([xs[:, 1:], np.full((n, 1), np.nan)], axis=1), smooth)
    # _past_median of the series shifted left by one = median of the last `smooth` points up to t.
    delayed = np.full((n, t), np.nan)
    if t > horizon:
        delayed[:, horizon:] = xs[:, : t - horizon]
    ls = trailing_location_scale(
        delayed,
        window=window,
        refresh=refresh or max(1, window // 8),
        min_periods=min_periods,
        min_scale=min_scale,
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        return (recent - ls.location) / np.where(ls.scale > 0, ls.scale, np.nan)
