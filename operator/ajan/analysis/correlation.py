"""Correlation engine: Pearson and Spearman matrices with a lag search and honest significance.

Inputs are shaped ``(n_metrics, n_times)`` and sampled on a common grid; NaN
marks a missing sample. Lag ``l`` pairs ``x_i[t]`` with ``x_j[t + l]``: a
positive best lag for (i, j) means metric i leads metric j.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special, stats

from ajan.analysis.robust import FloatArray

Method = Literal["pearson", "spearman"]


@dataclass(frozen=True)
class LaggedCorrelation:
    """Result of :func:`lagged_correlation`.

    lags: signed lags, shape (2 * max_lag + 1,), ordered 0, 1, -1, 2, -2, ...
    r: correlation at each signed lag, shape (n_lags, N, N); ``r[k, i, j]`` pairs
        ``x_i[t]`` with ``x_j[t + lags[k]]``. NaN where undefined (constant series,
        fewer than 3 overlapping points).
    n: overlapping points per lag and pair, shape (n_lags, N, N).
    best_r, best_lag: the strongest correlation over lags and its lag, shape (N, N);
        ``best_lag[i, j] > 0``: i leads j.
    pvalue: two-sided p-value of ``best_r``, corrected for autocorrelation
        (effective sample size) and for the lag search (Bonferroni over lags).
    significant: ``pvalue < alpha`` and ``|best_r| >= min_abs_r``, diagonal excluded.
    """

    lags: NDArray[np.int64]
    r: FloatArray
    n: FloatArray
    best_r: FloatArray
    best_lag: NDArray[np.int64]
    pvalue: FloatArray
    significant: NDArray[np.bool_]


def _as_2d(x: ArrayLike) -> FloatArray:
    a = np.asarray(x, dtype=float)
    if a.ndim != 2:
        raise ValueError(f"expected shape (n_metrics, n_times), got {a.shape}")
    return a


def _rank_rows(x: FloatArray) -> FloatArray:
    """Average ranks (1-based, ties share their mean rank) along each row; NaN stays NaN.

    One argsort for the whole matrix: ``scipy.stats.rankdata(axis=1)`` costs twice as
    much on 200 x 1,440, where ranking is a third of a lagged Spearman matrix.
    """
    if np.isnan(x).any():
        return np.asarray(stats.rankdata(x, axis=1, nan_policy="omit"), dtype=float)
    n_rows, t = x.shape
    order = np.argsort(x, axis=1, kind="stable")
    s = np.take_along_axis(x, order, axis=1)
    pos = np.broadcast_to(np.arange(t), (n_rows, t))
    starts = np.ones((n_rows, t), dtype=bool)
    starts[:, 1:] = s[:, 1:] != s[:, :-1]
    first = np.maximum.accumulate(np.where(starts, pos, 0), axis=1)
    ends = np.ones((n_rows, t), dtype=bool)
    ends[:, :-1] = starts[:, 1:]
    # Reversed, a group's last element is its first: the same scan from the right.
    last = (t - 1) - np.maximum.accumulate(np.where(ends[:, ::-1], pos, 0), axis=1)[:, ::-1]
    ranks = np.empty_like(x)
    np.put_along_axis(ranks, order, (first + last) / 2.0 + 1.0, axis=1)
    return ranks


def _pearson_lagged_dense(x: FloatArray, max_lag: int) -> FloatArray:
    """Pearson matrices of gap-free rows at lags 0..max_lag, one matrix product per lag.

    Each row is standardised once over the whole series; the sums of a lagged
    slice are then the full sums minus its few dropped end columns, so no lag
    re-centres the data. The standardisation keeps the corrections small, so
    the subtraction stays well conditioned even for metrics like memory bytes.
    """
    n_rows, t = x.shape
    mean = x.mean(axis=1, keepdims=True)
    std = x.std(axis=1, keepdims=True)
    z = (x - mean) / np.where(std > 0, std, 1.0)
    total, total_sq = z.sum(axis=1), np.einsum("ij,ij->i", z, z)
    out = np.empty((max_lag + 1, n_rows, n_rows))
    head_s, head_q = total.copy(), total_sq.copy()  # sums over z[:, :t-lag]
    tail_s, tail_q = total.copy(), total_sq.copy()  # sums over z[:, lag:]
    for lag in range(max_lag + 1):
        if lag:
            gone_head, gone_tail = z[:, t - lag], z[:, lag - 1]
            head_s -= gone_head
            head_q -= gone_head * gone_head
            tail_s -= gone_tail
            tail_q -= gone_tail * gone_tail
        n = t - lag
        cross = z[:, : t - lag] @ z[:, lag:].T
        cov = cross - np.outer(head_s, tail_s) / n
        var_a = np.maximum(head_q - head_s * head_s / n, 0.0)
        var_b = np.maximum(tail_q - tail_s * tail_s / n, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            denom = np.sqrt(np.outer(var_a, var_b))
            # A row that is constant over the slice has no correlation (NaN), not 0/0 noise.
            flat = (var_a <= 1e-12 * n)[:, None] | (var_b <= 1e-12 * n)[None, :]
            out[lag] = np.where(flat, np.nan, np.clip(cov / denom, -1.0, 1.0))
    out[:, (std[:, 0] == 0), :] = np.nan
    out[:, :, (std[:, 0] == 0)] = np.nan
    return out


def _centre_where(x: FloatArray, mask: NDArray[np.bool_]) -> FloatArray:
    """Each row minus its mean over ``mask``, and 0 outside the mask.

    Row means by hand rather than ``np.nanmean``, which warns on a row with no point.
    """
    kept = np.where(mask, x, 0.0)
    mean = kept.sum(axis=1, keepdims=True) / np.maximum(mask.sum(axis=1, keepdims=True), 1)
    return np.where(mask, kept - mean, 0.0)


def _pearson_pairwise(a: FloatArray, b: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Pairwise-complete Pearson matrix (and pair counts) of two blocks with NaN gaps.

    Six matrix products give every pair's sums over the points both have, the
    vectorised form of pandas' pairwise ``corr``.
    """
    ma, mb = np.isfinite(a).astype(float), np.isfinite(b).astype(float)
    # Centring first keeps the sums small and the subtraction below well conditioned
    # (row means by hand: np.nanmean warns on an all-NaN row).
    a0, b0 = _centre_where(a, ma > 0), _centre_where(b, mb > 0)
    n = ma @ mb.T
    sa, sb = a0 @ mb.T, ma @ b0.T
    saa, sbb = (a0 * a0) @ mb.T, ma @ (b0 * b0).T
    sab = a0 @ b0.T
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = sab - sa * sb / n
        va = saa - sa * sa / n
        vb = sbb - sb * sb / n
        denom = np.sqrt(va * vb)
        r = np.where((n >= 3) & (denom > 1e-12 * (np.abs(saa) + np.abs(sbb) + 1e-300)), cov / denom, np.nan)
    return np.clip(r, -1.0, 1.0), n


