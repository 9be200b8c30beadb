"""ajan's detector: per-metric z-scores, aggregated, alerted with hysteresis.

This is the glue behind ``ajan detect`` and ``ajan rank`` and the operator's
evaluation. Unlike the rest of :mod:`ajan.analysis`, it takes tables shaped
``(n_times, n_metrics)``, the layout of a CSV file or a Prometheus range result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ajan.analysis.anomaly import (
    aggregate_scores,
    calibrate_zscore,
    detect_period,
    hysteresis_alerts,
    onset_scores,
    residual_zscore,
    trailing_calibrate_zscore,
    trailing_median,
    trend_zscore,
    zscore_to_score,
)
from ajan.analysis.robust import FloatArray, robust_location_scale, trailing_location_scale


class InsufficientDataError(ValueError):
    """Too few rows for the detector to learn what normal looks like."""


@dataclass(frozen=True)
class DetectorConfig:
    """Tuning of :func:`detect`; lengths are in rows (samples), not seconds.

    level_window: points in the forecast's median (short: adapts to level shifts).
    scale_window: points of past forecast errors that define "normal noise".
    min_periods: points of history needed before anything is scored.
    min_calibration: points of normal z-scores needed to calibrate a metric;
        without a baseline nothing is scored before that many points.
    calibration_window: trailing points used for calibration without a baseline.
    z_half: per-metric and aggregated |z| that maps to score 0.5.
    alert_on, alert_off: score thresholds of the hysteresis alert.
    onset_hold: rows over which a score must be a new high to count as an onset.
    calibrate: calibrate each view against the metric's own normal tail (off only
        for ablation: raw z-scores of real metrics are not comparable).
    chi_square: aggregate with the chi-square test beside the max test (off only
        for ablation).
    persistence: score (and alert on) the causal median of the last
        ``persistence`` aggregated scores; 1 = off. See docs/accuracy.md for the
        trade-off.
    use_level: also score each point against the baseline's overall level, which
        catches slow drifts that the adaptive forecast absorbs.
    use_trend, trend_horizon, trend_window: also compare the recent level with the
        level ``trend_horizon`` points ago (see :func:`trend_zscore`), which catches
        slow leaks that the adaptive forecast follows step by step. ``trend_weight``
        discounts this view: slow benign change is common, so it must be clearer to count.
    seasonal, period_learn: look for a seasonal period and forecast with it where it
        predicts better than the level: in the baseline, or without one, in the
        first ``period_learn`` points of the input (then used only after them).
    rel_scale_floor, abs_scale_floor: the scale is never below
        ``max(abs_scale_floor, rel_scale_floor * |baseline median|)``, so a metric
        that sat perfectly still in the baseline does not turn every wiggle into
        an infinite z.
    """

    level_window: int = 5
    scale_window: int = 4320
    min_periods: int = 20
    z_half: float = 8.0
    alert_on: float = 0.5
    alert_off: float = 0.3
    use_level: bool = False
    use_trend: bool = True
    trend_horizon: int = 60
    trend_window: int = 240
    trend_weight: float = 0.7
    seasonal: bool = True
    rel_scale_floor: float = 0.01
    abs_scale_floor: float = 1e-6
    min_calibration: int = 100
    period_learn: int = 1000
    onset_hold: int = 48
    calibrate: bool = True
    chi_square: bool = True
    persistence: int = 1
    calibration_window: int = 4320
    weights: tuple[float, ...] | None = field(default=None)


DEFAULT_CONFIG = DetectorConfig()


def config_with(overrides: Sequence[str], base: DetectorConfig = DEFAULT_CONFIG) -> DetectorConfig:
    """``base`` with ``KEY=VALUE`` overrides, e.g. ``["trend_weight=1.0", "seasonal=false"]``.

    Used by the evaluation commands' ``--set`` so that every ablation in
    docs/accuracy.md is one reproducible command.

    Raises
    ------
    ValueError
        For an unknown key or a value of the wrong type.
    """
    values: dict[str, object] = {}
    known = {f.name: f for f in fields(DetectorConfig)}
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or key not in known or key == "weights":
            raise ValueError(f"not a detector setting: {item!r} (known: {', '.join(sorted(known))})")
        current = getattr(base, key)
        try:
            if isinstance(current, bool):
                if text.strip().lower() not in {"true", "false", "1", "0"}:
                    raise ValueError(text)
                values[key] = text.strip().lower() in {"true", "1"}
            else:
                values[key] = type(current)(text)
        except ValueError:
            raise ValueError(f"{key} needs a {type(current).__name__}, got {text!r}") from None
    return replace(base, **values)  # type: ignore[arg-type]


@dataclass(frozen=True)
class DetectionResult:
    """Per-row output of the detector.

    score: aggregated anomaly score in [0, 1], shape (T,).
    alert: 0/1 alert decision, shape (T,).
    metric_scores: per-metric anomaly score in [0, 1], shape (T, N).
    zscores: per-metric signed z-scores used for the scores, shape (T, N); NaN
        where the metric had no data or not enough history.
    onset: the score where it reaches a new high over the previous
        ``onset_hold`` rows, else 0, shape (T,): one signal per incident onset or
        escalation (see :func:`onset_scores`).
    """

    score: FloatArray
    alert: NDArray[np.bool_]
    metric_scores: FloatArray
    zscores: FloatArray
    onset: FloatArray


def min_rows(config: DetectorConfig = DEFAULT_CONFIG) -> int:
    """Rows of history (baseline plus input) the detector needs before it can score."""
    return config.min_periods + config.level_window + config.min_calibration


def metric_zscores(
    values: ArrayLike, baseline: ArrayLike | None = None, config: DetectorConfig = DEFAULT_CONFIG
) -> FloatArray:
    """Per-metric causal z-scores, shape (T, N), calibrated to a common normal scale.

    Up to three raw views of each metric are computed over baseline and values
    together: the adaptive residual z (:func:`residual_zscore`), with
    ``use_trend`` the recent level against the level ``trend_horizon`` rows
    earlier (:func:`trend_zscore`, weighted by ``trend_weight``), and with
    ``use_level`` the z against the baseline's overall level. Each is calibrated
    against its own values on the baseline (or, without one, on the trailing past
    of ``values``) by :func:`calibrate_zscore`, and per point the view with the
    largest magnitude is kept, with its sign.
    """
    x = np.asarray(values, dtype=float).T
    base = np.zeros((x.shape[0], 0)) if baseline is None else np.asarray(baseline, dtype=float).T
    nb = base.shape[1]
    full = np.concatenate([base, x], axis=1)
    learn = full[:, : max(nb, config.min_periods)]
    level = robust_location_scale(learn, axis=-1).location
    floor = np.maximum(config.abs_scale_floor, config.rel_scale_floor * np.abs(np.nan_to_num(level)))
    period, seasonal_from, select_until = None, 0, 0
    if config.seasonal and nb >= 4 * config.min_periods:
        period, select_until = detect_period(base), nb
    elif config.seasonal and full.shape[1] > config.period_learn:
        # No (long enough) baseline: learn the period from a fixed-length prefix and
        # use it only after that prefix, so no score depends on later data.
        period = detect_period(full[:, : config.period_learn])
        seasonal_from = select_until = config.period_learn
    views = [
        residual_zscore(
            full,
            level_window=config.level_window,
            scale_window=config.scale_window,
            min_periods=config.min_periods,
            period=period,
            seasonal_from=seasonal_from,
            select_until=select_until,
            min_scale=floor,
        )
    ]
    if config.use_trend:
        views.append(
            trend_zscore(
                full,
                horizon=config.trend_horizon,
                window=config.trend_window,
                smooth=config.level_window,
                min_periods=config.min_periods,
                min_scale=floor,
            )
        )
    if config.use_level:
        if nb >= config.min_periods:
            ls = robust_location_scale(base, axis=-1, min_scale=floor)
            loc, scale = ls.location[:, None], ls.scale[:, None]
        else:
            tl = trailing_location_scale(
                full,
                window=config.scale_window,
                refresh=max(1, config.scale_window // 16),
                min_periods=config.min_periods,
                min_scale=floor,
            )
            loc, scale = tl.location, tl.scale
        with np.errstate(invalid="ignore", divide="ignore"):
            views.append((full - loc) / np.where(scale > 0, scale, np.nan))
    calibrated = []
    for view in views:
        if not config.calibrate:
            calibrated.append(view[:, nb:])
        elif nb >= config.min_calibration:
            calibrated.append(
                calibrate_zscore(view[:, nb:], view[:, :nb], min_reference=config.min_calibration)
            )
        else:
            calibrated.append(
                trailing_calibrate_zscore(
                    view,
                    window=config.calibration_window,
                    refresh=max(1, config.calibration_window // 32),
                    min_periods=config.min_calibration,
                )[:, nb:]
            )
    if config.use_trend:
        calibrated[1] = calibrated[1] * config.trend_weight
    z = calibrated[0]
    for other in calibrated[1:]:
        z = np.where(np.abs(np.nan_to_num(other)) > np.abs(np.nan_to_num(z)), other, z)
    return np.asarray(z.T, dtype=float)


def detect(
    values: ArrayLike, baseline: ArrayLike | None = None, config: DetectorConfig = DEFAULT_CONFIG
) -> DetectionResult:
    """Score every row of ``values`` causally, optionally against a normal ``baseline``.

    Parameters
    ----------
    values : array_like, shape (T, N)
        Rows are times, columns metrics; NaN marks a missing sample.
    baseline : array_like, shape (Tb, N), optional
        Normal history preceding ``values``. Without it the detector learns from
        the past of ``values`` itself and scores 0 until ``min_rows`` rows exist.

    Raises
    ------
    InsufficientDataError
        When baseline and values together hold fewer than :func:`min_rows` rows.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(10, 1, (600, 2)); x[500:, 1] += 40  # metric 1 jumps at row 500
    >>> res = detect(x)
    >>> bool(res.alert[:500].any()), bool(res.alert[500])
    (False, True)
    """
    x = np.asarray(values, dtype=float)
    if x.ndim != 2:
        raise ValueError(f"values must be shaped (T, N), got {x.shape}")
    have = x.shape[0] + (0 if baseline is None else np.asarray(baseline).shape[0])
    if have < min_rows(config):
        raise InsufficientDataError(f"{have} rows of data, the detector needs at least {min_rows(config)}")
    z = metric_zscores(x, baseline, config)
    agg = aggregate_scores(z.T, config.weights, z_half=config.z_half, chi_square=config.chi_square)
    score = agg.score
    if config.persistence > 1:
        score = trailing_median(score, config.persistence)
    alert = hysteresis_alerts(score, config.alert_on, config.alert_off)
    onset = onset_scores(score, config.onset_hold)
    return DetectionResult(score, alert, zscore_to_score(z, config.z_half), z, onset)


def rank_metrics(
    values: ArrayLike,
    start: int,
    end: int,
    baseline: ArrayLike | None = None,
    config: DetectorConfig = DEFAULT_CONFIG,
    *,
    contiguous: bool = True,
) -> FloatArray:
    """Responsibility score per metric (shape (N,), in [0, 1]) for the anomalous rows ``values[start:end]``.

    Two methods, chosen by what the history can support:

    * the ``baseline`` directly precedes ``values`` (``contiguous``) and the two hold at least
      :func:`min_rows` rows: the detector's calibrated z-scores, ranked by
      :func:`ajan.analysis.rootcause.rank_root_causes` (seasonality and trend need that history);
    * otherwise (a short export with a few rows before the incident, or a healthy reference
      recorded at another time or traffic level): :func:`ajan.analysis.rootcause.rank_level_shifts`,
      the move from the level of the rows just before ``start``, in the spread of the
      ``baseline`` (or, without one, of the rows before ``start``).

    Parameters
    ----------
    values : array_like, shape (T, N)
    start, end : int
        The interval, ``end`` exclusive.
    baseline : array_like, shape (Tb, N), optional
        Normal behaviour.
    contiguous : bool
        Whether ``baseline`` ends where ``values`` begins. False for a reference from
        elsewhere: its levels are then never compared with the interval's.

    Raises
    ------
    ValueError
        On a bad interval, or, for the short-history method, when no row precedes ``start``
        or no metric has two reference samples to measure its spread in.
    """
    from ajan.analysis.rootcause import rank_level_shifts, rank_root_causes

    x = np.asarray(values, dtype=float)
    if x.ndim != 2:
        raise ValueError(f"values must be shaped (T, N), got {x.shape}")
    # The interval is checked by whichever ranking runs: their bounds differ (a row before, or not).
    history = x.shape[0] + (0 if baseline is None or not contiguous else np.asarray(baseline).shape[0])
    if history >= min_rows(config):
        z = metric_zscores(x, baseline if contiguous else None, config)
        return rank_root_causes(z.T, start, end, z_half=config.z_half).score
    reference = None if baseline is None else np.asarray(baseline, dtype=float).T
    return rank_level_shifts(x[:end].T, start, end, reference, z_half=config.z_half).score
