"""Unit tests of the named reference detectors (ajan.evaluation.baselines) on small synthetic arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ajan.evaluation import baselines, nab
from ajan.evaluation.baselines import (
    FLOOR_ALERT_Z,
    MAD_SCALE,
    Z_CLIP,
    floor_detect,
    floor_rank,
    floor_zscores,
    pca_detect,
    pca_fit,
    pca_rank,
    squash,
)


def _naive_floor(values: np.ndarray, baseline: np.ndarray, window: int = 60) -> np.ndarray:
    """The floor's definition, one cell at a time: the vectorised version must agree."""
    full = np.concatenate([baseline, values])
    nb = baseline.shape[0]
    z = np.zeros(values.shape)
    for t in range(values.shape[0]):
        g = nb + t
        for j in range(values.shape[1]):
            x = full[g, j]
            past = full[:g, j]
            past = past[np.isfinite(past)]
            recent = full[max(0, g - window) : g, j]
            recent = recent[np.isfinite(recent)]
            if not np.isfinite(x) or recent.size == 0:
                continue
            med = float(np.median(recent))
            mad = float(np.median(np.abs(recent - med)))
            std = float(np.std(past, ddof=1)) if past.size >= 2 else 0.0
            scale = max(MAD_SCALE * mad, std)
            dev = abs(x - med)
            z[t, j] = 0.0 if dev == 0 else (dev / scale if scale > 0 else Z_CLIP)
    return z


# --- floor ---------------------------------------------------------------------------------


def test_floor_matches_its_definition_across_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    base = rng.normal(5, 2, (80, 3))
    x = rng.normal(5, 2, (150, 3))
    x[rng.random(x.shape) < 0.05] = np.nan
    x[40, 1] += 50
    base[10:70, 2] = 1.0  # a flat stretch: the MAD is 0, the whole past's std takes over
    monkeypatch.setattr(baselines, "_CHUNK_ROWS", 7)  # several chunks, one of them partial
    np.testing.assert_allclose(floor_zscores(x, base), _naive_floor(x, base), rtol=1e-9, atol=1e-12)


def test_floor_finds_a_planted_spike_and_nothing_else() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(0, 1, (500, 4))
    x = rng.normal(0, 1, (300, 4))
    x[120, 3] += 60.0
    res = floor_detect(x, base)
    assert res.score.shape == res.alert.shape == (300,)
    assert np.flatnonzero(res.alert).tolist() == [120]
    assert res.threshold == FLOOR_ALERT_Z


def test_floor_is_causal() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (200, 2))
    later = x.copy()
    later[150:] += 100.0
    np.testing.assert_array_equal(floor_zscores(x)[:150], floor_zscores(later)[:150])


def test_floor_constant_column_gives_no_alert() -> None:
    x = np.full((120, 2), 3.0)
    z = floor_zscores(x, np.full((100, 2), 3.0))
    assert z.shape == (120, 2)
    assert not z.any()
    assert not floor_detect(x, np.full((100, 2), 3.0)).alert.any()


def test_floor_missing_sample_is_zero_and_zero_scale_is_clipped() -> None:
    base = np.full((100, 1), 2.0)
    x = np.array([[np.nan], [2.5]])
    z = floor_zscores(x, base)
    assert z[0, 0] == 0.0  # no sample
    assert z[1, 0] == Z_CLIP  # a deviation over a scale of exactly 0
    assert math.isfinite(float(floor_detect(x, base).score.max()))


def test_floor_without_history_scores_zero() -> None:
    assert floor_zscores(np.array([[7.0, -1.0]])).tolist() == [[0.0, 0.0]]


def test_floor_rank_puts_the_moved_metric_first() -> None:
    rng = np.random.default_rng(2)
    base = rng.normal(0, 1, (300, 5))
    x = rng.normal(0, 1, (40, 5))
    x[30:, 3] += 6.0
    x[30:, 1] += 2.0
    scores = floor_rank(x, 30, 40, base)
    assert scores.shape == (5,)
    assert np.argsort(-scores)[:2].tolist() == [3, 1]


def test_floor_rank_without_baseline_judges_against_the_rows_before() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(0, 1, (200, 3))
    x[180:, 0] += 8.0
    assert int(np.argmax(floor_rank(x, 180, 200))) == 0
    np.testing.assert_array_equal(floor_rank(x, 180, 200), floor_rank(x, 180, 200, np.zeros((0, 3))))


def test_floor_rank_rejects_an_empty_interval() -> None:
    with pytest.raises(ValueError):
        floor_rank(np.zeros((10, 2)), 5, 5)


# --- pca -----------------------------------------------------------------------------------


