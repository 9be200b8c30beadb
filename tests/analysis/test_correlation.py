"""Tests of :mod:`ajan.analysis.correlation` against scipy and pandas, and of its significance."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import stats

from ajan.analysis.correlation import (
    CorrelatedPair,
    correlation_matrix,
    effective_sample_size,
    lag1_autocorrelation,
    lagged_correlation,
    top_correlations,
)

SETTINGS = settings(max_examples=50, deadline=None)


def _k(res, lag: int) -> int:
    return int(np.flatnonzero(res.lags == lag)[0])


def _pair(x: np.ndarray, i: int, j: int, lag: int) -> tuple[np.ndarray, np.ndarray]:
    """x_i[t] and x_j[t + lag] over the times both exist."""
    t = x.shape[1]
    if lag >= 0:
        return x[i, : t - lag], x[j, lag:]
    return x[i, -lag:], x[j, : t + lag]


# --- exact agreement with scipy and pandas --------------------------------------------------------


def test_lag_order() -> None:
    res = lagged_correlation(np.random.default_rng(0).normal(size=(2, 50)), max_lag=3)
    assert res.lags.tolist() == [0, 1, -1, 2, -2, 3, -3]
    assert res.r.shape == res.n.shape == (7, 2, 2)
    assert res.n[_k(res, 3), 0, 1] == 47 and res.n[_k(res, -2), 1, 0] == 48


@pytest.mark.parametrize("lag", [0, 1, -1, 3, -3, 7, -7])
def test_pearson_matches_scipy_at_each_lag(lag: int) -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(size=300)
    x = np.vstack([a, np.roll(a, 3) + rng.normal(size=300), -0.5 * a + rng.normal(size=300)])
    res = lagged_correlation(x, max_lag=7)
    k = _k(res, lag)
    for i in range(3):
        for j in range(3):
            u, v = _pair(x, i, j, lag)
            assert res.r[k, i, j] == pytest.approx(stats.pearsonr(u, v).statistic, abs=1e-10)
            assert res.n[k, i, j] == u.size


@pytest.mark.parametrize("lag", [0, 1, -1, 2, -2, 5, -5])
def test_spearman_matches_scipy_at_each_lag_with_ties(lag: int) -> None:
    rng = np.random.default_rng(2)
    # Few distinct values: many ties, so average ranks and the drop correction both matter.
    a = rng.integers(0, 6, 200).astype(float)
    b = np.roll(a, 2) + rng.integers(0, 3, 200)
    c = rng.integers(0, 4, 200).astype(float)
    x = np.vstack([a, b, c])
    res = lagged_correlation(x, max_lag=5, method="spearman")
    k = _k(res, lag)
    for i in range(3):
        for j in range(3):
            u, v = _pair(x, i, j, lag)
            assert res.r[k, i, j] == pytest.approx(stats.spearmanr(u, v).statistic, abs=1e-10)


def test_pearson_with_gaps_matches_pandas_pairwise_at_lag_0() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(5, 120))
    x[1] += 0.8 * x[0]
    x[2] -= 0.5 * x[1]
    x[0, rng.choice(120, 30, replace=False)] = np.nan
    x[1, rng.choice(120, 50, replace=False)] = np.nan
    x[2, :110] = np.nan  # 10 points left: few pairs with the others
    x[3, 5:] = np.nan  # 5 points; at most 3 overlap with row 2 -> below 3 shared points somewhere
    x[4, 30:60] = np.nan
    res = lagged_correlation(x, max_lag=2)
    expected = pd.DataFrame(x.T).corr(min_periods=3).to_numpy()
    np.testing.assert_allclose(res.r[0], expected, atol=1e-10, equal_nan=True)
    counts = np.isfinite(x).astype(int) @ np.isfinite(x).T.astype(int)
    np.testing.assert_array_equal(res.n[0], counts)
    np.testing.assert_allclose(correlation_matrix(x), expected, atol=1e-10, equal_nan=True)


@pytest.mark.parametrize("lag", [1, -2])
def test_pearson_with_gaps_matches_scipy_on_the_shared_points_at_a_lag(lag: int) -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 150))
    x[1] += np.roll(x[0], 1)
    x[0, rng.choice(150, 25, replace=False)] = np.nan
    x[1, rng.choice(150, 25, replace=False)] = np.nan
    res = lagged_correlation(x, max_lag=2)
    u, v = _pair(x, 0, 1, lag)
    ok = np.isfinite(u) & np.isfinite(v)
    assert res.r[_k(res, lag), 0, 1] == pytest.approx(stats.pearsonr(u[ok], v[ok]).statistic, abs=1e-10)
    assert res.n[_k(res, lag), 0, 1] == ok.sum()


# --- planted relations and significance -----------------------------------------------------------


def test_planted_negative_lagged_relation() -> None:
    rng = np.random.default_rng(5)
    a = rng.normal(size=400)
    b = np.empty(400)
    b[4:] = -a[:-4]  # b follows a by 4 points, inverted
    b[:4] = rng.normal(size=4)
    b += 0.3 * rng.normal(size=400)
    noise = rng.normal(size=400)
    res = lagged_correlation(np.vstack([a, b, noise]), max_lag=8)
    assert res.best_lag[0, 1] == 4 and res.best_lag[1, 0] == -4
    assert res.best_r[0, 1] < -0.9 and res.best_r[1, 0] == res.best_r[0, 1]
    assert res.significant[0, 1] and res.significant[1, 0]
    assert not res.significant[0, 2] and not res.significant[1, 2]
    assert not res.significant.diagonal().any()
    [pair] = top_correlations(res)
    assert (pair.leader, pair.follower, pair.lag) == (0, 1, 4) and pair.r < -0.9


def test_independent_random_walks_are_not_significant() -> None:
    # Two smooth series share few independent points: without the effective-sample-size correction
    # the naive test calls most pairs of independent random walks "significant".
    naive_hits = 0
    for seed in range(10):
        walks = np.cumsum(np.random.default_rng(100 + seed).normal(size=(3, 500)), axis=1)
        res = lagged_correlation(walks, max_lag=5)
        assert not res.significant.any(), seed
        for i, j in [(0, 1), (0, 2), (1, 2)]:
            naive_hits += stats.pearsonr(walks[i], walks[j]).pvalue < 0.01
    assert naive_hits >= 10  # of 30 pairs: the correction is what saves us


def test_related_smooth_series_stay_significant() -> None:
    # The correction must not kill a real relation between autocorrelated series.
    rng = np.random.default_rng(6)
    walk = np.cumsum(rng.normal(size=800))
    ar = np.zeros(800)
    for t in range(1, 800):
        ar[t] = 0.5 * ar[t - 1] + rng.normal()
    x = np.vstack([ar, 0.8 * ar + 0.3 * rng.normal(size=800), walk])
    res = lagged_correlation(x, max_lag=3)
    assert res.significant[0, 1] and res.best_lag[0, 1] == 0


def test_effective_sample_size_and_lag1_autocorrelation() -> None:
    assert effective_sample_size(100, 0.0, 0.9) == 100
    assert effective_sample_size(100, 0.5, 0.5) == pytest.approx(100 * 0.75 / 1.25)
    assert effective_sample_size(100, -0.5, 0.5) == 100  # never inflated
    x = np.vstack([np.arange(50.0), np.tile([1.0, -1.0], 25), np.full(50, 2.0)])
    rho = lag1_autocorrelation(x)
    assert rho[0] == pytest.approx(1.0) and rho[1] == pytest.approx(-1.0) and rho[2] == 0.0


def test_min_abs_r_and_alpha() -> None:
    rng = np.random.default_rng(7)
    a = rng.normal(size=2000)
    x = np.vstack([a, 0.2 * a + rng.normal(size=2000)])  # weak but clearly real: r ~ 0.2
    assert lagged_correlation(x).significant[0, 1]
    assert not lagged_correlation(x, min_abs_r=0.5).significant[0, 1]
    assert not lagged_correlation(x, alpha=1e-30).significant[0, 1]


def test_constant_series_nan_and_never_significant() -> None:
    rng = np.random.default_rng(8)
    x = np.vstack([np.full(100, 3.0), rng.normal(size=100), rng.normal(size=100)])
    for method in ("pearson", "spearman"):
        res = lagged_correlation(x, max_lag=3, method=method)  # no warnings
        assert np.isnan(res.r[:, 0, :]).all() and np.isnan(res.r[:, :, 0]).all()
        assert np.isnan(res.best_r[0]).all()
        assert not res.significant[0].any() and not res.significant[:, 0].any()
        assert np.all(res.pvalue[0] == 1.0)
    gappy = x.copy()
    gappy[1, ::3] = np.nan
    res = lagged_correlation(gappy, max_lag=3)
    assert np.isnan(res.r[:, 0, :]).all()


def test_all_nan_metric_gives_nan_without_warnings() -> None:
    rng = np.random.default_rng(9)
    x = rng.normal(size=(3, 200))
    x[0, ::7] = np.nan
    x[2] = np.nan
    res = lagged_correlation(x, max_lag=2)
    assert np.isnan(res.r[:, 2, :]).all() and not res.significant[2].any()
    assert np.isfinite(res.r[0, 0, 1])


def test_max_lag_bounds() -> None:
    x = np.random.default_rng(10).normal(size=(2, 10))
    lagged_correlation(x, max_lag=7)
    with pytest.raises(ValueError, match="max_lag"):
        lagged_correlation(x, max_lag=8)
    with pytest.raises(ValueError, match="max_lag"):
        lagged_correlation(x, max_lag=-1)
    with pytest.raises(ValueError, match="shape"):
        lagged_correlation(np.zeros(10))


# --- properties -----------------------------------------------------------------------------------


def _matrices(min_t: int = 5):
    return st.integers(min_value=2, max_value=4).flatmap(
        lambda n: st.integers(min_value=min_t, max_value=40).flatmap(
            lambda t: st.lists(
                st.lists(st.integers(min_value=-50, max_value=50).map(float), min_size=t, max_size=t),
                min_size=n,
                max_size=n,
            )
        )
    )


@SETTINGS
@given(rows=_matrices(), method=st.sampled_from(["pearson", "spearman"]))
def test_lag0_matrix_symmetric_unit_diagonal_bounded(rows: list[list[float]], method: str) -> None:
    x = np.array(rows)
    assume(all(len(set(r)) >= 2 for r in rows))
    r0 = lagged_correlation(x, method=method).r[0]  # type: ignore[arg-type]
    assert np.isfinite(r0).all()
    np.testing.assert_allclose(r0, r0.T, atol=1e-12)
    np.testing.assert_allclose(np.diag(r0), 1.0, atol=1e-12)
    assert np.all(np.abs(r0) <= 1.0)


@SETTINGS
@given(
    rows=_matrices(min_t=6),
    method=st.sampled_from(["pearson", "spearman"]),
    gaps=st.booleans(),
    data=st.data(),
)
def test_negative_lag_is_the_transpose(
    rows: list[list[float]], method: str, gaps: bool, data: st.DataObject
) -> None:
    x = np.array(rows)
    if gaps:
        x[data.draw(st.integers(0, x.shape[0] - 1)), data.draw(st.integers(0, x.shape[1] - 1))] = np.nan
    res = lagged_correlation(x, max_lag=3, method=method)  # type: ignore[arg-type]
    assert np.all(np.abs(res.r[np.isfinite(res.r)]) <= 1.0)
    for lag in (1, 2, 3):
        np.testing.assert_array_equal(res.r[_k(res, -lag)], res.r[_k(res, lag)].T)
        np.testing.assert_array_equal(res.n[_k(res, -lag)], res.n[_k(res, lag)].T)
    # best_r is the strongest correlation over the lags, found at best_lag.
    strongest = np.where(np.isfinite(res.r), np.abs(res.r), -1.0).max(axis=0)
    fin = np.isfinite(res.best_r)
    np.testing.assert_array_equal(np.abs(res.best_r[fin]), strongest[fin])
    assert np.all(np.isnan(res.best_r[~fin]) & (strongest[~fin] == -1.0))
    for i, j in zip(*np.nonzero(fin), strict=True):
        assert res.r[_k(res, int(res.best_lag[i, j])), i, j] == res.best_r[i, j]


# --- top_correlations -----------------------------------------------------------------------------


def test_top_correlations_ordering_leader_and_k() -> None:
    rng = np.random.default_rng(11)
    a, c = rng.normal(size=(2, 600))
    b = np.roll(a, 2) + 0.2 * rng.normal(size=600)  # a leads b by 2, strong
    d = np.roll(c, -3) * -1 + 1.0 * rng.normal(size=600)  # d leads c by 3, negative, weaker
    x = np.vstack([a, b, c, d])
    res = lagged_correlation(x, max_lag=5)
    pairs = top_correlations(res)
    assert [(p.leader, p.follower, p.lag) for p in pairs] == [(0, 1, 2), (3, 2, 3)]
    assert pairs[0].r > 0.9 and -0.9 < pairs[1].r < -0.5
    assert all(isinstance(p, CorrelatedPair) and p.pvalue < 0.01 for p in pairs)
    assert abs(pairs[0].r) >= abs(pairs[1].r)
    assert top_correlations(res, k=1) == pairs[:1]
    assert top_correlations(lagged_correlation(rng.normal(size=(3, 300)))) == []