def _spearman_lagged_exact(x: FloatArray, ranks: FloatArray, max_lag: int) -> FloatArray:
    """Spearman matrices of gap-free rows at lags 0..max_lag, each slice ranked exactly.

    The ranks within a lagged slice are the full-series ranks minus a correction
    for the columns the lag drops, accumulated lag by lag; average ranks of n
    points always sum to n (n + 1) / 2, so the centring needs no pass over the data.
    """
    n_rows, t = x.shape
    out = np.empty((max_lag + 1, n_rows, n_rows))
    centred = ranks - (t + 1) / 2.0
    # head/tail hold, per point, (rank drop from the columns the lag removed) minus
    # lag / 2, the fall of the mean rank: each removed value d adds 0.5 * sign(x - d).
    head, tail = np.zeros_like(x), np.zeros_like(x)
    a_buf, b_buf, step = np.empty_like(x), np.empty_like(x), np.empty_like(x)
    for lag in range(max_lag + 1):
        n = t - lag
        if lag:
            _add_half_sign(head, x, x[:, n : n + 1], step)
            _add_half_sign(tail, x, x[:, lag - 1 : lag], step)
        a, b = a_buf[:, :n], b_buf[:, :n]
        np.subtract(centred[:, :n], head[:, :n], out=a)
        np.subtract(centred[:, lag:], tail[:, lag:], out=b)
        na = np.sqrt(np.einsum("ij,ij->i", a, a))
        nb = np.sqrt(np.einsum("ij,ij->i", b, b))
        with np.errstate(invalid="ignore", divide="ignore"):
            r = (a @ b.T) / np.outer(na, nb)
        out[lag] = np.where(np.outer(na > 0, nb > 0), np.clip(r, -1.0, 1.0), np.nan)
    return out


