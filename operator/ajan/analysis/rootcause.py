"""Root-cause ranking: which metrics most likely explain an anomalous interval."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ajan.analysis.anomaly import DEFAULT_Z_HALF
from ajan.analysis.robust import FloatArray, quiet_nanquantile


@dataclass(frozen=True)
class RootCauseRanking:
    """Per-metric responsibility for an interval.

    score: responsibility in [0, 1), shape (n_metrics,); higher = more likely the cause.
    magnitude: the ``quantile`` of the metric's |z| inside the interval (the max by default).
    onset: first index (absolute, into the input) at which the metric crossed
        ``onset_z`` inside the interval, or -1 if it never did.
    order: metric indices, most responsible first.
    """

    score: FloatArray
    magnitude: FloatArray
    onset: NDArray[np.int64]
    order: NDArray[np.int64]


def rank_root_causes(
    z: ArrayLike,
    start: int,
    end: int,
    *,
    onset_z: float = DEFAULT_Z_HALF / 2,
    onset_weight: float = 0.2,
    quantile: float = 1.0,
    z_half: float = DEFAULT_Z_HALF,
) -> RootCauseRanking:
    """Rank metrics by how likely each is responsible for the anomaly in ``[start, end)``.

    The evidence is the metric's own deviation during the interval, discounted
    by how late the metric joined in: in a cascading failure the cause moves
    first and the symptoms follow, so among equally deviant metrics the earlier
    one ranks higher. The deviation is the largest calibrated |z| in the
    interval by default: on SMD's labelled root causes (docs/accuracy.md) the
    maximum ranks better than the upper quartile or the mean, because a
    responsible metric is often off for only part of the segment; the z-scores
    are already calibrated, so a routinely spiky metric's maximum is not inflated.

    Parameters
    ----------
    z : array_like, shape (n_metrics, n_times)
        Per-metric z-scores (NaN = no data).
    start, end : int
        The interval, ``end`` exclusive, ``0 <= start < end <= n_times``.

    Examples
    --------
    >>> z = np.zeros((3, 50)); z[1, 20:40] = 9.0; z[2, 25:40] = 9.0; z[0, 30:40] = 3.0
    >>> rank_root_causes(z, 20, 40).order.tolist()
    [1, 2, 0]
    """
    zs = np.abs(np.asarray(z, dtype=float))
    if zs.ndim != 2:
        raise ValueError(f"z must be shaped (n_metrics, n_times), got {zs.shape}")
    n, t = zs.shape
    if not 0 <= start < end <= t:
        raise ValueError(f"need 0 <= start < end <= {t}, got start={start}, end={end}")
    window = zs[:, start:end]
    magnitude = np.nan_to_num(quiet_nanquantile(window, quantile, axis=1), nan=0.0)
    crossed = np.nan_to_num(window, nan=0.0) >= onset_z
    first = np.where(crossed.any(axis=1), np.argmax(crossed, axis=1), -1)
    length = end - start
    earliness = np.where(first >= 0, 1.0 - first / max(length, 1), 0.0)
    evidence = magnitude * ((1.0 - onset_weight) + onset_weight * earliness)
    # evidence / (evidence + z_half): 0.5 at z_half and, unlike a Gaussian-tail map,
    # far from saturated at |z| of 20 or 30, so strong candidates keep distinct scores.
    score = evidence / (evidence + z_half)
    order = np.lexsort((np.arange(n), -evidence))
    onset = np.where(first >= 0, first + start, -1).astype(np.int64)
    return RootCauseRanking(score, magnitude, onset, order.astype(np.int64))
