"""How verdicts change a decision: pure, no servers."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from ajan.clients.feedback_store import FeedbackHistory, FeedbackRecord
from ajan.models import Action, Verdict
from ajan.services import feedback
from ajan.services.assessment import Assessment, assess
from ajan.services.feedback import (
    DECISIVE_SCORE,
    ESCALATION_FACTOR,
    apply_feedback,
    decisive_metrics,
    refine,
    signature,
)
from support.windows import healthy, spec, window

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


def test_a_marginal_anomaly_beside_a_rejected_pattern_is_not_news() -> None:
    """A flaky metric just past the threshold rides along with the rejected pattern: still capped. The
    same metric decisively anomalous is news."""
    alarm = {"errors": 0.3, "latency": 0.05}
    rejected = verdict(FP, errors=0.3)
    marginal = feedback.relevant(FeedbackHistory((rejected,)), signature(alarm), decisive={"errors"})
    effect = apply_feedback(0.9, alarm, marginal, decisive={"errors"})
    assert effect.capped
    assert effect.reason is not None
    assert "latency also moved, but too little (anomaly score under 0.9) to make this alarm" in effect.reason
    news = feedback.relevant(FeedbackHistory((rejected,)), signature(alarm), decisive={"errors", "latency"})
    assert news.records == ()


def test_a_marginal_metric_moving_further_does_not_make_the_alarm_stronger() -> None:
    alarm = {"errors": 0.3, "latency": 0.05}
    history = relevant(alarm, verdict(FP, errors=0.3, latency=0.02))
    assert apply_feedback(0.9, alarm, history, decisive={"errors"}).capped
    assert not apply_feedback(0.9, alarm, history, decisive={"errors", "latency"}).capped


def test_a_marginal_alarm_on_metrics_a_rejection_never_involved_is_judged_afresh() -> None:
    alarm = {"latency": 0.05}
    assert (
        feedback.relevant(
            FeedbackHistory((verdict(FP, errors=0.3),)), signature(alarm), decisive=set()
        ).records
        == ()
    )
    # An alarm with no anomalous metric (a prediction from correlations) is judged by the verdicts.
    assert feedback.relevant(
        FeedbackHistory((verdict(FP, errors=0.3),)), signature({}), decisive=set()
    ).records


def test_refine_counts_only_decisive_anomalies_as_news() -> None:
    """Through a real assessment: the error-rate burst a person rejected, now with the latency just
    past the threshold beside it, is capped; the latency decisively anomalous makes it news."""
    v = healthy()
    v[-10:, 1] *= 20.0  # the error ratio jumps twentyfold: decisive
    assessed = assess(spec(), window(v))
    assert decisive_metrics(assessed) == {"errors"}
    errors = assessed.evidence.anomalies[0]
    assert errors.metric == "errors"

    def with_latency(score: float) -> Assessment:
        latency = errors.model_copy(update={"metric": "latency", "value": 0.12, "baseline": 0.1})
        evidence = assessed.evidence.model_copy(update={"anomalies": [errors, latency]})
        return dataclasses.replace(
            assessed, evidence=evidence, metric_scores={**assessed.metric_scores, "latency": score}
        )

    shifts = {errors.metric: abs(errors.value - errors.baseline)}
    history = FeedbackHistory((verdict(FP, **shifts),))
    ladder = spec().remediation.ladder
    _, capped = refine(with_latency(0.6), ladder, history)
    assert all(step.action is Action.ANNOTATE for step in capped)
    refined, afresh = refine(with_latency(DECISIVE_SCORE), ladder, history)
    assert afresh == list(ladder) and refined.evidence.feedback is None
