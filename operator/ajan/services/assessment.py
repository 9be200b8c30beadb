"""One assessment of a policy: from its metrics' window to a confidence, a ladder rung and evidence.

Pure: numbers in, an :class:`Assessment` out; no clock, no I/O. The operator, ``ajan backtest`` and
the benchmarks all call :func:`assess`, so a backtest shows exactly what the operator would have done.

How the confidence is made (until the severity model and feedback calibration of issue 5 replace it):

1. Per metric, the detector's calibrated z-score (:func:`ajan.analysis.detector.detect`, scaled to
   the window's length), kept only in the direction the policy calls bad (``objective``): a canary
   that got *faster* is not an incident. A two-sided metric (``both``) is bad in the direction it
   moved, and every later step sees it that way.
2. "Now" is the median of the last :data:`NOW_ROWS` rows, so one spiky sample (a flaky
   metric) cannot open an incident; a real step change costs one step of delay.
   With the metric's long-run spread (:func:`long_run_spread`, over a week), the z-score is capped
   at how far "now" is from the baseline's median in units of that spread: a metric that wanders
   this far every week is not surprising because the short window happened to be quiet.
3. The SLO metrics' scores aggregate into ``slo_score`` (max and chi-square tests, weighted); the
   signals' into ``signal_score``.
4. A signal counts towards the SLO only through a significant lagged correlation (of the metrics'
   changes over the baseline) with an SLO metric:
   ``breach_probability`` is the highest predicted probability that an SLO metric follows it into
   a breach (:func:`ajan.analysis.impact.predict_impact`).
5. An SLO metric with a ``threshold`` is forecast (:func:`ajan.analysis.forecast.breach_forecast`):
   ``forecast_probability`` is the highest probability that one is beyond its threshold within
   ``remediation.horizon`` (1 when one is beyond it now).
6. ``confidence = coverage * (1 - (1 - slo_score) * (1 - signal_score * breach_probability)
   * (1 - forecast_probability))``: the probability that the SLO is, or is about to be, in trouble,
   discounted by missing recent samples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import numpy as np
import numpy.typing as npt

from ajan.analysis.anomaly import aggregate_scores, percentile_shift, zscore_to_score
from ajan.analysis.correlation import LaggedCorrelation, lagged_correlation, top_correlations
from ajan.analysis.detector import DetectorConfig, InsufficientDataError, detect, min_rows
from ajan.analysis.drift import DriftResult, detect_drift
from ajan.analysis.forecast import BreachForecast, breach_forecast
from ajan.analysis.impact import ImpactPrediction, predict_impact
from ajan.analysis.robust import NOW_ROWS, SCALE_FLOOR_OF_LEVEL, quiet_nanmedian
from ajan.analysis.versus import against_stable
from ajan.errors import InsufficientData
from ajan.models import (
    Anomaly,
    Correlation,
    CorrelationPolicySpec,
    Drift,
    Evidence,
    Forecast,
    LadderStep,
    MetricRole,
    Objective,
    PredictedImpact,
    parse_duration,
)
from ajan.services.features import DecisionFeatures, decision_features

FloatArray = npt.NDArray[np.float64]

#: Finite samples a long-run spread needs before it bounds anything.
MIN_SPREAD_POINTS: Final = 24
#: A metric's newest sample may be this many rows old (and at least a minute) before it is stale.
STALE_ROWS: Final = 3
#: Fewest baseline z-scores a metric is calibrated against; a shorter window is InsufficientData.
MIN_REFERENCE: Final = 10
#: Seasonality is only looked for in windows that hold several days.
SEASONAL_WINDOW_S: Final = 3 * 86400.0
#: Evidence lists at most this many correlations (the policy status at most ``STATUS_CORRELATIONS``).
EVIDENCE_CORRELATIONS: Final = 10
STATUS_CORRELATIONS: Final = 5
#: z-scores written to the API server are clipped: JSON has no infinity.
Z_LIMIT: Final = 1e6
#: An SLO metric that has used this share of its headroom (from its baseline to its threshold) is
#: as anomalous as ``z_half``, however quiet its baseline was (:func:`headroom_bound`).
HEADROOM_AT_Z_HALF: Final = 0.25


@dataclass(frozen=True)
class MetricWindow:
    """A policy's metrics on one time grid.

    names: the policy's metric names, in spec order.
    timestamps: epoch seconds, shape (T,), evenly spaced by ``step_s``.
    values: shape (T, N), NaN where a metric has no sample.
    stable: the stable track of the metrics with a ``stableQuery``, shape (T, N), NaN elsewhere;
        None when no metric has one.
    """

    names: tuple[str, ...]
    timestamps: FloatArray
    values: FloatArray
    step_s: float
    stable: FloatArray | None = None

    def __post_init__(self) -> None:
        shape = (self.timestamps.size, len(self.names))
        if self.values.shape != shape:
            raise ValueError(f"values shaped {self.values.shape}, expected {shape}")
        if self.stable is not None and self.stable.shape != shape:
            raise ValueError(f"stable shaped {self.stable.shape}, expected {shape}")

    def tail(self, end: int, rows: int) -> MetricWindow:
        """The ``rows`` rows ending before row ``end`` (a backtest's sliding window)."""
        start = max(0, end - rows)
        stable = None if self.stable is None else self.stable[start:end]
        return MetricWindow(
            self.names, self.timestamps[start:end], self.values[start:end], self.step_s, stable
        )

    def judged(self, split: int, lag: int = 0) -> MetricWindow:
        """The window as ajan judges it: each metric with a stable track as the canary's excess
        over it (:func:`ajan.analysis.versus.against_stable`, baseline before row ``split``, the
        tracks out of step by up to ``lag`` rows)."""
        if self.stable is None:
            return self
        judged = against_stable(self.values, self.stable, split, lag)
        return MetricWindow(self.names, self.timestamps, judged, self.step_s)


@dataclass(frozen=True)
class Assessment:
    """What one evaluation concluded.

    at: time of the newest row assessed.
    score: aggregated anomaly score of all metrics now (bad direction only), in [0, 1].
    slo_score, signal_score: the same over the SLO metrics and over the signals.
    breach_probability: highest predicted probability that a signal drags an SLO metric into breach.
    forecast_probability: highest probability that an SLO metric is beyond its threshold within the
        horizon (0 without thresholds).
    coverage: share of recent samples present, over all metrics.
    confidence: see the module docstring, in [0, 1].
    rung: the ladder step the confidence reaches, or None.
    metric_scores: per metric, its anomaly score now.
    evidence: anomalies, correlations, predicted impact and drift, for the plan.
    features: the bounded features of this decision, the severity model's input; None when the
        assessment was made without ``detail`` and could open no plan (see :func:`assess`).
    """

    at: datetime
    score: float
    slo_score: float
    signal_score: float
    breach_probability: float
    forecast_probability: float
    coverage: float
    confidence: float
    rung: LadderStep | None
    metric_scores: dict[str, float]
    evidence: Evidence
    features: DecisionFeatures | None

    @property
    def top_correlations(self) -> list[Correlation]:
        """The strongest relations, for the policy's status."""
        return self.evidence.correlations[:STATUS_CORRELATIONS]


def current_rows(rows: int) -> int:
    """Rows of a ``rows``-row window that are scored against the rest (the newest quarter)."""
    return max(2 * NOW_ROWS, rows // 4)


def nominal_rows(spec: CorrelationPolicySpec) -> int:
    """Rows in the policy's window: ``window / step``."""
    return round(parse_duration(spec.window).total_seconds() / parse_duration(spec.step).total_seconds())


def rung_for(confidence: float, ladder: Sequence[LadderStep]) -> LadderStep | None:
    """The first ladder step (highest first) whose ``minConfidence`` the confidence reaches."""
    return next((step for step in ladder if confidence >= step.min_confidence), None)


def detector_config(spec: CorrelationPolicySpec, rows: int, *, hold: bool = False) -> DetectorConfig:
    """The detector tuned to a window of ``rows`` rows.

    The core's defaults assume days of one-minute rows; a policy's window is typically an hour. Every
    length is scaled to the window. With ``hold`` (an incident is open) the level view is on too.
    """
    window_s = parse_duration(spec.window).total_seconds()
    weights = tuple(m.weight for m in spec.metrics)
    level_window = int(np.clip(rows // 24, 1, 5))
    min_periods = int(np.clip(rows // 12, 5, 20))
    # The calibration must be able to use the baseline: the residual z is NaN for its first rows.
    reference = rows - current_rows(rows) - min_periods - level_window
    return DetectorConfig(
        level_window=level_window,
        scale_window=rows,
        calibration_window=rows,
        min_periods=min_periods,
        min_calibration=int(max(1, min(np.clip(rows // 3, MIN_REFERENCE, 100), reference))),
        z_half=spec.anomaly.effective_z_half(),
        use_level=hold,
        use_trend=rows >= 60,
        trend_horizon=int(np.clip(rows // 4, 5, 60)),
        trend_window=int(np.clip(rows // 2, 10, 240)),
        seasonal=window_s >= SEASONAL_WINDOW_S,
        period_learn=max(rows // 2, 1),
        rel_scale_floor=SCALE_FLOOR_OF_LEVEL,
        weights=weights,
    )


@dataclass(frozen=True)
class DataCheck:
    """What the data check let through: the recent coverage of the judged metrics, and which
    metrics are stale (no recent sample) and left out of this decision."""

    coverage: float
    stale: tuple[int, ...]
    #: Per stale metric, how old its newest sample is, in words.
    stale_notes: tuple[str, ...]


def _check_data(spec: CorrelationPolicySpec, window: MetricWindow) -> DataCheck:
    """Raise `InsufficientData` for a window too sparse to judge or with no SLO metric left fresh.

    A metric is stale when its newest sample is older than :data:`STALE_ROWS` rows (at least a
    minute) and than its longest earlier silence in the window. A stale metric alone does not stop
    the evaluation: a latency with no traffic (or one broken
    exporter) must not blind the guard to the other metrics. It is left out, and :func:`assess`
    lets the rest raise an alarm but not clear one.
    """
    values = window.values
    rows = values.shape[0]
    present = np.isfinite(values)
    share = present.mean(axis=0) if rows else np.zeros(len(window.names))
    need = spec.anomaly.min_coverage
    problems = [
        f"metric {name}: {got:.0%} of the window's {rows} samples are present; "
        f"anomaly.minCoverage is {need:.0%}"
        for name, got in zip(window.names, share.tolist(), strict=True)
        if got < need
    ]
    # A minute, or three steps, but never more than a quarter of a short window.
    limit = max(STALE_ROWS, min(math.ceil(60.0 / window.step_s), rows // 4))
    stale: list[int] = []
    notes: list[str] = []
    # Rows since each metric's newest sample (all of them without one).
    ages = (
        np.where(present.any(axis=0), np.argmax(present[::-1], axis=0), rows)
        if rows
        else np.zeros(len(window.names), dtype=np.intp)
    )
    for i in np.flatnonzero((ages > limit) & (share >= need)).tolist():
        age = int(ages[i])
        # An intermittent metric (a latency at low traffic) is stale only when its silence is longer
        # than any it had before in the window: silences like those are how it normally looks.
        if age > longest_gap(present[: rows - age, i]):
            stale.append(i)
            notes.append(f"metric {window.names[i]}: newest sample is {age * window.step_s:g}s old")
    problems += notes
    slo = [m.role is MetricRole.SLO for m in spec.metrics]
    fresh_slo = any(is_slo and i not in stale for i, is_slo in enumerate(slo))
    if len(problems) > len(stale) or not fresh_slo:
        # Every metric at once, so that a user fixes all of their queries in one go.
        raise InsufficientData("; ".join(problems) + "; no action is taken without enough recent data")
    judged = np.setdiff1d(np.arange(len(window.names)), stale)
    recent = present[-max(NOW_ROWS, rows // 6) :][:, judged]
    return DataCheck(float(recent.mean()), tuple(stale), tuple(notes))


def orientation(spec: CorrelationPolicySpec, z_now: FloatArray) -> FloatArray:
    """+1 per metric where higher is worse, -1 where lower is: from its ``objective``, and for a
    two-sided one (``both``) the direction its signed z-score ``z_now`` moved (up when unknown).

    >>> s = CorrelationPolicySpec.model_validate({"targetRef": {"name": "r"}, "metrics": [
    ...     {"name": n, "query": "q", "role": "slo", "objective": o} for n, o in
    ...     (("a", "max"), ("b", "min"), ("c", "both"), ("d", "both"))]})
    >>> orientation(s, np.array([-3.0, 2.0, -4.0, np.nan])).tolist()
    [1.0, -1.0, -1.0, 1.0]
    """
    moved = np.where(np.nan_to_num(z_now) < 0.0, -1.0, 1.0)
    return np.array(
        [
            1.0 if m.objective is Objective.MAX else -1.0 if m.objective is Objective.MIN else moved[i]
            for i, m in enumerate(spec.metrics)
        ]
    )


def longest_gap(present: npt.NDArray[np.bool_]) -> int:
    """The longest run of missing samples in ``present`` (True where a sample is there).

    >>> longest_gap(np.array([True, False, False, True, False, True]))
    2
    """
    edges = np.diff(np.concatenate([[1], present.astype(np.int8), [1]]))
    starts, ends = np.flatnonzero(edges == -1), np.flatnonzero(edges == 1)
    return int((ends - starts).max()) if starts.size else 0


def _finite(x: float, default: float = 0.0) -> float:
    return float(np.clip(x, -Z_LIMIT, Z_LIMIT)) if math.isfinite(x) else default


def _optional(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _stamp(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, tz=UTC)


def assess(
    spec: CorrelationPolicySpec,
    window: MetricWindow,
    current_from: float | None = None,
    *,
    hold: bool = False,
    spread: FloatArray | None = None,
    detail: bool = True,
) -> Assessment:
    """Score the window's newest rows and say how confident ajan is that the SLO is in trouble.

    Parameters
    ----------
    spec
        The policy: metric roles, objectives and weights, anomaly, correlation and ladder settings.
    window
        The policy's metrics over its baseline window, newest row last.
    current_from
        Timestamp of the first row to score; the rows before it are the baseline. By default the
        newest quarter (:func:`current_rows`). During an incident the operator passes the part
        scored when the incident opened, with the baseline before it (see
        :func:`ajan.services.window.window_bounds`), so that a long incident is not learnt as normal.
    hold
        An incident is open: also score each metric's level against the baseline. Opening takes a
        *change* (the adaptive views, which ignore slow wandering); staying open takes not being
        back where the metric was before (the adaptive views absorb a lasting shift within minutes).
    spread
        Each metric's long-run spread (:func:`long_run_spread`, shape (n_metrics,), NaN where
        unknown), or None: each metric's score is then at most its distance from the baseline's
        median in units of it (:func:`spread_bound`).
    detail
        Always compute what only a plan shows: the metrics' drift and the severity model's
        ``features``. Without it they are left out (drift empty, ``features`` None) of an
        assessment that can open no plan: no incident open (``hold``), no rung reached, no metric
        or aggregate at ``anomaly.threshold``. That is most evaluations, and the two cost about
        half of one (docs/performance.md).

    Raises
    ------
    InsufficientData
        When a metric misses more samples than ``anomaly.minCoverage`` allows, has no recent
        sample, or the window is too short for the detector to learn what normal is.
    """
    names = window.names
    split = scored_from(window, current_from)
    # Tracks out of step by as much as the policy lets related metrics lag each other.
    raw, window = window, window.judged(split, lag_rows(spec, window.step_s, split))
    checked = _check_data(spec, window)
    coverage = checked.coverage
    rows = window.values.shape[0]
    config, z = _detect(spec, window, split, hold)  # (rows - split, N)
    z_half = config.z_half
    now = _now(spec, window, raw, split, z, z_half, spread)
    bad_now = now.bad
    slo = np.array([m.role is MetricRole.SLO for m in spec.metrics])
    score, slo_score, signal_score = _aggregates(spec, bad_now, slo, z_half)
    metric_scores = zscore_to_score(np.nan_to_num(bad_now), z_half)
    relations = _relations(spec, window, split, bad_now, slo, z_half)
    breach = relations.breach_probability
    forecasts = _forecasts(spec, window, split, stale=checked.stale)
    forecast = max((f.probability for f in forecasts), default=0.0)

    trouble = (1.0 - slo_score) * (1.0 - signal_score * breach) * (1.0 - forecast)
    confidence = coverage * (1.0 - trouble)
    confidence = float(np.clip(confidence, 0.0, 1.0))

    base, cur = window.values[:split].T, window.values[split:].T
    rung = rung_for(confidence, spec.remediation.ladder)
    stale = [names[i] for i in checked.stale]
    if stale and rung is None:
        # What is missing may be what is wrong (a canary with no traffic has no latency): the
        # metrics left can raise an alarm, never say all is well.
        raise InsufficientData(
            "; ".join(checked.stale_notes)
            + "; the other metrics show nothing, and nothing is cleared without them"
        )
    decisive = score >= spec.anomaly.threshold or rung is not None
    anomalies = _anomalies(spec, raw, split, z, now.z, now.orient, metric_scores, decisive, base, cur)
    drift, features = None, None
    if detail or hold or decisive or anomalies:
        drift = detect_drift(cur, base, alpha=spec.correlation.alpha)
        features = decision_features(
            confidence=confidence,
            slo_score=slo_score,
            signal_score=signal_score,
            score=score,
            breach_probability=breach,
            coverage=coverage,
            bad_now=bad_now,
            metric_scores=metric_scores,
            z_half=z_half,
            threshold=spec.anomaly.threshold,
            orient=now.orient,
            current=cur,
            baseline=base,
            correlation=relations.correlation,
            impacts=relations.impacts,
            is_slo=slo,
            drift=drift,
            window_rows=min(rows, nominal_rows(spec)),
        )
    return Assessment(
        at=_stamp(float(window.timestamps[-1])),
        score=score,
        slo_score=slo_score,
        signal_score=signal_score,
        breach_probability=breach,
        forecast_probability=forecast,
        coverage=coverage,
        confidence=confidence,
        rung=rung,
        metric_scores={n: float(s) for n, s in zip(names, metric_scores.tolist(), strict=True)},
        evidence=Evidence(
            anomalies=anomalies,
            correlations=relations.evidence,
            predicted_impact=relations.predicted,
            drift=[] if drift is None else _drifted(names, drift),
            forecasts=forecasts,
            stale_metrics=stale,
        ),
        features=features,
    )


def _aggregates(
    spec: CorrelationPolicySpec, bad_now: FloatArray, slo: npt.NDArray[np.bool_], z_half: float
) -> tuple[float, float, float]:
    """The weighted anomaly score now of all metrics, of the SLOs alone and of the signals alone
    (0 where a group has no metric or no finite score)."""
    weights = np.array([m.weight for m in spec.metrics])

    def aggregate(mask: npt.NDArray[np.bool_]) -> float:
        if not mask.any() or not np.isfinite(bad_now[mask]).any():
            return 0.0
        agg = aggregate_scores(bad_now[mask][:, None], weights[mask], z_half=z_half)
        return float(agg.score[0])

    return aggregate(np.ones_like(slo)), aggregate(slo), aggregate(~slo)


def _drifted(names: Sequence[str], drift: DriftResult) -> list[Drift]:
    """The plan's evidence of the metrics whose distribution drifted from the baseline's."""
    return [
        Drift(
            metric=names[i],
            psi=_finite(float(drift.psi[i])),
            ks_p_value=float(np.clip(np.nan_to_num(drift.ks_pvalue[i], nan=1.0), 0.0, 1.0)),
        )
        for i in np.flatnonzero(drift.drifted).tolist()
    ]


def lag_rows(spec: CorrelationPolicySpec, step_s: float, split: int) -> int:
    """``correlation.maxLag`` in rows, at most a quarter of the baseline's ``split`` rows."""
    return min(round(parse_duration(spec.correlation.max_lag).total_seconds() / step_s), split // 4)


def scored_from(window: MetricWindow, current_from: float | None) -> int:
    """The row where the scored part of ``window`` starts: at ``current_from``, by default its
    newest quarter (:func:`current_rows`), and never within the last :data:`NOW_ROWS`."""
    # The newest quarter is judged against the rest: calibrating against a trailing reference that
    # includes the incident would teach the detector that the incident is normal.
    rows = window.values.shape[0]
    if current_from is None:
        return rows - current_rows(rows)
    split = int(np.searchsorted(window.timestamps, current_from - 1e-6))
    return max(min(split, rows - NOW_ROWS), 0)


def _detect(
    spec: CorrelationPolicySpec, window: MetricWindow, split: int, hold: bool
) -> tuple[DetectorConfig, FloatArray]:
    """The detector scaled to the window, and its signed, calibrated z-scores on the rows from
    ``split`` on, shape (rows - split, n_metrics)."""
    rows = window.values.shape[0]
    config = detector_config(spec, min(rows, nominal_rows(spec)), hold=hold)
    if config.min_calibration < MIN_REFERENCE:
        raise InsufficientData(
            f"the window holds {rows} samples per metric, too few to learn what normal is: "
            "lengthen window or shorten step"
        )
    try:
        return config, detect(window.values[split:], window.values[:split], config).zscores
    except InsufficientDataError as err:
        raise InsufficientData(
            f"the window holds {rows} samples per metric, the detector needs {min_rows(config)}: "
            "lengthen window or shorten step"
        ) from err


@dataclass(frozen=True)
class Now:
    """Each metric now: its signed z-score (median of the last rows), the direction that is bad for
    it, and how bad it is in that direction (bounded by the long-run spread; NaN without data)."""

    z: FloatArray
    orient: FloatArray
    bad: FloatArray


def _now(
    spec: CorrelationPolicySpec,
    window: MetricWindow,
    raw: MetricWindow,
    split: int,
    z: FloatArray,
    z_half: float,
    spread: FloatArray | None,
) -> Now:
    recent = z[-NOW_ROWS:]
    with np.errstate(invalid="ignore"):
        z_now = quiet_nanmedian(recent.copy(), axis=0)  # signed
    orient = orientation(spec, z_now)
    with np.errstate(invalid="ignore"):
        bad_now = np.where(np.isfinite(z_now), np.maximum(z_now * orient, 0.0), np.nan)
    if spread is not None:
        bad_now = np.minimum(bad_now, spread_bound(window.values, split, orient, spread))
    thresholds = np.array([np.nan if m.threshold is None else m.threshold for m in spec.metrics])
    moved = level_move(window.values, split)
    bad_now = np.minimum(bad_now, headroom_bound(moved, raw.values[:split], thresholds, orient, z_half))
    return Now(z_now, orient, bad_now)


@dataclass(frozen=True)
class Relations:
    """What the metrics' lagged relations say: the correlations (and the strongest, as evidence),
    the predicted impact on the SLO metrics, and the highest probability that a signal drags one
    into a breach."""

    correlation: LaggedCorrelation
    evidence: list[Correlation]
    impacts: list[ImpactPrediction]
    predicted: list[PredictedImpact]
    breach_probability: float


def _relations(
    spec: CorrelationPolicySpec,
    window: MetricWindow,
    split: int,
    bad_now: FloatArray,
    slo: npt.NDArray[np.bool_],
    z_half: float,
) -> Relations:
    names, step = window.names, window.step_s
    max_lag = lag_rows(spec, step, split)
    # Learnt on the baseline, so that the incident's own jumps neither hide nor invent a relation;
    # on changes, not levels: metrics that merely trend together look correlated (spurious
    # regression), and who moves first shows in the changes.
    corr = lagged_correlation(
        np.diff(window.values[:split], axis=0).T,
        max_lag=max(0, max_lag),
        method=spec.correlation.method.value,
        alpha=spec.correlation.alpha,
        min_abs_r=spec.correlation.min_abs_r,
    )
    correlations = [
        Correlation(
            leader=names[p.leader],
            follower=names[p.follower],
            r=round(float(np.clip(p.r, -1, 1)), 4),
            lag_seconds=float(p.lag * step),
        )
        for p in top_correlations(corr, k=EVIDENCE_CORRELATIONS)
    ]
    impacts = predict_impact(
        np.nan_to_num(bad_now),
        corr,
        anomalous_z=z_half / 2,
        breach_z=z_half / 2,
        targets=np.flatnonzero(slo).tolist(),
    )
    predicted = [
        PredictedImpact(
            metric=names[p.target],
            expected_z=_finite(p.expected_z),
            low_z=_finite(p.low_z),
            high_z=_finite(p.high_z),
            lag_seconds=float(max(p.lag, 0) * step),
            breach_probability=float(np.clip(p.breach_probability, 0.0, 1.0)),
        )
        for p in impacts
    ]
    predicted = [p for p in predicted if p.low_z <= p.expected_z <= p.high_z]
    breach = max((p.breach_probability for p in impacts if not slo[p.source]), default=0.0)
    return Relations(corr, correlations, impacts, predicted, float(np.clip(breach, 0.0, 1.0)))


def _forecasts(
    spec: CorrelationPolicySpec, window: MetricWindow, split: int, *, stale: Sequence[int]
) -> list[Forecast]:
    """When each fresh SLO metric with a threshold is predicted to cross it, calibrated on the
    baseline (the rows before ``split``)."""
    horizon = parse_duration(spec.remediation.horizon).total_seconds()
    out = []
    for i, metric in enumerate(spec.metrics):
        if metric.threshold is None or i in stale:
            continue
        orient = -1.0 if metric.objective is Objective.MIN else 1.0
        f = breach_forecast(
            window.values[:, i],
            metric.threshold,
            step_s=window.step_s,
            horizon_s=horizon,
            split=split,
            orient=orient,
        )
        if math.isfinite(f.now):
            out.append(_forecast_evidence(metric.name, metric.threshold, f))
    return out


def _forecast_evidence(metric: str, threshold: float, f: BreachForecast) -> Forecast:
    return Forecast(
        metric=metric,
        threshold=threshold,
        value=_finite(f.now),
        eta_seconds=f.eta_s if math.isfinite(f.eta_s) else None,
        eta_low_seconds=f.eta_low_s if math.isfinite(f.eta_low_s) else None,
        eta_high_seconds=f.eta_high_s if math.isfinite(f.eta_high_s) else None,
        horizon_seconds=f.horizon_s,
        probability=round(f.probability, 4),
    )


def long_run_spread(values: FloatArray) -> FloatArray:
    """Each metric's standard deviation over a long stretch of its history.

    Parameters
    ----------
    values
        Samples, shape (n_times, n_metrics), NaN where missing (the operator samples a week coarsely,
        see :func:`ajan.services.window.spread_bounds`).

    Returns
    -------
    Shape (n_metrics,): NaN for a metric with fewer than :data:`MIN_SPREAD_POINTS` finite samples.

    The plain standard deviation, not a robust scale, on purpose: it is meant to hold the level
    changes and bursts a metric makes in normal operation, which a robust scale would discard.

    >>> long_run_spread(np.array([[1.0, 5.0]] * 12 + [[3.0, 5.0]] * 12)).round(3).tolist()
    [1.0, 0.0]
    """
    finite = np.isfinite(values)
    n = finite.sum(axis=0)
    x = np.where(finite, values, 0.0)
    # By hand rather than np.nanstd, which warns for every metric with no sample at all.
    mean = x.sum(axis=0) / np.maximum(n, 1)
    std = np.sqrt((np.where(finite, x - mean, 0.0) ** 2).sum(axis=0) / np.maximum(n, 1))
    return np.where(n >= MIN_SPREAD_POINTS, std, np.nan)


def level_move(values: FloatArray, split: int) -> FloatArray:
    """How far each metric is now (median of the last :data:`NOW_ROWS` rows) from its baseline's
    median (the rows before ``split``), signed, in its own units, shape (n_metrics,).

    >>> level_move(np.array([[1.0, 5.0]] * 8 + [[3.0, 4.0]] * 4), 8).tolist()
    [2.0, -1.0]
    """
    now = quiet_nanmedian(values[-NOW_ROWS:].copy(), axis=0)
    level = quiet_nanmedian(values[:split].copy(), axis=0)
    return now - level


def headroom_bound(
    moved: FloatArray, baseline: FloatArray, thresholds: FloatArray, orient: FloatArray, z_half: float
) -> FloatArray:
    """The most an SLO metric's bad z-score can be, given the share of its headroom it has used.

    An SLO's threshold says what size of move matters: p99 rising from 0.25 s to 0.27 s uses 8 % of
    the way to a 0.5 s threshold, however quiet the baseline (a p99 just under a histogram bucket
    bound is flat until it jumps into the next bucket). A metric that has used
    :data:`HEADROOM_AT_Z_HALF` of its headroom is bounded at ``z_half``, in proportion below and
    above; metrics without a threshold, or already beyond it, are not bounded (+inf).

    Parameters
    ----------
    moved
        :func:`level_move`, shape (n_metrics,), in each metric's units.
    baseline
        The baseline's raw values, shape (n_times, n_metrics): the headroom starts at its median.
    thresholds
        Each metric's SLO threshold, NaN where it has none, shape (n_metrics,).
    orient
        +1 where a rise is bad, -1 where a fall is, shape (n_metrics,).

    >>> headroom_bound(np.array([0.02, 0.02, 0.1]), np.array([[0.25, 0.25, 0.25]]),
    ...                np.array([0.5, np.nan, 0.5]), np.ones(3), 8.0).round(2).tolist()
    [2.56, inf, 12.8]
    """
    level = quiet_nanmedian(baseline.copy(), axis=0)
    headroom = (thresholds - level) * orient
    with np.errstate(invalid="ignore", divide="ignore"):
        bound = np.maximum(moved * orient, 0.0) / (HEADROOM_AT_Z_HALF * headroom) * z_half
    return np.where(np.isfinite(bound) & (headroom > 0), bound, np.inf)


def spread_bound(values: FloatArray, split: int, orient: FloatArray, spread: FloatArray) -> FloatArray:
    """How far each metric is now from its baseline's median, in units of its long-run ``spread``.

    Parameters
    ----------
    values
        The window, shape (n_times, n_metrics); rows before ``split`` are the baseline.
    orient
        +1 where a rise is bad, -1 where a fall is, shape (n_metrics,).
    spread
        :func:`long_run_spread`, shape (n_metrics,).

    Returns
    -------
    Shape (n_metrics,), >= 0, only the bad direction counts; +inf where the spread is unknown (no
    bound). A spread of 0 (a metric constant all week) is floored at the share
    :data:`~ajan.analysis.robust.SCALE_FLOOR_OF_LEVEL` of the baseline's level (1e-6 at level 0), so
    that its first real move still scores.
    """
    level = quiet_nanmedian(values[:split].copy(), axis=0)
    floor = np.maximum(1e-6, SCALE_FLOOR_OF_LEVEL * np.abs(np.nan_to_num(level)))
    with np.errstate(invalid="ignore", divide="ignore"):
        bound = np.maximum(level_move(values, split) * orient, 0.0) / np.maximum(spread, floor)
    return np.where(np.isfinite(spread) & np.isfinite(bound), bound, np.inf)


def _anomalies(
    spec: CorrelationPolicySpec,
    window: MetricWindow,
    split: int,
    z: FloatArray,
    z_now: FloatArray,
    orient: FloatArray,
    metric_scores: FloatArray,
    decisive: bool,
    base: FloatArray,
    cur: FloatArray,
) -> list[Anomaly]:
    """The metrics whose score now reaches ``anomaly.threshold``, most anomalous first.

    When none reaches it but the evaluation is ``decisive`` (the aggregate score reaches the
    threshold, or the confidence a rung of the ladder), those within half of the highest metric's
    score: several metrics each under the threshold can together make an anomaly and a plan, and its
    evidence must still name what moved.

    ``z`` covers the rows from ``split`` on (the part judged against the baseline).
    """
    threshold = spec.anomaly.threshold
    z_half = spec.anomaly.effective_z_half()
    listed = np.flatnonzero(metric_scores >= threshold)
    top = float(metric_scores.max(initial=0.0))
    if listed.size == 0 and decisive and top > 0.0:
        listed = np.flatnonzero(metric_scores >= top / 2)
    if listed.size == 0:
        return []
    tails = percentile_shift(cur, base)
    out = []
    for i in listed.tolist():
        column = window.values[:, i]
        finite = np.flatnonzero(np.isfinite(column))
        stable_now = np.empty(0) if window.stable is None else window.stable[:, i]
        stable_now = stable_now[np.isfinite(stable_now)]
        # Onset: after the last row whose score was under half the threshold (a dip does not reset it).
        with np.errstate(invalid="ignore"):
            row_scores = zscore_to_score(np.nan_to_num(np.maximum(z[:, i] * orient[i], 0.0)), z_half)
        quiet = np.flatnonzero(row_scores < threshold / 2)
        since = min(split + (int(quiet[-1]) + 1 if quiet.size else 0), len(column) - 1)
        base_finite = base[i][np.isfinite(base[i])]
        out.append(
            Anomaly(
                metric=window.names[i],
                value=_finite(float(column[finite[-1]])) if finite.size else 0.0,
                baseline=_finite(float(np.median(base_finite))) if base_finite.size else 0.0,
                stable=_finite(float(stable_now[-1])) if stable_now.size else None,
                z_score=round(_finite(float(z_now[i])), 3),
                p95=_optional(float(tails.current[0, i])),
                p99=_optional(float(tails.current[1, i])),
                since=_stamp(float(window.timestamps[since])),
            )
        )
    return sorted(out, key=lambda a: -abs(a.z_score))
