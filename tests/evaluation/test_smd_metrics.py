"""Known-answer tests of the SMD scoring rules and of the label parsing."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ajan.evaluation import SHARED_DATA
from ajan.evaluation.smd import (
    best_threshold_f1,
    event_metrics,
    hit_rate,
    load_machine,
    parse_interpretation,
    runs,
    segment_hit,
)

SMD = SHARED_DATA / "smd"


def _b(*xs: int) -> np.ndarray:
    return np.array(xs, dtype=bool)


# --- event_metrics -----------------------------------------------------------------


def test_alert_run_touching_no_segment_is_one_false_alarm() -> None:
    labels = _b(0, 0, 0, 0, 0, 1, 1, 0)
    alerts = _b(0, 1, 1, 1, 0, 0, 0, 0)
    m = event_metrics(alerts, labels)
    assert (m.segments, m.detected, m.false_alarms) == (1, 0, 1)
    assert m.precision == 0.0 and m.recall == 0.0 and m.f1 == 0.0


def test_alert_run_ending_right_before_a_segment_is_a_false_alarm() -> None:
    # Adjacent is not inside: the run shares no row with the segment.
    m = event_metrics(_b(1, 1, 0, 0, 0), _b(0, 0, 1, 1, 0))
    assert (m.detected, m.false_alarms) == (0, 1)


def test_two_alerts_in_one_segment_are_one_detection() -> None:
    m = event_metrics(_b(0, 1, 0, 1, 0), _b(0, 1, 1, 1, 0))
    assert (m.segments, m.detected, m.false_alarms) == (1, 1, 0)
    assert m.precision == 1.0 and m.recall == 1.0 and m.f1 == 1.0


def test_run_overlapping_a_segment_and_extending_beyond_is_not_a_false_alarm() -> None:
    labels = _b(0, 0, 1, 1, 0, 0, 0)
    alerts = _b(0, 1, 1, 1, 1, 1, 0)
    m = event_metrics(alerts, labels)
    assert (m.detected, m.false_alarms) == (1, 0)
    # ... but its normal rows are counted: rows 1, 4, 5 of the 5 normal rows.
    assert (m.normal_points, m.normal_flagged_points) == (5, 3)
    assert m.normal_flagged == pytest.approx(3 / 5)


def test_one_run_across_two_segments_detects_both() -> None:
    m = event_metrics(_b(0, 1, 1, 1, 1, 0), _b(0, 1, 0, 0, 1, 0))
    assert (m.segments, m.detected, m.false_alarms) == (2, 2, 0)


def test_precision_recall_f1_known_answer() -> None:
    #          seg A      FA     seg B (missed)   FA     seg C
    labels = _b(1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 0)
    alerts = _b(0, 1, 0, 1, 0, 0, 0, 0, 1, 1, 0, 1, 1)
    m = event_metrics(alerts, labels)
    assert (m.segments, m.detected, m.false_alarms) == (3, 2, 2)
    assert m.precision == pytest.approx(2 / 4)
    assert m.recall == pytest.approx(2 / 3)
    assert m.f1 == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    # Normal rows: 2,3,4,7,8,9,10,12 -> flagged 3,8,9,12.
    assert (m.normal_points, m.normal_flagged_points) == (8, 4)
    assert m.normal_flagged == pytest.approx(0.5)


def test_no_alert_at_all_scores_zero_not_nan() -> None:
    m = event_metrics(np.zeros(6, dtype=bool), _b(0, 1, 1, 0, 0, 0))
    assert (m.precision, m.recall, m.f1, m.normal_flagged) == (0.0, 0.0, 0.0, 0.0)


def test_event_metrics_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError):
        event_metrics(np.zeros(3, dtype=bool), np.zeros(4, dtype=bool))


def test_runs_end_exclusive() -> None:
    s, e = runs(_b(1, 1, 0, 1, 0, 1))
    assert s.tolist() == [0, 3, 5] and e.tolist() == [2, 4, 6]


# --- best_threshold_f1 ---------------------------------------------------------------


def test_best_threshold_excludes_the_alert_everywhere_blind_spot() -> None:
    scores = np.array([0.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    labels = _b(0, 1, 0, 0, 1, 0)
    best = best_threshold_f1(scores, labels)
    assert best.threshold == 1.0
    assert best.event.f1 == pytest.approx(2 * 1.0 * 0.5 / 1.5)
    # Without the cap the all-alert threshold wins with a meaningless F1 of 1.
    assert best_threshold_f1(scores, labels, max_normal_flagged=1.0).event.f1 == 1.0


def test_best_threshold_point_f1_known_answer() -> None:
    scores = np.array([0.1, 0.9, 0.8, 0.2, 0.7, 0.3])
    labels = _b(0, 1, 1, 0, 0, 0)
    best = best_threshold_f1(scores, labels)
    assert best.point_f1 == 1.0 and best.point_threshold == 0.8
    assert best.threshold == 0.9 and best.event.f1 == 1.0


# --- HitRate -------------------------------------------------------------------------


def test_hit_rate_uses_ceil_of_p_times_truth() -> None:
    scores = np.linspace(1.0, 0.0, 8)  # metric 0 ranks first, metric 7 last
    truth = (0, 4, 7)
    # P=150: ceil(4.5) = 5 slots -> metrics 0..4 -> 0 and 4 found. Floor or round
    # half to even would give 4 slots and find only metric 0.
    assert segment_hit(scores, truth, 150) == pytest.approx(2 / 3)
    # P=100: 3 slots -> metrics 0..2 -> only 0.
    assert segment_hit(scores, truth, 100) == pytest.approx(1 / 3)


def test_hit_rate_exact_product_is_not_rounded_up() -> None:
    scores = np.linspace(1.0, 0.0, 6)
    # 1.5 * 2 = 3 slots exactly: metrics 0..2, metric 3 is out.
    assert segment_hit(scores, (0, 3), 150) == pytest.approx(1 / 2)


def test_hit_rate_slots_capped_at_metric_count() -> None:
    assert segment_hit([0.3, 0.2, 0.1], (0, 1, 2), 150) == 1.0


def test_hit_rate_ties_count_in_expectation() -> None:
    # Every score equal: 2 slots among 4 metrics -> each true metric in with p = 1/2.
    assert segment_hit(np.ones(4), (1, 2), 100) == pytest.approx(0.5)
    # Metric 0 clearly first, then a three-way tie for the last slot with one truth.
    assert segment_hit([0.9, 0.5, 0.5, 0.5], (0, 3), 100) == pytest.approx((1 + 1 / 3) / 2)


def test_hit_rate_nan_ranks_last() -> None:
    assert segment_hit([np.nan, 0.1, 0.2], (0,), 100) == 0.0


def test_hit_rate_averages_over_segments() -> None:
    interpretation = [(0, 5, (0,)), (10, 20, (1, 2))]
    # Segment 1: metric 0 first -> 1. Segment 2: 2 slots = metrics 1 and 0 -> 1 of 2.
    rankings = [np.array([0.9, 0.1, 0.0]), np.array([0.5, 0.9, 0.1])]
    assert hit_rate(rankings, interpretation, 100) == pytest.approx((1.0 + 0.5) / 2)
    with pytest.raises(ValueError):
        hit_rate(rankings[:1], interpretation, 100)
    assert math.isnan(hit_rate([], [], 100))


# --- interpretation_label parsing ------------------------------------------------------


def test_parse_interpretation_known_answer() -> None:
    text = "20-25:3,1\n\n5-9:38\n"
    assert parse_interpretation(text) == [(5, 9, (37,)), (20, 25, (0, 2))]


@pytest.mark.parametrize("bad", ["5-9", "9-5:1", "5-9:0", "a-b:1"])
def test_parse_interpretation_rejects_malformed_lines(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_interpretation(bad)


@pytest.mark.skipif(
    not (SMD / "interpretation_label" / "machine-1-2.txt").is_file(),
    reason=f"SMD data not found at {SMD} (the shared/ directory next to the repository)",
)
def test_interpretation_end_is_exclusive_on_real_machine() -> None:
    m = load_machine(SMD, "1-2")
    assert m.test.shape == (m.labels.shape[0], 38) and m.train.shape[1] == 38
    assert len(m.interpretation) == len(m.segments) == 10
    for start, end, _ in m.interpretation:
        # Read as exclusive, every range is exactly one maximal run of label 1;
        # read as inclusive, each would end on a normal row.
        assert (start, end) in m.segments
        assert m.labels[start:end].all()
        assert not m.labels[start - 1] and not m.labels[end]
    # Metric numbers are 1-based in the file: "4629-4688:9,10,11,13,15,18".
    assert m.interpretation[0] == (4629, 4688, (8, 9, 10, 12, 14, 17))
