"""Tests of :mod:`ajan.analysis.drift`."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from ajan.analysis.drift import detect_drift, population_stability_index


def test_psi_known_answer() -> None:
    base = np.arange(1000.0)[None, :]  # deciles of 100 points each
    # Half of the lowest decile moves to the highest: shares 0.05, 0.1 x 8, 0.15.
    cur = np.concatenate([np.arange(50.0, 1000.0), np.arange(950.0, 1000.0)])[None, :]
    psi = population_stability_index(cur, base)
    # (0.05 - 0.1) ln(0.5) + (0.15 - 0.1) ln(1.5) = 0.05 ln 3
    assert psi[0] == pytest.approx(0.05 * math.log(3.0), rel=1e-9)
    assert population_stability_index(base, base)[0] == 0.0


def test_psi_grows_with_the_shift() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=(1, 5000))
    psis = [population_stability_index(base[:, :1000] + d, base)[0] for d in (0.0, 0.25, 0.5, 1.0)]
    assert psis == sorted(psis)
    assert psis[0] < 0.1 < psis[-1]


def test_shifted_distribution_is_flagged_same_distribution_is_not() -> None:
    rng = np.random.default_rng(1)
    base = rng.normal(10.0, 2.0, (3, 5000))
    cur = rng.normal(10.0, 2.0, (3, 500))
    cur[1] += 2.0  # one sigma up
    cur[2] *= 1.0  # unchanged
    res = detect_drift(cur, base, tests="all")
    assert res.drifted.tolist() == [False, True, False]
    assert res.psi[1] > 0.2 and res.ks_pvalue[1] < 0.01
    assert res.psi[0] < 0.1 and res.ks_pvalue[0] > 0.01
    # By default the tests run only where the PSI leaves drift possible: same verdicts, same figures
    # there, NaN (not computed) elsewhere.
    fast = detect_drift(cur, base)
    assert fast.drifted.tolist() == res.drifted.tolist() and np.array_equal(fast.psi, res.psi)
    assert fast.ks_pvalue[1] == res.ks_pvalue[1] and fast.shift[1] == res.shift[1]
    assert np.isnan(fast.ks_pvalue[[0, 2]]).all() and np.isnan(fast.shift[[0, 2]]).all()
    with pytest.raises(ValueError, match="tests must be"):
        detect_drift(cur, base, tests="some")  # type: ignore[arg-type]
    ks = stats.ks_2samp(cur[1], base[1])
    assert res.ks_statistic[1] == pytest.approx(ks.statistic) and res.ks_pvalue[1] == pytest.approx(ks.pvalue)


def test_both_tests_must_agree() -> None:
    rng = np.random.default_rng(2)
    base = rng.normal(size=(1, 5000))
    # Many points, a negligible shift: KS sees it, PSI says it does not matter.
    res = detect_drift(rng.normal(size=(1, 20000)) + 0.05, base, tests="all")
    assert res.ks_pvalue[0] < 0.01 and res.psi[0] < 0.2 and not res.drifted[0]
    # Four points at the baseline median: all in one decile bin (PSI large), but a KS distance of 0.5
    # from four points is chance.
    res = detect_drift(np.full((1, 4), np.median(base)), base)
    assert res.psi[0] > 0.2 and res.ks_statistic[0] == pytest.approx(0.5, abs=1e-3)
    assert res.ks_pvalue[0] > 0.01 and not res.drifted[0]


def test_nan_only_rows_and_gaps() -> None:
    rng = np.random.default_rng(3)
    base = rng.normal(size=(3, 1000))
    cur = rng.normal(size=(3, 200)) + np.array([[0.0], [3.0], [0.0]])
    base[2] = np.nan
    cur[0] = np.nan
    cur[1, ::4] = np.nan  # gaps are ignored
    res = detect_drift(cur, base)  # no warnings
    assert np.isnan(res.psi[[0, 2]]).all() and np.isnan(res.ks_pvalue[[0, 2]]).all()
    assert res.drifted.tolist() == [False, True, False]
    clean = detect_drift(cur[1:2, np.isfinite(cur[1])], base[1:2])
    assert res.psi[1] == clean.psi[0] and res.ks_statistic[1] == clean.ks_statistic[0]


def test_constant_baseline() -> None:
    base = np.full((1, 500), 5.0)
    same = detect_drift(np.full((1, 100), 5.0), base)
    down = detect_drift(np.full((1, 100), 4.0), base)
    assert same.psi[0] == 0.0 and not same.drifted[0]
    assert down.psi[0] > 0.2 and down.drifted[0]


def test_rise_of_a_mostly_constant_baseline_is_drift() -> None:
    rng = np.random.default_rng(4)
    errors = np.where(rng.random((1, 2000)) < 0.95, 0.0, 1.0)  # errors per minute, mostly 0
    burst = rng.integers(3, 10, (1, 200)).astype(float)
    assert detect_drift(burst, errors).drifted[0]
    assert detect_drift(np.full((1, 100), 6.0), np.full((1, 500), 5.0)).drifted[0]


def test_a_shift_below_the_metrics_resolution_is_no_drift() -> None:
    # Rank tests see these as wholly apart; in the metric's unit they are the same value.
    base = np.full((1, 500), 0.002)
    cur = np.full((1, 100), 0.002 + 1e-17)
    res = detect_drift(cur, base)
    assert res.psi[0] > 0.2 and res.ks_pvalue[0] < 0.01
    assert res.shift[0] < 1e-15 and not res.drifted[0]
    # The same shape of change, but material: 0.002 to 0.003 is drift.
    assert detect_drift(cur + 0.001, base).drifted[0]


def test_shift_is_the_wasserstein_distance() -> None:
    rng = np.random.default_rng(5)
    base, cur = rng.normal(size=(2, 400)), rng.normal(size=(2, 100)) + 1.0
    res = detect_drift(cur, base)
    for i in range(2):
        assert res.shift[i] == pytest.approx(stats.wasserstein_distance(cur[i], base[i]))