def test_pca_univariate_keeps_no_component_and_scores_the_squared_standard_value() -> None:
    rng = np.random.default_rng(5)
    base = rng.normal(10, 2, (400, 1))
    x = np.array([[10.0], [14.0], [4.0]])
    model = pca_fit(base)
    assert model.components.shape == (0, 1)
    expected = ((x[:, 0] - base.mean()) / base.std()) ** 2
    np.testing.assert_allclose(pca_detect(x, base).score, expected)


def test_pca_keeps_the_fewest_components_for_90_percent() -> None:
    rng = np.random.default_rng(6)
    f = rng.normal(0, 1, (1000, 2))
    # Two strong factors and tiny noise over 6 columns: 2 axes explain well over 90%.
    base = f @ rng.normal(0, 1, (2, 6)) + rng.normal(0, 0.01, (1000, 6))
    assert pca_fit(base).components.shape == (2, 6)
    # Independent columns: 90% needs all but the last axis or so, never all 6.
    assert pca_fit(rng.normal(0, 1, (1000, 6))).components.shape[0] == 5


def test_pca_finds_a_broken_correlation() -> None:
    rng = np.random.default_rng(7)
    base = rng.normal(0, 1, (2000, 1)) @ np.ones((1, 5)) + rng.normal(0, 0.05, (2000, 5))
    x = rng.normal(0, 1, (200, 1)) @ np.ones((1, 5)) + rng.normal(0, 0.05, (200, 5))
    x[90, 2] -= 1.5  # inside column 2's own range, but off the shared factor
    res = pca_detect(x, base)
    assert res.score.shape == res.alert.shape == (200,)
    assert int(np.argmax(res.score)) == 90 and res.alert[90]
    assert int(np.argmax(pca_rank(x, 90, 91, base))) == 2


def test_pca_threshold_is_the_baselines_own_percentile() -> None:
    rng = np.random.default_rng(8)
    base = rng.normal(0, 1, (5000, 3))
    res = pca_detect(base, base)
    assert res.threshold == pytest.approx(np.percentile(res.score, 99.9))
    assert res.alert.sum() == 5  # strictly above the 99.9th percentile of 5000 rows


def test_pca_constant_column_gives_no_alert_and_no_residual() -> None:
    base = np.column_stack([np.full(300, 4.0), np.random.default_rng(9).normal(0, 1, 300)])
    x = base[:50].copy()
    model = pca_fit(base)
    assert model.scale[0] == 1.0  # std 0 -> 1
    assert not model.residuals(x)[:, 0].any()
    assert not pca_detect(np.full((50, 3), 1.0), np.full((300, 3), 1.0)).alert.any()


def test_pca_without_baseline_fits_on_the_leading_rows() -> None:
    rng = np.random.default_rng(10)
    x = rng.normal(0, 1, (1000, 1))
    x[500] = 30.0
    default = pca_detect(x)
    np.testing.assert_allclose(default.score, pca_detect(x, x[:150]).score)  # 15% of 1000
    assert np.flatnonzero(pca_detect(x, fit_rows=300).score > 100).tolist() == [500]


def test_pca_missing_sample_has_no_residual() -> None:
    rng = np.random.default_rng(11)
    base = rng.normal(0, 1, (300, 3))
    x = np.array([[np.nan, 0.0, 0.0]])
    assert pca_fit(base).residuals(x)[0, 0] == 0.0
    assert np.isfinite(pca_detect(x, base).score).all()


# --- glue ----------------------------------------------------------------------------------


def test_squash_is_increasing_into_the_unit_interval() -> None:
    s = squash([0.0, 0.5, 20.0, Z_CLIP, np.inf])
    assert s[0] == 0.0 and s[-1] == 1.0
    assert np.all(np.diff(s) > 0)


def test_nab_named_outputs_are_nab_scores_with_alerts() -> None:
    rng = np.random.default_rng(12)
    values = rng.normal(10, 1, 1200)
    values[1000] += 30
    out = nab.named_outputs(values, probation=180)
    assert list(out) == list(nab.NAMED_DETECTORS)
    for score, alert, seconds in out.values():
        assert score.shape == alert.shape == (1200,)
        assert score.min() >= 0.0 and score.max() <= 1.0
        assert seconds >= 0.0
    assert out["floor"][1][1000] and out["pca"][1][1000]


def test_nab_event_wise_ignores_probation_rows() -> None:
    ts = np.arange(20).astype("datetime64[s]")
    f = nab.make_file("a/b.csv", ts, np.zeros(20), [("1970-01-01T00:00:15", "1970-01-01T00:00:16")])
    assert f.probation == 3
    alerts = np.zeros(20, dtype=bool)
    alerts[1] = True  # in probation: not a false alarm
    alerts[8] = True
    alerts[16] = True
    m = nab.event_wise([f], {"a/b.csv": alerts})
    assert (m.segments, m.detected, m.false_alarms) == (1, 1, 1)
