"""The operator-level replay: how incidents are matched with labelled segments, and the generated
policy replayed through `ajan.backtest.replay` on a small labelled series."""

from __future__ import annotations

import numpy as np
import pytest

from ajan.evaluation.replay import LEAD_S, Series, match, policy_for, reference_run, replay_series

STEP = 60.0
T0 = 1.7e9
INTERVAL = 300.0


def _series(
    rows: int, segments: list[tuple[int, int]], start_row: int = 0, values: np.ndarray | None = None
) -> Series:
    labels = np.zeros(rows, dtype=bool)
    for a, b in segments:
        labels[a:b] = True
    ts = T0 + np.arange(rows) * STEP
    x = np.zeros((rows, 1)) if values is None else values
    return Series("test", "s", ("m00",), ts, x, labels, STEP, float(ts[start_row]))


def _t(row: float) -> float:
    return T0 + row * STEP


def test_match_counts_detections_actions_false_ones_and_delays() -> None:
    s = _series(2000, [(500, 600), (1200, 1300)])
    incidents = [
        (_t(520), _t(640), "pause"),  # acts on the first segment, 20 rows late
        (_t(1200) - LEAD_S + 60, _t(1250), "annotate"),  # a plan just inside the lead: planned, not acted
        (_t(900), _t(950), "abort"),  # nothing labelled near: a false action
        (_t(1600), _t(1610), "annotate"),  # a false plan
    ]
    m = match(s, incidents, INTERVAL)
    assert (m.segments, m.planned, m.acted) == (2, 2, 1)
    assert (m.incidents, m.actions, m.false_incidents, m.false_actions) == (4, 2, 2, 1)
    assert m.delays_s == (20 * STEP,) and m.early == 0
    assert m.action_precision == pytest.approx(0.5) and m.action_recall == pytest.approx(0.5)
    assert m.plan_precision == pytest.approx(0.5) and m.plan_recall == pytest.approx(1.0)
    # Normal time inside an incident: the rows of incidents outside the labels.
    normal_inside = (640 - 600) + (950 - 900) + (1610 - 1600) + (1200 - (1200 - LEAD_S / STEP + 1))
    assert m.normal_in_incident_s == pytest.approx(normal_inside * STEP)
    assert m.days == pytest.approx(2000 * STEP / 86400)


def test_an_action_before_the_segment_is_an_early_warning_and_pooled_counts_add() -> None:
    s = _series(1000, [(500, 520)])
    early = match(s, [(_t(480), _t(530), "pause")], INTERVAL)
    assert early.early == 1 and early.delays_s == (-20 * STEP,)
    too_early = match(s, [(_t(500) - LEAD_S - STEP, _t(490), "pause")], INTERVAL)
    assert too_early.acted == 0 and too_early.false_actions == 1
    both = early + too_early
    assert (both.segments, both.acted, both.false_actions) == (2, 1, 1)


def test_confidence_at_opening_is_judged_against_what_the_incident_was() -> None:
    s = _series(2000, [(500, 600), (1200, 1300)])
    incidents = [(_t(520), _t(640), "pause"), (_t(900), _t(950), "pause"), (_t(1210), _t(1250), "abort")]
    ranked = match(s, incidents, INTERVAL, confidences=[0.9, 0.3, 0.8])
    assert ranked.openings == ((0.9, True), (0.3, False), (0.8, True))
    assert ranked.confidence_auc == pytest.approx(1.0)
    # 0.9 and 0.8 real, 0.3 false: each confidence against its bin's share of real incidents.
    assert ranked.confidence_ece == pytest.approx((0.1 + 0.2 + 0.3) / 3)
    inverted = match(s, incidents, INTERVAL, confidences=[0.2, 0.9, 0.1])
    assert inverted.confidence_auc == pytest.approx(0.0)
    pooled = ranked + inverted
    # Pooled, real (0.9, 0.8, 0.2, 0.1) against false (0.3, 0.9): 2.5 of 8 pairs in order, a tie half.
    assert len(pooled.openings) == 6 and pooled.confidence_auc == pytest.approx(2.5 / 8)
    # A reference has no confidence: nothing to judge.
    assert match(s, incidents, INTERVAL).openings == () and np.isnan(
        match(s, incidents, INTERVAL).confidence_auc
    )


def test_reference_run_opens_on_an_alert_and_closes_after_three_quiet_evaluations() -> None:
    x = np.random.default_rng(0).normal(10.0, 1.0, (3000, 1))
    x[2000:2030, 0] += 200.0  # far out: the floor alerts
    s = _series(3000, [(2000, 2030)], start_row=1000, values=x)
    run = reference_run(s, "floor")
    assert len(run.incidents) == 1, run.incidents
    opened, closed, action = run.incidents[0]
    assert _t(2000) <= opened <= _t(2000) + INTERVAL and action == "pause"
    assert closed >= opened + 3 * INTERVAL
    assert run.evaluations == pytest.approx((3000 - 1000) * STEP / INTERVAL, abs=1)
    with pytest.raises(ValueError, match="unknown reference"):
        reference_run(s, "nope")


def test_the_generated_policy_replays_and_acts_on_a_step() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(10.0, 1.0, (1500, 2))
    x[1200:1300, 1] += 30.0
    labels = [(1200, 1300)]
    s = Series("test", "s", ("m00", "m01"), T0 + np.arange(1500) * STEP, x,
               np.isin(np.arange(1500), np.arange(*labels[0])), STEP, _t(600))  # fmt: skip
    spec = policy_for(s)["spec"]
    assert isinstance(spec, dict) and spec["interval"] == "300s" and spec["step"] == "60s"
    run = replay_series(s)
    m = match(s, run.incidents, INTERVAL, run.evaluations, run.insufficient)
    assert m.acted == 1 and m.false_actions == 0, run.incidents
    assert run.evaluations == m.evaluations > 0


def test_verdicts_by_the_labels_stop_a_recurring_harmless_burst_and_not_a_new_incident() -> None:
    rng = np.random.default_rng(2)
    rows = 4320  # three days of one-minute rows
    x = rng.normal(10.0, 1.0, (rows, 2))
    for burst in range(900, 4000, 360):  # a batch job every six hours: m00 jumps, nobody labels it
        x[burst : burst + 10, 0] += 30.0
    x[4100:4200, 1] += 30.0  # the incident: another metric
    s = Series("test", "s", ("m00", "m01"), T0 + np.arange(rows) * STEP, x,
               np.isin(np.arange(rows), np.arange(4100, 4200)), STEP, _t(600))  # fmt: skip
    plain, judged = (replay_series(s, verdicts=v) for v in (False, True))
    before = match(s, plain.incidents, INTERVAL, plain.evaluations, plain.insufficient)
    after = match(s, judged.incidents, INTERVAL, judged.evaluations, judged.insufficient)
    assert before.acted == after.acted == 1, (plain.incidents, judged.incidents)
    assert before.false_actions >= 3, plain.incidents
    # Rejected once, the burst is only annotated from then on (verdicts live seven days).
    assert after.false_actions == 1, judged.incidents
