"""The canary judged against the stable track in the same window, as Kayenta judges a canary.

A metric's own past is a poor reference for a canary: a load spike or a daily ramp moves the
canary and the stable track alike, and a new canary has no past at all. Given the stable track's
series of the same metric, the canary's *excess over stable* at each time is what is judged,
placed on the stable track's usual level so that it keeps the metric's unit and its threshold:

    judged(t) = canary(t) - stable(t) + median(stable over the baseline)

The two tracks' series are never quite in step: a quantile or a rate over fewer requests (the
canary's) follows a change a few samples later or sooner, and overshoots it differently. With
``lag`` rows of tolerance, stable(t) is the stable track's range over the last ``lag + 1`` rows,
widened on each side by its own width, and the canary's excess is how far it lies outside (0
inside): a spike that reaches both tracks a few samples apart, the canary ahead or behind, leaves no
excess; a canary worse than anything stable did lately, by more than stable moved, does. While
stable is still, the range is its noise and the canary is compared almost row by row.

Before the canary's first sample the stable track was the service, so its own values stand for
the canary's past: a canary worse than stable from its first minute is judged against what the
service did before it existed. Where the stable track has no sample the canary is judged as it
is (a broken stable query must not blind the guard), and a canary silent after its first sample
stays silent (what is missing may be what is wrong).
"""

from __future__ import annotations

import numpy as np

from ajan.analysis.robust import FloatArray, quiet_nanmedian


def against_stable(canary: FloatArray, stable: FloatArray, split: int, lag: int = 0) -> FloatArray:
    """The canary's series as judged against the stable track's.

    Parameters
    ----------
    canary, stable
        The two tracks of each metric on one time grid, shape (n_times, n_metrics), NaN where a
        track has no sample; a stable column without any sample leaves that metric as it is.
    split
        Rows before it are the baseline: the stable track's median there is the level the
        canary's excess is placed on (all of its rows when the baseline has none).
    lag
        Rows by which the tracks may be out of step (0: compared row by row, no widening).

    Returns
    -------
    ndarray, shape (n_times, n_metrics)

    Examples
    --------
    A spike on both tracks cancels; a canary 0.3 worse than stable stays 0.3 above its level:

    >>> stable = np.array([[0.4], [0.4], [0.4], [0.9], [0.4]])
    >>> against_stable(stable.copy(), stable, 3).ravel().tolist()
    [0.4, 0.4, 0.4, 0.4, 0.4]
    >>> canary = np.array([[np.nan], [np.nan], [np.nan], [1.2], [0.7]])
    >>> against_stable(canary, stable, 3).ravel().round(2).tolist()
    [0.4, 0.4, 0.4, 0.7, 0.7]

    The canary one row behind a spike of the stable track is no excess with ``lag=1``:

    >>> late = np.array([[0.4], [0.4], [0.4], [0.4], [0.9]])
    >>> against_stable(late, stable, 3, lag=1).ravel().tolist()
    [0.4, 0.4, 0.4, 0.4, 0.4]
    """
    canary = np.asarray(canary, dtype=np.float64)
    stable = np.asarray(stable, dtype=np.float64)
    if canary.shape != stable.shape:
        raise ValueError(f"canary shaped {canary.shape}, stable {stable.shape}")
    rows = canary.shape[0]
    level = quiet_nanmedian(stable[:split], axis=0) if split > 0 else np.full(canary.shape[1], np.nan)
    level = np.where(np.isfinite(level), level, quiet_nanmedian(stable, axis=0))
    seen = np.isfinite(canary)
    first = np.where(seen.any(axis=0), seen.argmax(axis=0), rows)
    before = np.arange(rows)[:, None] < first[None, :]
    low, high = _recent_range(stable, lag)
    both = seen & np.isfinite(low)
    with np.errstate(invalid="ignore"):
        width = high - low  # how far stable itself moved lately: the canary may overshoot that much
        excess = canary - np.clip(canary, low - width, high + width)
    judged = np.where(both, excess + level, canary)
    judged = np.where(before, stable, judged)
    # A metric with no stable sample at all is judged on its own, past included.
    return np.where(np.isfinite(level)[None, :], judged, canary)


def _recent_range(stable: FloatArray, lag: int) -> tuple[FloatArray, FloatArray]:
    """Each row's lowest and highest stable sample over it and the ``lag`` rows before it (NaN
    where none of them has one), shape (n_times, n_metrics) each."""
    if lag <= 0:
        return stable, stable
    padded = np.concatenate([np.full((lag, stable.shape[1]), np.nan), stable])
    windows = np.lib.stride_tricks.sliding_window_view(padded, lag + 1, axis=0)
    # fmin/fmax skip NaN and give NaN only when the whole window is NaN, without a warning.
    return np.fmin.reduce(windows, axis=-1), np.fmax.reduce(windows, axis=-1)
