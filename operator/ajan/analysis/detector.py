"""End-to-end detector used by ``ajan detect`` and ``ajan rank``: placeholder, being written."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class DetectionResult:
    """Per-row output of the detector.

    score: aggregated anomaly score in [0, 1], shape (T,).
    alert: 0/1 alert decision, shape (T,).
    metric_scores: per-metric anomaly score in [0, 1], shape (T, N).
    """

    score: NDArray[np.float64]
    alert: NDArray[np.bool_]
    metric_scores: NDArray[np.float64]


def detect(values: NDArray[np.float64], baseline: NDArray[np.float64] | None = None) -> DetectionResult:
    """Score every row of ``values`` (shape (T, N)) causally, optionally against a normal ``baseline`` (Tb, N)."""
    x = np.asarray(values, dtype=float)
    ref = x if baseline is None else np.asarray(baseline, dtype=float)
    med = np.nanmedian(ref, axis=0)
    mad = np.nanmedian(np.abs(ref - med), axis=0) * 1.4826
    z = np.abs(x - med) / np.where(mad > 0, mad, 1.0)
    ms = 1.0 - np.exp(-np.nan_to_num(z) / 6.0)
    score = ms.max(axis=1)
    return DetectionResult(score=score, alert=score >= 0.5, metric_scores=ms)


def rank_metrics(
    values: NDArray[np.float64], start: int, end: int, baseline: NDArray[np.float64] | None = None
) -> NDArray[np.float64]:
    """Responsibility score per metric (shape (N,)) for the anomalous rows ``values[start:end]``; higher is more likely the cause."""
    res = detect(values, baseline)
    return res.metric_scores[start:end].mean(axis=0)
