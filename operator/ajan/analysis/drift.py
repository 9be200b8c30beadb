"""Baseline drift: has a metric's distribution moved, as opposed to a point being anomalous?"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from ajan.analysis.robust import FloatArray, quiet_nanquantile

_PSI_EPS = 1e-4


@dataclass(frozen=True)
class DriftResult:
    """Per-metric drift of a recent window against the baseline, shape (n_metrics,) each.

    ks_statistic, ks_pvalue: two-sample Kolmogorov-Smirnov (NaN where a side is empty).
    psi: population stability index over the baseline's deciles.
    drifted: ``psi >= psi_threshold`` and ``ks_pvalue < alpha``.
    """

    ks_statistic: FloatArray
    ks_pvalue: FloatArray
    psi: FloatArray
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
) -> DriftResult:
    """Distribution shift of each metric's recent window against its baseline.

    Both tests must agree: on autocorrelated metrics the KS p-value alone is
    tiny for any long window (its points are not independent), and PSI alone
    has no notion of sample size; PSI sets the effect size that matters, KS
    checks that it is not the noise of a short window.

    Parameters
    ----------
    current : array_like, shape (n_metrics, n_current)
    baseline : array_like, shape (n_metrics, n_baseline)
    """
    cur = np.atleast_2d(np.asarray(current, dtype=float))
    base = np.atleast_2d(np.asarray(baseline, dtype=float))
    n = cur.shape[0]
    ks_stat = np.full(n, np.nan)
    ks_p = np.full(n, np.nan)
    for i in range(n):
        c, b = cur[i][np.isfinite(cur[i])], base[i][np.isfinite(base[i])]
        if c.size and b.size:
            res = stats.ks_2samp(c, b)
            ks_stat[i], ks_p[i] = float(res.statistic), float(res.pvalue)
    psi = population_stability_index(cur, base, bins)
    drifted = (np.nan_to_num(psi) >= psi_threshold) & (np.nan_to_num(ks_p, nan=1.0) < alpha)
    return DriftResult(ks_stat, ks_p, psi, drifted)
