"""How verdicts change a decision: pure, no servers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ajan.clients.feedback_store import FeedbackHistory, FeedbackRecord
from ajan.models import Verdict
from ajan.services import feedback
from ajan.services.feedback import ESCALATION_FACTOR, apply_feedback, signature

AT = datetime(2026, 11, 23, tzinfo=UTC)
FP, TP = Verdict.FALSE_POSITIVE, Verdict.TRUE_POSITIVE


def verdict(kind: Verdict, **shifts: float) -> FeedbackRecord:
    return FeedbackRecord(
        namespace="shop", policy="checkout", plan=f"p-{len(shifts)}", signature=signature(shifts),
        verdict=kind, at=AT, shifts=shifts, confidence=0.8, action="pause",
    )  # fmt: skip


def relevant(alarm: dict[str, float], *records: FeedbackRecord) -> FeedbackHistory:
    return feedback.relevant(FeedbackHistory(records), signature(alarm))


def test_signature_is_the_sorted_set_of_metrics() -> None:
    assert signature(["queue", "cpu", "queue"]) == "cpu+queue"
    assert signature([]) == "-"


def test_without_verdicts_nothing_changes() -> None:
    effect = apply_feedback(0.83, {"cpu": 1.0}, FeedbackHistory())
    assert (effect.confidence, effect.capped, effect.reason) == (0.83, False, None)


def test_part_of_a_rejected_pattern_is_capped_and_its_odds_halved() -> None:
    alarm = {"cpu": 0.3, "latency": 0.05}
    effect = apply_feedback(0.8, alarm, relevant(alarm, verdict(FP, cpu=0.3, latency=0.04, queue=20.0)))
    assert effect.capped
    assert effect.confidence == pytest.approx(2.0 / 3.0)  # odds 4 -> 2
    assert effect.reason is not None and "false positive" in effect.reason


def test_a_new_metric_in_the_alarm_is_judged_afresh() -> None:
    alarm = {"cpu": 0.3, "errors": 0.02, "queue": 20.0}
    assert relevant(alarm, verdict(FP, cpu=0.3, queue=20.0)).records == ()
    assert not apply_feedback(0.8, alarm, relevant(alarm, verdict(FP, cpu=0.3, queue=20.0))).capped


def test_the_same_pattern_grown_stronger_is_judged_afresh_without_discount() -> None:
    rejected = verdict(FP, cpu=0.3, queue=20.0)
    as_before = {"cpu": 0.3 * ESCALATION_FACTOR, "queue": 20.0}
    assert apply_feedback(0.95, as_before, relevant(as_before, rejected)).capped
    grown = {"cpu": 0.3, "queue": 20.0 * ESCALATION_FACTOR + 0.1}
    effect = apply_feedback(0.95, grown, relevant(grown, rejected))
    assert not effect.capped
    assert effect.confidence == 0.95


def test_a_confirmed_incident_as_weak_lifts_the_cap_and_a_much_stronger_one_does_not() -> None:
    alarm = {"cpu": 0.3, "queue": 20.0}
    rejected = verdict(FP, cpu=0.3, queue=20.0)
    assert not apply_feedback(0.8, alarm, relevant(alarm, rejected, verdict(TP, cpu=0.4))).capped
    assert apply_feedback(0.8, alarm, relevant(alarm, rejected, verdict(TP, cpu=0.9))).capped


def test_a_confirmed_incident_with_metrics_this_alarm_lacks_does_not_vouch_for_it() -> None:
    alarm = {"cpu": 0.3, "queue": 20.0}
    assert relevant(alarm, verdict(TP, cpu=0.3, errors=0.02, queue=20.0)).records == ()


def test_confirmations_raise_the_odds() -> None:
    alarm = {"latency": 0.2}
    effect = apply_feedback(0.6, alarm, relevant(alarm, verdict(TP, latency=0.2)))
    assert not effect.capped
    assert effect.confidence == pytest.approx(0.75)  # odds 1.5 -> 3


def test_certainty_still_moves() -> None:
    alarm = {"latency": 0.2}
    assert apply_feedback(1.0, alarm, relevant(alarm, verdict(FP, latency=0.2))).confidence < 1.0
