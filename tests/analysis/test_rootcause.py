"""Tests of :mod:`ajan.analysis.rootcause`: z-score ranking and level-shift ranking."""

from __future__ import annotations

import numpy as np
import pytest

from ajan.analysis.rootcause import rank_level_shifts, rank_root_causes, reference_scale, traverse_call_graph


def test_known_answer() -> None:
    z = np.zeros((3, 50))
    z[1, 20:40] = 9.0  # off for the whole interval, from its first point
    z[2, 25:40] = -9.0  # as far off, but joins 5 points later (sign does not matter)
    z[0, 30:40] = 3.0  # half the interval, mildly
    res = rank_root_causes(z, 20, 40)
    assert res.order.tolist() == [1, 2, 0]
    # Each metric's |z| in [20, 40) is a single non-zero value on at least a quarter of the points, so
    # its upper quantiles (upper quartile up to the max) are that value.
    np.testing.assert_allclose(res.magnitude, [3.0, 9.0, 9.0])
    assert res.onset.tolist() == [30, 20, 25]  # absolute indices of the first |z| >= 3
    assert 0.0 < res.score[0] < res.score[2] < res.score[1] < 1.0
    assert rank_root_causes(z, 25, 40).score[1] == rank_root_causes(z, 25, 40).score[2]  # joined together


def test_score_is_one_half_at_z_half_from_the_first_point() -> None:
    z = np.zeros((2, 30))
    z[0, 10:] = 6.0
    z[1, 10:] = 4.0
    res = rank_root_causes(z, 10, 30)
    assert res.score[0] == pytest.approx(0.5)
    assert rank_root_causes(z, 10, 30, z_half=4.0).score[1] == pytest.approx(0.5)


def test_a_late_or_never_crossing_metric_is_discounted() -> None:
    z = np.zeros((2, 30))
    z[0, 10:30] = 2.0  # below the onset threshold (6 / 2 = 3) throughout
    res = rank_root_causes(z, 10, 30)
    assert res.onset.tolist() == [-1, -1]
    assert res.score[1] == 0.0 and res.score[0] > 0.0
    # The same deviation counted as crossing at the first point scores higher ...
    crossing = rank_root_causes(z, 10, 30, onset_z=1.0)
    assert crossing.onset[0] == 10 and crossing.score[0] > res.score[0]
    # ... and without the onset weight the onset does not matter.
    assert rank_root_causes(z, 10, 30, onset_weight=0.0).score[0] == pytest.approx(
        rank_root_causes(z, 10, 30, onset_z=1.0, onset_weight=0.0).score[0]
    )


def test_ties_keep_index_order_and_nan_is_no_evidence() -> None:
    z = np.zeros((4, 20))
    z[[1, 3], 5:] = 7.0
    z[2] = np.nan
    res = rank_root_causes(z, 5, 20)
    assert res.order.tolist() == [1, 3, 0, 2]
    assert res.score[2] == 0.0 and res.onset[2] == -1


@pytest.mark.parametrize(("start", "end"), [(-1, 10), (10, 10), (12, 10), (0, 51)])
def test_bad_interval_raises(start: int, end: int) -> None:
    with pytest.raises(ValueError, match="start"):
        rank_root_causes(np.zeros((2, 50)), start, end)


def test_bad_shape_raises() -> None:
    with pytest.raises(ValueError, match="shaped"):
        rank_root_causes(np.zeros(50), 0, 10)


def test_whole_range_is_allowed() -> None:
    z = np.zeros((2, 50))
    z[1, 49] = 9.0
    res = rank_root_causes(z, 0, 50)
    assert res.onset.tolist() == [-1, 49]


# --- rank_level_shifts: judged against the level just before the interval -------------------------


def _noise(seed: int, metrics: int, rows: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 1.0, (metrics, rows))


def test_level_shift_known_answer() -> None:
    x = np.zeros((3, 10))
    x[0, 5:] = 2.0  # two spreads up
    x[1, 5:] = -6.0  # six spreads down: the sign does not matter
    ref = np.tile([0.0, 1.0, 2.0, 3.0], (3, 1))  # MAD 1.4826, SD 1.29: spread 1.4826
    res = rank_level_shifts(x, 5, 10, reference=ref)
    assert res.order.tolist() == [1, 0, 2]
    np.testing.assert_allclose(res.level, 0.0)
    np.testing.assert_allclose(res.deviation, [2.0 / 1.4826, 6.0 / 1.4826, 0.0], rtol=1e-4)
    np.testing.assert_allclose(res.score, res.deviation / (res.deviation + 6.0))  # z_half 6 by default


def test_the_reference_gives_the_spread_never_the_level() -> None:
    # A reference recorded at another traffic level (every metric 40 higher) ranks exactly as one at
    # today's level: that is what lets a healthy day from another week serve as the reference.
    x = _noise(0, 4, 12)
    x[2, 4:] += 7.0
    ref = _noise(1, 4, 300)
    here = rank_level_shifts(x, 4, 12, reference=ref)
    elsewhere = rank_level_shifts(x, 4, 12, reference=ref + 40.0)
    np.testing.assert_allclose(here.score, elsewhere.score)
    assert here.order[0] == 2


def test_the_level_is_the_median_of_the_last_rows_before() -> None:
    x = np.array([[100.0, 1.0, 1.0, 1.0, 1.0, 5.0, 5.0]])
    ref = np.array([[0.0, 2.0, 0.0, 2.0]])
    assert rank_level_shifts(x, 5, 7, reference=ref, level_rows=4).level[0] == 1.0
    assert rank_level_shifts(x, 5, 7, reference=ref, level_rows=5).level[0] == 1.0  # median resists 100
    with pytest.raises(ValueError, match="level_rows"):
        rank_level_shifts(x, 5, 7, reference=ref, level_rows=0)