def _add_half_sign(acc: FloatArray, x: FloatArray, dropped: FloatArray, scratch: FloatArray) -> None:
    """``acc += 0.5 * sign(x - dropped)`` without temporaries (``dropped`` has shape (N, 1))."""
    np.subtract(x, dropped, out=scratch)
    np.sign(scratch, out=scratch)
    scratch *= 0.5
    acc += scratch


def lag1_autocorrelation(x: ArrayLike) -> FloatArray:
    """Lag-1 autocorrelation of each row (NaN-aware; 0 for constant or too-short rows)."""
    xs = _as_2d(x)
    if xs.shape[1] < 3:
        return np.zeros(xs.shape[0])
    a, b = xs[:, :-1], xs[:, 1:]
    both = np.isfinite(a) & np.isfinite(b)
    n = both.sum(axis=1)
    a0, b0 = _centre_where(a, both), _centre_where(b, both)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.einsum("ij,ij->i", a0, b0) / np.sqrt(
            np.einsum("ij,ij->i", a0, a0) * np.einsum("ij,ij->i", b0, b0)
        )
    return np.where((n >= 3) & np.isfinite(r), np.clip(r, -1.0, 1.0), 0.0)


def effective_sample_size(n: ArrayLike, rho_a: ArrayLike, rho_b: ArrayLike) -> FloatArray:
    """Effective number of independent pairs for two AR(1)-like series (Bretherton et al., 1999).

    ``n * (1 - rho_a * rho_b) / (1 + rho_a * rho_b)``: two smooth series (lag-1
    autocorrelation near 1) share far fewer independent points than they have
    samples, which is why random walks look strongly correlated. Negative
    products are clipped to 0 so that the correction never inflates ``n``.
    """
    prod = np.clip(np.multiply(rho_a, rho_b), 0.0, 0.999)
    return np.asarray(n, dtype=float) * (1.0 - prod) / (1.0 + prod)


def correlation_pvalue(r: ArrayLike, n_eff: ArrayLike) -> FloatArray:
    """Two-sided p-value of a correlation by Fisher's z with ``n_eff`` points (NaN r -> 1)."""
    rr = np.clip(np.nan_to_num(np.asarray(r, dtype=float), nan=0.0), -0.999999, 0.999999)
    ne = np.asarray(n_eff, dtype=float)
    with np.errstate(invalid="ignore"):
        zstat = np.abs(np.arctanh(rr)) * np.sqrt(np.maximum(ne - 3.0, 0.0))
    return np.asarray(np.where(ne > 3, 2.0 * special.ndtr(-zstat), 1.0), dtype=float)


