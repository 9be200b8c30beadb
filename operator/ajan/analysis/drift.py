"""Baseline drift: has a metric's distribution moved, as opposed to a point being anomalous?"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from ajan.analysis.robust import FloatArray, quiet_nanmedian, quiet_nanquantile

_PSI_EPS = 1e-4
#: A shift smaller than this share of the baseline's median (or than the absolute floor) is no
#: drift: the same floors under which the anomaly detector treats a change as noise.
REL_SHIFT_FLOOR: Final = 0.01
ABS_SHIFT_FLOOR: Final = 1e-6


@dataclass(frozen=True)
class DriftResult:
    """Per-metric drift of a recent window against the baseline, shape (n_metrics,) each.

    ks_statistic, ks_pvalue: two-sample Kolmogorov-Smirnov (NaN where a side is empty, and, with
        ``tests="candidates"``, where the PSI already rules drift out).
    psi: population stability index over the baseline's deciles.
    shift: Wasserstein-1 distance between the two, in the metric's unit (NaN as the KS fields).
    drifted: ``psi >= psi_threshold``, ``ks_pvalue < alpha`` and a material ``shift``.
    """

    ks_statistic: FloatArray
    ks_pvalue: FloatArray
    psi: FloatArray
    shift: FloatArray
    drifted: NDArray[np.bool_]


def _bin_shares(v: FloatArray, edges: FloatArray) -> FloatArray:
    """Share of ``v`` below, at, and between the (unique, sorted) edges: 2 * len(edges) + 1 bins.

    A value equal to an edge gets a bin of its own: when deciles coincide (an error
    counter that is 0 95 % of the time), "0" and "above 0" must not share a bin,
    or a burst of errors would look like no change at all.
    """
    left = np.searchsorted(edges, v, side="left")
    at_edge = (left < edges.size) & (edges[np.minimum(left, edges.size - 1)] == v)
    return np.bincount(2 * left + at_edge, minlength=2 * edges.size + 1) / v.size


def population_stability_index(current: ArrayLike, baseline: ArrayLike, bins: int = 10) -> FloatArray:
    """PSI of each row of ``current`` against the same row of ``baseline``.

    Bins are the baseline's quantiles, so every bin holds about 1/bins of the
    baseline (values exactly at a quantile that many baseline points share get a
    bin of their own); PSI = sum((c - b) * ln(c / b)) over bin shares. Rule of thumb:
    below 0.1 stable, 0.1-0.2 moderate, above 0.2 a real shift.

    Parameters
    ----------
    current : array_like, shape (n_metrics, n_current)
    baseline : array_like, shape (n_metrics, n_baseline)

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> base = rng.normal(size=(1, 5000))
    >>> bool(population_stability_index(base[:, :1000] + 1.0, base)[0] > 0.2)
    True
    """
    cur = np.atleast_2d(np.asarray(current, dtype=float))
    base = np.atleast_2d(np.asarray(baseline, dtype=float))
    edges = quiet_nanquantile(base, np.linspace(0, 1, bins + 1)[1:-1], axis=1).T  # (N, bins-1)
    out = np.full(cur.shape[0], np.nan)
    for i in range(cur.shape[0]):
        c, b = cur[i][np.isfinite(cur[i])], base[i][np.isfinite(base[i])]
        if c.size == 0 or b.size == 0:
            continue
        e = np.unique(edges[i])
        cb = _bin_shares(c, e)
        bb = _bin_shares(b, e)
        cb, bb = np.maximum(cb, _PSI_EPS), np.maximum(bb, _PSI_EPS)
        out[i] = float(np.sum((cb - bb) * np.log(cb / bb)))
    return out


def detect_drift(
    current: ArrayLike,
    baseline: ArrayLike,
    *,
    bins: int = 10,
    alpha: float = 0.01,
    psi_threshold: float = 0.2,
    rel_floor: float = REL_SHIFT_FLOOR,
    abs_floor: float = ABS_SHIFT_FLOOR,
    tests: Literal["candidates", "all"] = "candidates",
) -> DriftResult:
    """Distribution shift of each metric's recent window against its baseline.

    Both tests must agree: on autocorrelated metrics the KS p-value alone is
    tiny for any long window (its points are not independent), and PSI alone
    has no notion of sample size; PSI sets the effect size that matters, KS
    checks that it is not the noise of a short window. Both are rank tests,
    blind to units: a metric that is flat but for floating-point noise (an
    error ratio computed as 0.002 every time) would look wholly shifted. So the
    distributions must also lie apart, in the metric's unit, by more than
    ``max(abs_floor, rel_floor * |baseline median|)``.

    Parameters
    ----------
    current : array_like, shape (n_metrics, n_current)
    baseline : array_like, shape (n_metrics, n_baseline)
    tests : {"candidates", "all"}
        Where to run the KS test and the Wasserstein distance: only on the metrics whose PSI
        reaches ``psi_threshold`` (the default: the others cannot be drifted, and the two scipy
        calls per metric were 44 % of a healthy evaluation's time, docs/performance.md), or on all.
    """
    if tests not in ("candidates", "all"):
        raise ValueError(f"tests must be 'candidates' or 'all', got {tests!r}")
    cur = np.atleast_2d(np.asarray(current, dtype=float))
    base = np.atleast_2d(np.asarray(baseline, dtype=float))
    n = cur.shape[0]
    ks_stat = np.full(n, np.nan)
    ks_p = np.full(n, np.nan)
    shift = np.full(n, np.nan)
    psi = population_stability_index(cur, base, bins)
    tested = range(n) if tests == "all" else np.flatnonzero(np.nan_to_num(psi) >= psi_threshold).tolist()
    for i in tested:
        c, b = cur[i][np.isfinite(cur[i])], base[i][np.isfinite(base[i])]
        if c.size and b.size:
            shift[i] = float(stats.wasserstein_distance(c, b))
            with warnings.catch_warnings():
                # For tied or long samples scipy's exact p-value does not converge and it falls back
                # to the asymptotic one, as it should; the warning says nothing a user can act on.
                warnings.filterwarnings("ignore", "ks_2samp: Exact calculation unsuccessful", RuntimeWarning)
                res = stats.ks_2samp(c, b)
            ks_stat[i], ks_p[i] = float(res.statistic), float(res.pvalue)
    with np.errstate(invalid="ignore"):
        material = np.nan_to_num(shift) > np.maximum(
            abs_floor, rel_floor * np.abs(np.nan_to_num(quiet_nanmedian(base, axis=1)))
        )
    drifted = (np.nan_to_num(psi) >= psi_threshold) & (np.nan_to_num(ks_p, nan=1.0) < alpha) & material
    return DriftResult(ks_stat, ks_p, psi, shift, drifted)
