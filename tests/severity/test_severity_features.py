"""Decision features: finite and within their documented bounds, for healthy, faulty and gappy windows."""

from __future__ import annotations

import numpy as np
import pytest

from ajan.services.assessment import assess
from ajan.services.features import FEATURE_NAMES, Z_CLIP, DecisionFeatures, level_shift, tail_shift
from support.windows import healthy, spec, window

#: Upper bound of each feature (all have 0 as lower bound).
Z_LIKE = ("max_bad_z", "p95_shift", "p99_shift", "slo_level_shift", "slo_tail_shift")
HIGH = {name: Z_CLIP if name in Z_LIKE else 1.0 for name in FEATURE_NAMES}


def features(values: np.ndarray) -> DecisionFeatures:
    return assess(spec(), window(values)).features


def check_bounded(f: DecisionFeatures) -> np.ndarray:
    x = f.as_array()
    assert x.dtype == np.float32 and x.shape == (len(FEATURE_NAMES),)
    assert np.isfinite(x).all(), dict(zip(FEATURE_NAMES, x.tolist(), strict=True))
    for name, value in zip(FEATURE_NAMES, x.tolist(), strict=True):
        assert 0.0 <= value <= HIGH[name], (name, value)
    return x


def test_feature_names_follow_the_array_order() -> None:
    f = features(healthy())
    assert FEATURE_NAMES[0] == "confidence" and len(FEATURE_NAMES) == 16
    assert f.as_array().tolist() == pytest.approx([getattr(f, n) for n in FEATURE_NAMES])


def test_healthy_window_features_are_bounded_and_quiet() -> None:
    for seed in range(5):
        f = features(healthy(seed))
        check_bounded(f)
        assert f.slo_score < 0.5 and f.anomalous_share == 0.0 and f.max_bad_z < 1.0
        assert f.coverage == 1.0 and f.slo_level_shift < 3.0


def test_faulty_window_features_are_bounded_and_loud() -> None:
    v = healthy()
    v[-12:, 0] *= np.linspace(1.0, 6.0, 12)  # latency climbs six-fold
    # and, for most of the 30 scored rows, an error ratio of 100 %: infinitely far from a 0.2 % baseline
    v[-20:, 1] = 1.0
    f = features(v)
    x = check_bounded(f)
    assert f.slo_score > 0.9 and f.max_bad_z > 1.0 and f.anomalous_share >= 0.5
    assert f.p99_shift == Z_CLIP  # clipped, not infinite
    assert f.slo_level_shift == Z_CLIP and f.slo_tail_shift == Z_CLIP
    assert x[FEATURE_NAMES.index("confidence")] == pytest.approx(f.confidence)


def test_window_with_nans_gives_finite_features() -> None:
    v = healthy()
    v[5:15, 3] = np.nan
    v[::10, 2] = np.nan
    v[-1, 1] = np.nan
    v[-12:, 0] *= 4.0
    f = features(v)
    check_bounded(f)
    assert f.coverage < 1.0


def test_tail_shift_is_oriented_scaled_and_clipped() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(100.0, 5.0, (2, 300))
    cur = rng.normal(100.0, 5.0, (2, 60))
    cur[:, :6] += 60.0  # 10 % slow samples in both metrics
    up = tail_shift(cur, base, np.array([1.0, 1.0]))
    assert up[1] > up[0] > 1.0
    # The same rise in a metric where lower is worse is no shift at all.
    assert tail_shift(cur[1:], base[1:], np.array([-1.0])) == (0.0, 0.0)
    # A constant baseline: no move is 0, any move is the clip, never inf or NaN.
    flat = np.zeros((1, 100))
    assert tail_shift(np.zeros((1, 20)), flat, np.array([1.0])) == (0.0, 0.0)
    moved = np.zeros((1, 20))
    moved[0, :5] = 0.5
    assert tail_shift(moved, flat, np.array([1.0])) == (Z_CLIP, Z_CLIP)
    assert tail_shift(np.full((1, 20), np.nan), base[:1], np.array([1.0])) == (0.0, 0.0)


def test_level_shift_sees_a_creep_the_adaptive_z_absorbs() -> None:
    rng = np.random.default_rng(4)
    base = rng.normal(1.0, 0.02, (1, 90))
    creep = (1.0 + np.linspace(0.05, 0.5, 30) + rng.normal(0.0, 0.02, 30))[None, :]
    assert level_shift(creep, base, np.array([1.0])) > 5.0
    assert level_shift(creep, base, np.array([-1.0])) == 0.0
    assert level_shift(base[:, :30], base, np.array([1.0])) < 2.0
    assert level_shift(creep[:0], base[:0], np.array([])) == 0.0
