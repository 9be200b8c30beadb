"""Tests of :mod:`ajan.analysis.robust`: robust z-scores and causal trailing estimates."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ajan.analysis.robust import (
    IQR_TO_SIGMA,
    MAD_TO_SIGMA,
    block_starts,
    robust_location_scale,
    robust_zscore,
    trailing_location_scale,
)

SETTINGS = settings(max_examples=60, deadline=None)

# Integer-valued floats keep shifts and ties exact, so the properties below hold to rounding only.
ints = st.integers(min_value=-1000, max_value=1000).map(float)
int_lists = st.lists(ints, min_size=1, max_size=30)
baselines = st.lists(ints, min_size=2, max_size=30).filter(lambda b: len(set(b)) >= 2)


def _close(a: np.ndarray, b: np.ndarray) -> None:
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9, equal_nan=True)


# --- known answers --------------------------------------------------------------------------------


def test_mad_known_answer() -> None:
    # median 3; |deviations| 2, 1, 0, 1, 97 -> MAD 1 -> scale 1.4826; the outlier 100 does not matter.
    z = robust_zscore([[3.0, 6.0, 0.0]], baseline=[[1.0, 2.0, 3.0, 4.0, 100.0]])
    np.testing.assert_allclose(z, [[0.0, 3.0 / MAD_TO_SIGMA, -3.0 / MAD_TO_SIGMA]], rtol=1e-12)


def test_mad_and_iqr_known_answers() -> None:
    b = [[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 1000.0]]
    # median 6; sorted |deviations| 0 1 1 2 2 3 3 4 4 5 994 -> MAD 3.
    ls = robust_location_scale(b)
    assert ls.location[0] == 6.0
    assert ls.scale[0] == pytest.approx(3.0 * MAD_TO_SIGMA, rel=1e-12)
    # Linear-interpolated quartiles at positions 2.5 and 7.5: 3.5 and 8.5 -> IQR 5.
    ls = robust_location_scale(b, method="iqr")
    assert ls.scale[0] == pytest.approx(5.0 / IQR_TO_SIGMA, rel=1e-12)
    z = robust_zscore([[11.0]], baseline=b, method="iqr")
    assert z[0, 0] == pytest.approx(5.0 / (5.0 / IQR_TO_SIGMA), rel=1e-12)


def test_axis_argument_matches_transposed_input() -> None:
    rng = np.random.default_rng(0)
    x, b = rng.normal(size=(4, 3)), rng.normal(size=(9, 3))
    np.testing.assert_allclose(robust_zscore(x, b, axis=0), robust_zscore(x.T, b.T).T, rtol=1e-12)


def test_docstring_example() -> None:
    z = robust_zscore([[10.0, 13.0]], baseline=[[9.0, 10.0, 11.0]])
    # median 10, MAD 1 -> z = 3 / 1.4826
    np.testing.assert_allclose(z, [[0.0, 3.0 / MAD_TO_SIGMA]], rtol=1e-12)


# --- fallbacks for a zero MAD ---------------------------------------------------------------------


def test_zero_mad_falls_back_to_iqr() -> None:
    # [0, 5, 5, 5]: median 5 and three of four points equal it -> MAD 0; quartiles 3.75 and 5 -> IQR 1.25.
    ls = robust_location_scale([[0.0, 5.0, 5.0, 5.0]])
    assert ls.scale[0] == pytest.approx(1.25 / IQR_TO_SIGMA, rel=1e-12)


def test_zero_mad_and_iqr_fall_back_to_std() -> None:
    # [5, 5, 5, 5, 9]: MAD 0 and IQR 0; mean 5.8, population std sqrt(12.8 / 5) = 1.6.
    z = robust_zscore([[9.0]], baseline=[[5.0, 5.0, 5.0, 5.0, 9.0]])
    assert z[0, 0] == pytest.approx((9.0 - 5.0) / 1.6, rel=1e-12)


def test_constant_baseline_gives_nan_without_min_scale_and_uses_min_scale_otherwise() -> None:
    b = [[5.0, 5.0, 5.0, 5.0]]
    z = robust_zscore([[5.0, 6.0]], baseline=b)
    assert np.isnan(z).all()
    z = robust_zscore([[5.0, 6.0]], baseline=b, min_scale=0.5)
    np.testing.assert_allclose(z, [[0.0, 2.0]])


def test_min_scale_is_a_lower_bound_only() -> None:
    b = [[1.0, 2.0, 3.0, 4.0, 100.0]]  # scale 1.4826
    np.testing.assert_allclose(robust_zscore([[6.0]], b, min_scale=0.1), robust_zscore([[6.0]], b))
    np.testing.assert_allclose(robust_zscore([[6.0]], b, min_scale=3.0), [[1.0]])


def test_min_scale_per_series() -> None:
    b = np.array([[5.0, 5.0, 5.0], [7.0, 7.0, 7.0]])
    z = robust_zscore([[6.0], [9.0]], b, min_scale=np.array([1.0, 4.0]))
    np.testing.assert_allclose(z, [[1.0], [0.5]])


def test_constant_baseline_of_inexact_value_gives_nan() -> None:
    for value in (0.1, 0.7, 1.1, 123.456):
        z = robust_zscore([[value + 1.0]], baseline=[np.full(7, value)])
        assert np.isnan(z).all(), (value, z)


def test_one_dimensional_series() -> None:
    z = robust_zscore([3.0, 6.0], baseline=[1.0, 2.0, 3.0, 4.0, 100.0])
    np.testing.assert_allclose(z, [0.0, 3.0 / MAD_TO_SIGMA], rtol=1e-12)


def test_one_dimensional_series_with_zero_mad() -> None:
    z = robust_zscore([9.0], baseline=[5.0, 5.0, 5.0, 5.0, 9.0])
    np.testing.assert_allclose(z, [2.5])


# --- NaN handling ---------------------------------------------------------------------------------


def test_nan_in_x_gives_nan_out_and_nan_in_baseline_is_ignored() -> None:
    b_clean = np.array([[1.0, 2.0, 3.0, 4.0, 100.0]])
    b_gappy = np.array([[1.0, np.nan, 2.0, 3.0, np.nan, 4.0, 100.0]])
    z = robust_zscore([[np.nan, 6.0]], baseline=b_gappy)
    assert np.isnan(z[0, 0])
    np.testing.assert_allclose(z[0, 1], robust_zscore([[6.0]], b_clean)[0, 0], rtol=1e-12)


def test_all_nan_baseline_gives_nan_without_warnings() -> None:
    # pyproject turns RuntimeWarning into an error, so a leaked "All-NaN slice" fails here.
    b = np.array([[np.nan] * 5, [1.0, 2.0, 3.0, 4.0, 100.0], [5.0] * 5])
    z = robust_zscore([[1.0, 2.0], [6.0, 3.0], [5.0, 6.0]], baseline=b)
    assert np.isnan(z[0]).all()
    np.testing.assert_allclose(z[1], [3.0 / MAD_TO_SIGMA, 0.0])
    assert np.isnan(z[2]).all()  # constant, no min_scale
    ls = robust_location_scale(b, method="iqr")
    assert np.isnan(ls.location[0]) and np.isnan(ls.scale[0])


def test_all_nan_input_as_own_baseline() -> None:
    z = robust_zscore(np.full((2, 6), np.nan))
    assert z.shape == (2, 6) and np.isnan(z).all()


# --- properties -----------------------------------------------------------------------------------


@SETTINGS
@given(x=int_lists, b=baselines, c=st.integers(min_value=-(10**6), max_value=10**6))
def test_shift_invariance(x: list[float], b: list[float], c: int) -> None:
    xs, bs = np.array([x]), np.array([b])
    _close(robust_zscore(xs + c, bs + c), robust_zscore(xs, bs))
    _close(robust_zscore(xs + c, bs + c, method="iqr"), robust_zscore(xs, bs, method="iqr"))


@SETTINGS
@given(x=int_lists, b=baselines, a=st.floats(min_value=1e-3, max_value=1e3))
def test_positive_scale_invariance(x: list[float], b: list[float], a: float) -> None:
    xs, bs = np.array([x]), np.array([b])
    _close(robust_zscore(a * xs, a * bs), robust_zscore(xs, bs))
    _close(robust_zscore(a * xs, a * bs, method="iqr"), robust_zscore(xs, bs, method="iqr"))


@SETTINGS
@given(x=int_lists, b=baselines, a=st.floats(min_value=1e-3, max_value=1e3))
def test_negative_scale_flips_sign(x: list[float], b: list[float], a: float) -> None:
    xs, bs = np.array([x]), np.array([b])
    _close(robust_zscore(-a * xs, -a * bs), -robust_zscore(xs, bs))
    _close(robust_zscore(-a * xs, -a * bs, method="iqr"), -robust_zscore(xs, bs, method="iqr"))


@SETTINGS
@given(
    x=st.lists(
        st.integers(min_value=-(10**6), max_value=10**6).map(lambda k: k / 64), min_size=2, max_size=40
    ),
    method=st.sampled_from(["mad", "iqr"]),
)
def test_finite_output_for_finite_non_constant_input(x: list[float], method: str) -> None:
    assume(len(set(x)) >= 2)
    z = robust_zscore(np.array([x]), method=method)  # type: ignore[arg-type]
    assert np.isfinite(z).all()
    # The median point(s) score 0 and the order of the points is preserved.
    order = np.argsort(x, kind="stable")
    assert np.all(np.diff(z[0, order]) >= 0)


# --- block_starts and trailing_location_scale -----------------------------------------------------


def test_block_starts_known_answer() -> None:
    # refresh 8, min_periods 20: steps of max(s, 20) // 4 (5 while s < 24), capped at 8.
    assert block_starts(60, 8, 20) == [0, 5, 10, 15, 20, 25, 31, 38, 46, 54]
    assert block_starts(0, 8, 20) == []
    assert block_starts(3, 0, 0) == [0, 1, 2]


@SETTINGS
@given(
    n=st.integers(min_value=0, max_value=400),
    refresh=st.integers(min_value=1, max_value=50),
    min_periods=st.integers(min_value=0, max_value=60),
)
def test_block_starts_properties(n: int, refresh: int, min_periods: int) -> None:
    s = block_starts(n, refresh, min_periods)
    if n == 0:
        assert s == []
        return
    assert s[0] == 0 and s[-1] < n
    d = np.diff(s)
    assert np.all(d >= 1) and np.all(d <= refresh)
    assert np.all(np.diff(d) >= 0)  # steps never shrink as history grows
    for start, step in zip(s[:-1], d, strict=True):
        if max(start, min_periods) >= 4 * refresh:
            assert step == refresh
        else:
            assert step == max(1, max(start, min_periods) // 4)


@SETTINGS
@given(data=st.data())
def test_trailing_location_scale_is_causal_and_matches_its_window(data: st.DataObject) -> None:
    n_times = data.draw(st.integers(min_value=5, max_value=120))
    window = data.draw(st.integers(min_value=3, max_value=60))
    refresh = data.draw(st.integers(min_value=1, max_value=20))
    min_periods = data.draw(st.integers(min_value=1, max_value=window))
    cell = st.one_of(ints, st.just(float("nan")))
    x = np.array([data.draw(st.lists(cell, min_size=n_times, max_size=n_times)) for _ in range(2)])
    t = data.draw(st.integers(min_value=0, max_value=n_times - 1))
    kw = dict(window=window, refresh=refresh, min_periods=min_periods)
    before = trailing_location_scale(x, **kw)

    # The estimate at t uses strictly past data: rewriting x[:, t:] changes nothing at or before t.
    y = x.copy()
    y[:, t:] = np.array(
        [data.draw(st.lists(cell, min_size=n_times - t, max_size=n_times - t)) for _ in range(2)]
    )
    after = trailing_location_scale(y, **kw)
    np.testing.assert_array_equal(after.location[:, : t + 1], before.location[:, : t + 1])
    np.testing.assert_array_equal(after.scale[:, : t + 1], before.scale[:, : t + 1])

    # ... and equals the robust estimate over the documented window x[max(0, s - window):s].
    s = max(b for b in block_starts(n_times, refresh, min_periods) if b <= t)
    hist = x[:, max(0, s - window) : s]
    for i in range(2):
        finite = np.isfinite(hist[i]).sum()
        if hist.shape[1] < min_periods or finite < min_periods:
            assert np.isnan(before.location[i, t]) and np.isnan(before.scale[i, t])
        else:
            ls = robust_location_scale(hist[i : i + 1])
            assert before.location[i, t] == ls.location[0]
            np.testing.assert_allclose(before.scale[i, t], ls.scale[0], rtol=1e-12)


def test_trailing_estimate_depends_on_the_past() -> None:
    # Not trivially causal (e.g. all NaN): a jump in the past moves later estimates.
    x = np.zeros((1, 100))
    x[0] = np.arange(100) % 3
    y = x.copy()
    y[0, :50] += 100.0
    a = trailing_location_scale(x, window=40, refresh=5, min_periods=10)
    b = trailing_location_scale(y, window=40, refresh=5, min_periods=10)
    assert np.isfinite(a.location[0, 20:]).all()
    assert np.all(b.location[0, 20:50] > a.location[0, 20:50] + 50)
    # More than `window` points after the change, the past has left the window.
    np.testing.assert_array_equal(a.location[0, 95:], b.location[0, 95:])