def test_a_metric_that_never_moved_before_ranks_first_when_it_moves() -> None:
    # Availability at 100 % for the whole reference, 99 % now, beside a latency 10 spreads up: the
    # metric with no spread at all has moved further than anything a spread can measure.
    ref = np.vstack([np.full(200, 100.0), _noise(2, 1, 200)[0]])
    x = np.array([[100.0, 100.0, 99.0, 99.0], [0.0, 0.0, 10.0, 10.0]])
    res = rank_level_shifts(x, 2, 4, reference=ref)
    assert res.order.tolist() == [0, 1]
    assert res.score[0] > 0.99 and res.score[1] > 0.5
    flat = np.array([[100.0, 100.0, 100.0, 100.0], [0.0, 0.0, 10.0, 10.0]])
    still = rank_level_shifts(flat, 2, 4, reference=ref)
    assert still.score[0] == 0.0  # not moving is no evidence, whatever the spread


def test_without_reference_the_rows_before_give_the_spread() -> None:
    x = np.array([[1.0, 3.0, 1.0, 3.0, 2.0, 12.0], [5.0, 5.5, 5.0, 5.5, 5.0, 5.0]])
    res = rank_level_shifts(x, 5, 6)
    assert res.order.tolist() == [0, 1]
    assert res.deviation[0] > 5.0 and res.deviation[1] < 2.0


def test_missing_samples_are_no_evidence() -> None:
    x = _noise(3, 3, 10)
    x[0, 6:] = np.nan  # nothing in the interval
    x[1, :6] = np.nan  # no level before it
    x[2, 6:] += 9.0
    res = rank_level_shifts(x, 6, 10, reference=_noise(4, 3, 100))
    assert res.score[0] == 0.0 and res.score[1] == 0.0 and res.order[0] == 2


@pytest.mark.parametrize(("start", "end"), [(0, 5), (5, 5), (3, 11)])
def test_level_shift_needs_a_row_before_and_an_interval(start: int, end: int) -> None:
    with pytest.raises(ValueError, match="a row before the interval"):
        rank_level_shifts(np.zeros((2, 10)), start, end)


def test_level_shift_refuses_without_any_spread_to_measure_in() -> None:
    with pytest.raises(ValueError, match="two finite reference samples"):
        rank_level_shifts(np.ones((2, 4)), 1, 4)  # one row before, no reference
    with pytest.raises(ValueError, match="reference has 3 metrics"):
        rank_level_shifts(np.ones((2, 4)), 2, 4, reference=np.ones((3, 9)))


def test_reference_scale_takes_the_larger_of_mad_and_sd() -> None:
    spiky = np.r_[np.zeros(95), np.full(5, 10.0)]  # MAD 0, SD 2.19
    normal = _noise(5, 1, 100)[0]  # both about 1
    scale = reference_scale(np.vstack([spiky, normal, [1.0] + [np.nan] * 99]))
    assert scale[0] == pytest.approx(np.std(spiky, ddof=1))
    assert scale[1] == pytest.approx(1.0, abs=0.3)
    assert np.isnan(scale[2])  # one sample: no spread


# --- traverse_call_graph: where along the calls from the symptom the trouble starts -----------------


def test_traversal_puts_the_deepest_anomalous_node_first() -> None:
    calls = {"web": ["cart"], "cart": ["db"], "db": []}
    ranked = traverse_call_graph({"web": 0.9, "cart": 0.8, "db": 0.6}, calls, "web")
    # Every node is anomalous, but only db's callees are all quiet: web and cart are its victims.
    assert max(ranked, key=ranked.__getitem__) == "db"
    assert ranked == {"web": 0.9, "cart": 0.8, "db": 1.6}


def test_traversal_ignores_nodes_the_symptom_cannot_reach() -> None:
    calls = {"web": ["cart"], "batch": ["db"]}
    ranked = traverse_call_graph({"web": 0.7, "cart": 0.2, "batch": 0.99, "db": 0.99}, calls, "web")
    assert ranked["batch"] == -1.0 and ranked["db"] == -1.0  # louder, but not on the symptom's path
    assert ranked["web"] == 1.7  # its only callee is quiet: the trouble starts at web itself


def test_traversal_threshold_and_cycles() -> None:
    calls = {"a": ["b"], "b": ["a"]}  # services that call each other: no infinite walk
    assert traverse_call_graph({"a": 0.4, "b": 0.45}, calls, "a") == {
        "a": 0.4,
        "b": 0.45,
    }  # nothing anomalous
    assert traverse_call_graph({"a": 0.4, "b": 0.45}, calls, "a", anomalous=0.42) == {"a": 0.4, "b": 1.45}
    with pytest.raises(ValueError, match="symptom node 'c'"):
        traverse_call_graph({"a": 0.4}, calls, "c")


def test_without_a_row_before_the_reference_gives_the_level() -> None:
    # An export that starts with the incident: the reference's median is the only level there is.
    ref = np.tile([9.0, 10.0, 11.0], (2, 40))
    x = np.array([[30.0, 30.0], [10.0, 10.0]])
    res = rank_level_shifts(x, 0, 2, reference=ref)
    assert res.level.tolist() == [10.0, 10.0] and res.order.tolist() == [0, 1]
