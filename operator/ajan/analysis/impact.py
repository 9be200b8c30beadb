"""Cross-metric impact prediction: which metrics an anomaly will reach next, how hard and when."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

from ajan.analysis.correlation import LaggedCorrelation, effective_sample_size

_Z95 = 1.959963984540054


@dataclass(frozen=True)
class ImpactPrediction:
    """Predicted movement of ``target`` caused by the anomaly in ``source``.

    expected_z: predicted z of the target ``lag`` points from now (regression of
        the target's z on the source's, slope r in standardised units).
    low_z, high_z: 95 % prediction interval of that z, combining the noise the
        correlation leaves unexplained (sqrt(1 - r^2)) with the uncertainty of r itself.
    breach_probability: probability that |target z| reaches ``breach_z``.
    """

    target: int
    source: int
    lag: int
    r: float
    expected_z: float
    low_z: float
    high_z: float
    breach_probability: float


def predict_impact(
    z_now: ArrayLike,
    correlation: LaggedCorrelation,
    *,
    anomalous_z: float = 4.0,
    breach_z: float = 4.0,
    targets: Sequence[int] | None = None,
) -> list[ImpactPrediction]:
    """Predict, for every target metric, the effect of the metrics that are anomalous now.

    For each target the candidate sources are the metrics with ``|z_now| >=
    anomalous_z`` that are significantly correlated with it at a lag where the
    source leads (``best_lag >= 0``; lag 0 means "moves together"). The source
    whose prediction has the highest breach probability is reported: one clear,
    explainable reason per target rather than a blend of many.

    Parameters
    ----------
    z_now : array_like, shape (n_metrics,)
        Current per-metric z-scores.
    correlation : LaggedCorrelation
        From :func:`ajan.analysis.correlation.lagged_correlation` on normal history.
    anomalous_z, breach_z : float
        |z| that makes a source count, and |z| that counts as a breach of the target.
    targets : sequence of int, optional
        Metrics to predict (e.g. the SLO metrics); all others than the sources by default.

    Returns
    -------
    list of ImpactPrediction
        Most likely breach first; targets with no credible source are absent.

    Examples
    --------
    >>> from ajan.analysis.correlation import lagged_correlation
    >>> rng = np.random.default_rng(0)
    >>> cpu = rng.normal(size=600); latency = np.roll(cpu, 5) * 0.9 + 0.3 * rng.normal(size=600)
    >>> corr = lagged_correlation(np.vstack([cpu, latency]), max_lag=10)
    >>> [p.lag for p in predict_impact([8.0, 0.1], corr)]
    [5]
    """
    z = np.nan_to_num(np.asarray(z_now, dtype=float), nan=0.0)
    n = z.shape[0]
    sources = np.flatnonzero(np.abs(z) >= anomalous_z)
    wanted = [j for j in range(n) if j not in set(sources.tolist())] if targets is None else targets
    out: list[ImpactPrediction] = []
    for j in wanted:
        best: ImpactPrediction | None = None
        for i in sources:
            if i == j or not correlation.significant[i, j] or correlation.best_lag[i, j] < 0:
                continue
            r = float(correlation.best_r[i, j])
            lag = int(correlation.best_lag[i, j])
            k = int(np.flatnonzero(correlation.lags == lag)[0])
            n_eff = float(effective_sample_size(correlation.n[k, i, j], 0.0, 0.0))
            pred = _predict(float(z[i]), r, n_eff, breach_z)
            cand = ImpactPrediction(int(j), int(i), lag, r, *pred)
            if best is None or cand.breach_probability > best.breach_probability:
                best = cand
        if best is not None:
            out.append(best)
    out.sort(key=lambda p: -p.breach_probability)
    return out


def _predict(z_source: float, r: float, n_eff: float, breach_z: float) -> tuple[float, float, float, float]:
    mean = r * z_source
    # Var of r from Fisher's z (delta method), carried through the slope.
    se_r = (1.0 - r * r) / np.sqrt(max(n_eff - 3.0, 1.0))
    sd = float(np.sqrt(max(1.0 - r * r, 1e-6) + (se_r * z_source) ** 2))
    low, high = mean - _Z95 * sd, mean + _Z95 * sd
    p_breach = float(special.ndtr((mean - breach_z) / sd) + special.ndtr((-breach_z - mean) / sd))
    return mean, low, high, min(p_breach, 1.0)
