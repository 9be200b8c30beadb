"""Robust location, scale and z-scores.

Everything here is a pure function over numpy arrays. Time runs along ``axis``
(default ``-1``, i.e. arrays shaped ``(n_metrics, n_times)``); every other axis
is an independent series.
"""

from __future__ import annotations

import itertools
import os
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

#: Consistency constants: for normal data, MAD * 1.4826 and IQR / 1.349 estimate sigma.
MAD_TO_SIGMA: Final = 1.482602218505602
IQR_TO_SIGMA: Final = 1.3489795003921634
#: Samples whose median is "now": one outlying sample alone is never a state (beyond a bound, anomalous).
NOW_ROWS: Final = 3
#: A metric's scale is never taken below this share of its level: the smallest move an SLO is written
#: in (99.9 %, a tenth of a percent). A metric that sat perfectly still does not turn a rounding
#: wiggle into an infinite z, while an availability that leaves a constant 100 by a few points is as
#: surprising as the same failures seen as an error ratio rising from a constant 0.
SCALE_FLOOR_OF_LEVEL: Final = 1e-3

ScaleMethod = Literal["mad", "iqr"]

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class LocationScale:
    """Robust location and scale of each series; both have the input's shape minus ``axis``."""

    location: FloatArray
    scale: FloatArray


def _sorted_quantile(a: FloatArray, q: FloatArray, axis: int) -> FloatArray:
    """NaN-ignoring quantiles (numpy's default linear interpolation) by one vectorised sort.

    ``np.nanmedian`` falls back to a Python-level loop per row once any NaN is
    present, which is 20x slower on the (n_series, n_times) blocks used here.
    """
    b = np.sort(np.moveaxis(a, axis, -1), axis=-1)  # NaN sorts last
    count = np.sum(~np.isnan(b), axis=-1)
    pos = q.reshape((-1,) + (1,) * count.ndim) * np.maximum(count - 1, 0)
    lo = np.floor(pos).astype(np.intp)
    hi = np.minimum(lo + 1, np.maximum(count - 1, 0))
    frac = pos - lo
    b_lo = np.take_along_axis(b[None], lo[..., None], axis=-1)[..., 0]
    b_hi = np.take_along_axis(b[None], hi[..., None], axis=-1)[..., 0]
    out = b_lo + (b_hi - b_lo) * frac
    return np.where(count > 0, out, np.nan)


#: Values per stack of trailing windows estimated at once (32 MB of float64).
STACK_ELEMENTS: Final = 1 << 22
#: Below this many values a thread pool costs more than it saves.
PARALLEL_MIN_SIZE: Final = 1 << 21