def lagged_correlation(
    x: ArrayLike,
    *,
    max_lag: int = 0,
    method: Method = "pearson",
    alpha: float = 0.01,
    min_abs_r: float = 0.0,
) -> LaggedCorrelation:
    """Correlation matrices of N metrics at lags ``-max_lag .. max_lag``, with significance.

    Parameters
    ----------
    x : array_like, shape (n_metrics, n_times)
        Metrics on a common time grid; NaN gaps are handled pairwise.
    max_lag : int
        Largest lag searched, in points.
    method : {"pearson", "spearman"}
        Spearman is Pearson on ranks. Without gaps each lagged window is ranked
        exactly (the ranks of the full series, corrected for the points the lag
        drops); with gaps the full-series ranks are used, a close approximation.
    alpha : float
        Significance level after the corrections described in :class:`LaggedCorrelation`.
    min_abs_r : float
        Smallest |r| reported as significant, however small its p-value.

    Returns
    -------
    LaggedCorrelation

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> a = rng.normal(size=500)
    >>> b = np.roll(a, 3) + 0.3 * rng.normal(size=500)  # b follows a by 3 points
    >>> res = lagged_correlation(np.vstack([a, b]), max_lag=5)
    >>> int(res.best_lag[0, 1]), bool(res.significant[0, 1])
    (3, True)
    """
    xs = _as_2d(x)
    n_metrics, t = xs.shape
    if max_lag < 0 or max_lag > t - 3:
        raise ValueError(f"max_lag must be in [0, {max(t - 3, 0)}], got {max_lag}")
    gaps = bool(np.isnan(xs).any())
    values = _rank_rows(xs) if method == "spearman" else xs
    pos = np.empty((max_lag + 1, n_metrics, n_metrics))
    counts = np.empty_like(pos) if gaps else pos
    if gaps:
        for lag in range(max_lag + 1):
            pos[lag], counts[lag] = _pearson_pairwise(values[:, : t - lag], values[:, lag:])
    else:
        pos[:] = (
            _pearson_lagged_dense(xs, max_lag)
            if method == "pearson"
            else _spearman_lagged_exact(xs, values, max_lag)
        )
    # Signed lags in the order 0, 1, -1, 2, -2, ... so that argmax breaks ties towards short lags.
    lags = np.array([0] + [s * k for k in range(1, max_lag + 1) for s in (1, -1)], dtype=np.int64)
    r = np.stack([pos[k] if k >= 0 else pos[-k].T for k in lags])
    if gaps:
        n = np.stack([counts[k] if k >= 0 else counts[-k].T for k in lags])
    else:  # every pair shares all t - |lag| points: a broadcast view, not 21 N x N copies
        n = np.broadcast_to((t - np.abs(lags)).astype(float)[:, None, None], r.shape)
    strength = np.abs(r)
    strength[np.isnan(strength)] = -1.0
    best = np.argmax(strength, axis=0)
    best_r = np.take_along_axis(r, best[None], axis=0)[0]
    best_n = np.take_along_axis(n, best[None], axis=0)[0]
    rho = lag1_autocorrelation(xs)
    n_eff = effective_sample_size(best_n, rho[:, None], rho[None, :])
    tested = np.where(np.eye(n_metrics, dtype=bool), 1, len(lags))
    pvalue = np.minimum(1.0, correlation_pvalue(best_r, n_eff) * tested)
    pvalue = np.where(np.isfinite(best_r), pvalue, 1.0)
    significant = (pvalue < alpha) & (np.abs(np.nan_to_num(best_r)) >= min_abs_r)
    np.fill_diagonal(significant, False)
    return LaggedCorrelation(lags, r, n, best_r, lags[best], pvalue, significant)


def correlation_matrix(x: ArrayLike, method: Method = "pearson") -> FloatArray:
    """Lag-0 correlation matrix, shape (N, N): symmetric, unit diagonal for non-constant rows,
    NaN for pairs with a constant row or fewer than three shared points."""
    return np.asarray(lagged_correlation(x, max_lag=0, method=method).r[0], dtype=float)


@dataclass(frozen=True)
class CorrelatedPair:
    """One significant relation: ``leader`` moves ``lag`` points before ``follower``."""

    leader: int
    follower: int
    r: float
    lag: int
    pvalue: float


def top_correlations(result: LaggedCorrelation, k: int = 10) -> list[CorrelatedPair]:
    """The ``k`` strongest significant pairs, each unordered pair once, leader first."""
    i, j = np.nonzero(np.triu(result.significant | result.significant.T, 1))
    pairs = []
    for a, b in zip(i.tolist(), j.tolist(), strict=True):
        lag = int(result.best_lag[a, b])
        leader, follower = (a, b) if lag >= 0 else (b, a)
        pairs.append(
            CorrelatedPair(leader, follower, float(result.best_r[a, b]), abs(lag), float(result.pvalue[a, b]))
        )
    pairs.sort(key=lambda p: (-abs(p.r), p.lag))
    return pairs[:k]
