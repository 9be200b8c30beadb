"""The features of one decision: what the severity model (issue 5) sees of an assessment.

Every feature is bounded and scale-free (a share, a probability, a z-score divided by the policy's
``zHalf``, a lag divided by the window), so that one model fits any policy, whatever its metrics'
units, its step or its sensitivity. :func:`decision_features` is pure and is called by
:func:`ajan.services.assessment.assess` with the arrays it has already computed.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass, fields
from typing import Final

import numpy as np
import numpy.typing as npt

from ajan.analysis.anomaly import percentile_shift
from ajan.analysis.correlation import LaggedCorrelation
from ajan.analysis.drift import DriftResult
from ajan.analysis.impact import ImpactPrediction
from ajan.analysis.robust import MAD_TO_SIGMA, SCALE_FLOOR_OF_LEVEL, quiet_nanmedian

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

#: Largest value of a z-like feature (in units of ``zHalf`` or of robust standard deviations): past
#: ten, "very far" is all a classifier needs to know, and a bound keeps one outlier from dominating
#: the standardisation.
Z_CLIP: Final = 10.0


@dataclass(frozen=True)
class DecisionFeatures:
    """Features of one assessment, each bounded (ranges below), NaN never.

    confidence, slo_score, signal_score, score, breach_probability
        The heuristic's own outputs (see :mod:`ajan.services.assessment`), in [0, 1].
    max_bad_z
        Largest bad-direction z now, divided by ``zHalf``, in [0, 10].
    anomalous_share
        Share of metrics whose score now reaches ``anomaly.threshold``, in [0, 1].
    p95_shift, p99_shift
        Largest bad-direction move of a metric's p95 (p99) from the baseline to the scored rows, in
        robust standard deviations of the baseline, in [0, 10].
    slo_level_shift
        Largest bad-direction move of an SLO metric's median from the baseline to the scored rows, in
        robust standard deviations of the baseline, in [0, 10]. The detector's adaptive forecast
        absorbs a slow creep within minutes, and a metric that never varied has no z at all; this
        compares levels directly.
    slo_tail_shift
        ``p95_shift`` over the SLO metrics only: a signal's tail (memory, a queue) is not the SLO's.
    correlation_density
        Significant lagged correlations among the metrics, as a share of the ordered pairs, in [0, 1].
    max_abs_r
        Largest |r| of a significant correlation (0 without one), in [0, 1].
    lead_fraction
        Lag of the most probable predicted SLO impact from a signal, as a share of the window (0
        without a prediction), in [0, 1].
    drifted_share
        Share of metrics whose distribution drifted (PSI and KS), in [0, 1].
    coverage
        Share of recent samples present, in [0, 1].
    """

    confidence: float
    slo_score: float
    signal_score: float
    score: float
    breach_probability: float
    max_bad_z: float
    anomalous_share: float
    p95_shift: float
    p99_shift: float
    slo_level_shift: float
    slo_tail_shift: float
    correlation_density: float
    max_abs_r: float
    lead_fraction: float
    drifted_share: float
    coverage: float

    def as_array(self) -> npt.NDArray[np.float32]:
        """The features in :data:`FEATURE_NAMES` order, float32, shape (F,)."""
        return np.asarray(astuple(self), dtype=np.float32)


#: Names of the features, in the order of :meth:`DecisionFeatures.as_array` (the model's input order).
FEATURE_NAMES: Final[tuple[str, ...]] = tuple(f.name for f in fields(DecisionFeatures))
#: The features bounded by [0, :data:`Z_CLIP`]; every other one lies in [0, 1].
Z_FEATURES: Final = frozenset({"max_bad_z", "p95_shift", "p99_shift", "slo_level_shift", "slo_tail_shift"})


def _bounded(x: float, high: float = 1.0) -> float:
    """``x`` clipped to [0, high]; NaN (nothing to measure) is 0."""
    return float(np.clip(x, 0.0, high)) if np.isfinite(x) else (high if x == np.inf else 0.0)


def _robust_scale(base: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Median and robust standard deviation of each row, the latter floored (see SCALE_FLOOR_OF_LEVEL)."""
    median = quiet_nanmedian(base.copy(), axis=1)
    mad = quiet_nanmedian(np.abs(base - median[:, None]), axis=1) * MAD_TO_SIGMA
    return median, np.maximum(mad, SCALE_FLOOR_OF_LEVEL * np.abs(median))


def _scaled_moves(new: FloatArray, old: FloatArray, scale: FloatArray) -> FloatArray:
    """``(new - old) / scale``: no move is 0 (even over a zero scale), a real one over zero is inf."""
    with np.errstate(invalid="ignore", divide="ignore"):
        moved = (new - old) / scale
    return np.where(np.isnan(moved), 0.0, moved)


def level_shift(current: FloatArray, baseline: FloatArray, orient: FloatArray) -> float:
    """Largest bad-direction move of a metric's median from baseline to current, in robust sigmas.

    Shapes and ``orient`` as in :func:`tail_shift`; clipped to [0, :data:`Z_CLIP`], 0 without data.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> base, cur = rng.normal(0, 1, (1, 200)), rng.normal(3, 1, (1, 40))
    >>> round(level_shift(cur, base, np.array([1.0])))
    3
    >>> level_shift(cur, base, np.array([-1.0]))
    0.0
    """
    cur, base = current * orient[:, None], baseline * orient[:, None]
    if base.shape[0] == 0 or base.shape[1] == 0 or cur.shape[1] == 0:
        return 0.0
    median, scale = _robust_scale(base)
    moved = _scaled_moves(quiet_nanmedian(cur.copy(), axis=1), median, scale)
    return _bounded(float(moved.max()), Z_CLIP)