def by_row_chunks(fn: Callable[..., FloatArray], *arrays: FloatArray) -> FloatArray:
    """``fn(*arrays)`` computed on row chunks in parallel threads, results stacked by row.

    numpy's selection, sorting and elementwise kernels release the GIL, so on a
    large (n_series, n_times) block two threads run about twice as fast as one.
    Small inputs run directly. ``fn`` must work row by row (no mixing of rows).
    """
    workers = min(os.cpu_count() or 1, 8)
    rows = arrays[0].shape[0]
    if workers < 2 or arrays[0].size < PARALLEL_MIN_SIZE or rows < workers:
        return fn(*arrays)
    bounds = np.linspace(0, rows, workers + 1).astype(int)
    chunks = [tuple(a[lo:hi] for a in arrays) for lo, hi in itertools.pairwise(bounds)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        parts = list(pool.map(lambda c: fn(*c), chunks))
    return np.concatenate(parts, axis=0)


def quiet_nanmedian(a: FloatArray, axis: int, overwrite_input: bool = False) -> FloatArray:
    """``np.nanmedian`` without the "All-NaN slice" warning: an all-NaN slice simply gives NaN.

    With ``overwrite_input`` the caller's array may be reordered (saves a copy).
    """
    if not np.isnan(a).any():
        return np.asarray(np.median(a, axis=axis, overwrite_input=overwrite_input), dtype=float)
    return _sorted_quantile(a, np.array([0.5]), axis)[0]


def quiet_nanquantile(a: FloatArray, q: ArrayLike, axis: int) -> FloatArray:
    """``np.nanquantile`` without warnings on all-NaN slices; quantiles lead the output shape."""
    qa = np.asarray(q, dtype=np.float64)
    if not np.isnan(a).any():
        return np.asarray(np.quantile(a, qa, axis=axis), dtype=np.float64)
    out = _sorted_quantile(a, qa.reshape(-1), axis)
    return out.reshape(qa.shape + out.shape[1:])


def robust_location_scale(
    baseline: ArrayLike,
    *,
    axis: int = -1,
    method: ScaleMethod = "mad",
    min_scale: float | ArrayLike = 0.0,
) -> LocationScale:
    """Median and a robust standard-deviation estimate of each series, ignoring NaN.

    Parameters
    ----------
    baseline : array_like
        Normal history, time along ``axis``.
    method : {"mad", "iqr"}
        ``"mad"``: 1.4826 x median absolute deviation; ``"iqr"``: IQR / 1.349.
    min_scale : float or array_like
        Lower bound on the scale, in the data's units.

    Returns
    -------
    LocationScale
        A series whose chosen estimate is zero (over half its points equal, as with
        counters that sit at 0) falls back to the other robust estimate, then to the
        standard deviation, then to ``min_scale``; a series with no finite value gets NaN.

    Examples
    --------
    >>> ls = robust_location_scale([[1.0, 2.0, 3.0, 4.0, 100.0]])
    >>> float(ls.location[0]), round(float(ls.scale[0]), 3)
    (3.0, 1.483)
    """
    moved = np.moveaxis(np.asarray(baseline, dtype=float), axis, -1)
    shape = moved.shape[:-1]
    b = moved.reshape(-1, moved.shape[-1])  # 2-D inside, so that row masks work for 1-D input too
    loc = quiet_nanmedian(b, axis=-1)
    deviation = np.abs(b - loc[..., None])
    # The deviations are ours to reorder: select in place rather than copy 10^7 values again.
    mad = quiet_nanmedian(deviation, axis=-1, overwrite_input=True) * MAD_TO_SIGMA
    if method == "mad":
        scale = mad
        flat = ~(mad > 0)
        # The IQR is only the fallback here: compute it just for the series that need it.
        if flat.any():
            q25, q75 = quiet_nanquantile(b[flat], [0.25, 0.75], axis=-1)
            scale = mad.copy()
            scale[flat] = (q75 - q25) / IQR_TO_SIGMA
    else:
        q25, q75 = quiet_nanquantile(b, [0.25, 0.75], axis=-1)
        iqr = (q75 - q25) / IQR_TO_SIGMA
        scale = np.where(iqr > 0, iqr, mad)
    still = ~(scale > 0) & np.isfinite(loc)
    if still.any():
        # Only for the series that need it: on trailing windows this was a tenth of an evaluation.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            std = np.nanstd(b[still], axis=-1)
        # A constant series of an inexact value (0.1 * 7) has a std of ~1e-17, not 0.
        tiny = ~(std > 1e-12 * np.maximum(np.abs(loc[still]), 1e-300)) & ~np.isnan(std)
        scale = scale.copy()
        scale[still] = np.where(tiny, 0.0, std)
    floor = np.asarray(min_scale, dtype=float)
    # A per-series floor arrives shaped like the series (or (N, 1)); rows are flattened above.
    scale = np.maximum(scale, floor.reshape(-1) if floor.ndim else floor)
    return LocationScale(location=loc.reshape(shape), scale=scale.reshape(shape))


def robust_zscore(
    x: ArrayLike,
    baseline: ArrayLike | None = None,
    *,
    axis: int = -1,
    method: ScaleMethod = "mad",
    min_scale: float | ArrayLike = 0.0,
) -> FloatArray:
    """Robust z-score ``(x - median) / robust_scale`` of each point against a baseline.

    Parameters
    ----------
    x : array_like
        Values to score, time along ``axis``, e.g. shape (n_metrics, n_times).
    baseline : array_like, optional
        Normal history with the same shape except along ``axis``. When omitted,
        ``x`` is its own baseline, which is *not* causal: use
        :func:`ajan.analysis.anomaly.residual_zscore` for online scoring.
    method, min_scale
        See :func:`robust_location_scale`.

    Returns
    -------
    ndarray
        Same shape as ``x``. NaN where ``x`` is NaN, where the baseline has no data,
        or where the baseline is constant and ``min_scale`` is 0 (no scale, no score).

    Examples
    --------
    >>> robust_zscore([[10.0, 13.0]], baseline=[[9.0, 10.0, 11.0]]).round(2).tolist()
    [[0.0, 2.02]]
    """
    xs = np.asarray(x, dtype=float)
    bs = xs if baseline is None else np.asarray(baseline, dtype=float)
    if xs.ndim == 2 and axis in (-1, 1) and np.ndim(min_scale) == 0:
        floor = float(np.asarray(min_scale))
        return by_row_chunks(lambda xc, bc: _zscore_rows(xc, bc, method, floor), xs, bs)
    return np.moveaxis(
        _zscore_rows(np.moveaxis(xs, axis, -1), np.moveaxis(bs, axis, -1), method, min_scale), -1, axis
    )


def _zscore_rows(
    x: FloatArray, baseline: FloatArray, method: ScaleMethod, min_scale: float | ArrayLike
) -> FloatArray:
    ls = robust_location_scale(baseline, axis=-1, method=method, min_scale=min_scale)
    scale = np.where(ls.scale > 0, ls.scale, np.nan)[..., None]
    z = x - ls.location[..., None]
    with np.errstate(invalid="ignore", divide="ignore"):
        z /= scale
    return z


def block_starts(n_times: int, refresh: int, min_periods: int) -> list[int]:
    """Start indices of the blocks over which a trailing estimate is held constant.

    Steps of ``refresh`` points once history is long; while it is short the step is
    a quarter of the history so far (at least 1), so that a short series is not
    left unscored for a whole ``refresh`` after ``min_periods`` points exist.
    """
    starts, s = [], 0
    while s < n_times:
        starts.append(s)
        s += max(1, min(int(refresh), max(s, int(min_periods)) // 4))
    return starts


def trailing_location_scale(
    x: ArrayLike,
    *,
    window: int,
    refresh: int,
    min_periods: int,
    method: ScaleMethod = "mad",
    min_scale: float | ArrayLike = 0.0,
) -> LocationScale:
    """Causal robust location and scale of each series over a trailing window.

    The estimate used at time ``t`` is computed from ``x[..., max(0, s - window):s]``
    where ``s`` is the last of :func:`block_starts` at or before ``t``: strictly past
    data, re-estimated every ``refresh`` points (more often while history is short)
    so that the cost is O(T / refresh * window) instead of O(T * window).

    Parameters
    ----------
    x : array_like, shape (n_series, n_times)
    window, refresh, min_periods : int
        Trailing window length, re-estimation period and the minimum number of
        finite points for an estimate (NaN before that), all in points.

    Returns
    -------
    LocationScale
        ``location`` and ``scale`` of shape (n_series, n_times).
    """
    xs = np.asarray(x, dtype=float)
    n, t = xs.shape
    loc = np.full((n, t), np.nan)
    scale = np.full((n, t), np.nan)
    starts = np.asarray(block_starts(t, refresh, min_periods), dtype=np.intp)
    stops = np.append(starts[1:], t)
    # Blocks with too short a history stay NaN.
    keep = np.minimum(starts, window) >= min_periods
    starts, stops = starts[keep], stops[keep]
    if starts.size == 0:
        return LocationScale(location=loc, scale=scale)
    floor = np.asarray(min_scale, dtype=float)
    # Every block's trailing window is a row of one (n, k, window) stack, NaN-padded on the left
    # while history is shorter than the window: one vectorised estimate per stack instead of a
    # Python-level call per block, which was most of an evaluation's time.
    padded = np.concatenate([np.full((n, window), np.nan), xs], axis=1)
    views = np.lib.stride_tricks.sliding_window_view(padded, window, axis=1)  # [:, s] = x[:, s-window:s]
    per_stack = max(1, STACK_ELEMENTS // max(1, n * window))
    for lo in range(0, starts.size, per_stack):
        first, last = starts[lo : lo + per_stack], stops[lo : lo + per_stack]
        hist = views[:, first, :]  # (n, k, window), a copy
        series_floor = np.broadcast_to(floor.reshape(-1, 1) if floor.ndim else floor, (n, first.size))
        ls = robust_location_scale(hist, axis=-1, method=method, min_scale=series_floor)
        enough = np.sum(np.isfinite(hist), axis=-1) >= min_periods
        lengths = last - first
        span = slice(int(first[0]), int(last[-1]))
        loc[:, span] = np.repeat(np.where(enough, ls.location, np.nan), lengths, axis=1)
        scale[:, span] = np.repeat(np.where(enough, ls.scale, np.nan), lengths, axis=1)
    return LocationScale(location=loc, scale=scale)