def tail_shift(current: FloatArray, baseline: FloatArray, orient: FloatArray) -> tuple[float, float]:
    """Largest bad-direction shift of p95 and p99 from baseline to current, in robust sigmas.

    Parameters
    ----------
    current, baseline : ndarray, shape (n_metrics, n_current) and (n_metrics, n_baseline)
        Raw values; NaN is missing.
    orient : ndarray, shape (n_metrics,)
        +1 where higher is worse (``objective: max``), -1 where lower is worse: the values are
        multiplied by it, so the bad tail is always the upper one.

    Returns
    -------
    (float, float)
        p95 and p99 shifts, each the maximum over metrics, clipped to [0, :data:`Z_CLIP`]; 0 when no
        metric has data.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> base, cur = rng.normal(0, 1, (1, 200)), rng.normal(0, 1, (1, 40))
    >>> cur[0, :8] += 6.0
    >>> p95, p99 = tail_shift(cur, base, np.array([1.0]))
    >>> bool(p95 > 1.0), bool(p99 > p95)
    (True, True)
    """
    cur, base = current * orient[:, None], baseline * orient[:, None]
    if base.shape[0] == 0 or base.shape[1] == 0 or cur.shape[1] == 0:
        return 0.0, 0.0
    shift = percentile_shift(cur, base)  # quantiles (0.95, 0.99), arrays (2, N)
    _, scale = _robust_scale(base)
    # A zero scale with a real move is "infinitely" far (clipped); no move at all is 0, not NaN.
    best = _scaled_moves(shift.current, shift.baseline, scale[None, :]).max(axis=1)
    return _bounded(float(best[0]), Z_CLIP), _bounded(float(best[1]), Z_CLIP)


def decision_features(
    *,
    confidence: float,
    slo_score: float,
    signal_score: float,
    score: float,
    breach_probability: float,
    coverage: float,
    bad_now: FloatArray,
    metric_scores: FloatArray,
    z_half: float,
    threshold: float,
    orient: FloatArray,
    current: FloatArray,
    baseline: FloatArray,
    correlation: LaggedCorrelation,
    impacts: list[ImpactPrediction],
    is_slo: BoolArray,
    drift: DriftResult,
    window_rows: int,
) -> DecisionFeatures:
    """Gather the features of one decision from what :func:`~ajan.services.assessment.assess` computed.

    Parameters
    ----------
    bad_now : ndarray, shape (n_metrics,)
        Bad-direction z now (>= 0; NaN without data).
    metric_scores : ndarray, shape (n_metrics,)
        Anomaly score now per metric, in [0, 1].
    z_half, threshold
        The policy's ``zHalf`` and ``anomaly.threshold``.
    orient : ndarray, shape (n_metrics,)
        +1 for ``objective: max``, -1 for ``min``.
    current, baseline : ndarray, shape (n_metrics, n_current) and (n_metrics, n_baseline)
        The scored rows and the baseline rows, raw values.
    correlation
        Lagged correlations learnt on the baseline.
    impacts
        Predicted impacts on the SLO metrics; only those from a signal (not an SLO metric) count,
        as for ``breach_probability``.
    is_slo : ndarray of bool, shape (n_metrics,)
        The SLO metrics.
    drift
        Drift of the current rows from the baseline.
    window_rows
        Rows in the policy's window: the unit of ``lead_fraction``.

    Returns
    -------
    DecisionFeatures
    """
    n = bad_now.size
    finite_z = bad_now[np.isfinite(bad_now)]
    max_bad_z = float(finite_z.max()) / z_half if finite_z.size else 0.0
    p95, p99 = tail_shift(current, baseline, orient)
    slo_level = level_shift(current[is_slo], baseline[is_slo], orient[is_slo])
    slo_tail, _ = tail_shift(current[is_slo], baseline[is_slo], orient[is_slo])
    significant = correlation.significant
    pairs = n * (n - 1)
    density = float(significant.sum()) / pairs if pairs else 0.0
    max_abs_r = float(np.nanmax(np.abs(correlation.best_r[significant]))) if significant.any() else 0.0
    from_signals = [p for p in impacts if not is_slo[p.source]]
    lead = 0.0
    if from_signals:
        likeliest = max(from_signals, key=lambda p: p.breach_probability)
        lead = max(likeliest.lag, 0) / max(window_rows, 1)
    return DecisionFeatures(
        confidence=_bounded(confidence),
        slo_score=_bounded(slo_score),
        signal_score=_bounded(signal_score),
        score=_bounded(score),
        breach_probability=_bounded(breach_probability),
        max_bad_z=_bounded(max_bad_z, Z_CLIP),
        anomalous_share=_bounded(float(np.mean(metric_scores >= threshold)) if n else 0.0),
        p95_shift=p95,
        p99_shift=p99,
        slo_level_shift=slo_level,
        slo_tail_shift=slo_tail,
        correlation_density=_bounded(density),
        max_abs_r=_bounded(max_abs_r),
        lead_fraction=_bounded(lead),
        drifted_share=_bounded(float(np.mean(drift.drifted)) if n else 0.0),
        coverage=_bounded(coverage),
    )
