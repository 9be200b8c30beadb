"""What operators said about earlier plans, and how it changes the next decision.

A verdict is about an *anomaly signature*: the policy and the set of metrics that were anomalous
(each metric counts only in the direction its objective calls bad, so the set says what went wrong).
A recurring benign pattern (a nightly batch job's CPU and queue bump, say) has one signature; a real
incident that also moves the SLO metric has another.

How feedback changes a decision, for the same policy and signature over the feedback TTL:

* The verdicts that count (`relevant`): rejected alarms that share a metric with this one and
  involved every metric *decisively* anomalous in it (a recurring pattern does not push the same
  metrics past the threshold every time, but a metric the rejected alarm never involved, anomalous
  well past the threshold, is news), and confirmed incidents whose metrics are all in this one.
* Decisive (:data:`DECISIVE_SCORE`): a marginal anomaly beside a rejected pattern (a flaky p99 that
  crossed a histogram bucket boundary) is noise riding along, not news; a metric that is news takes
  an anomaly about twice as far past normal as the threshold.
* The confidence's odds are multiplied by ``(true positives + 1) / (false positives + 1)``,
  counting the confirmed incidents this alarm is as strong as and the rejected alarms it is no
  stronger than: a Laplace-smoothed likelihood ratio of the people's verdicts. One false alarm
  halves the odds; an alarm stronger than every rejected one is not discounted.
* An alarm that moves no decisively anomalous metric more than :data:`ESCALATION_FACTOR` times as
  far from its baseline as a rejected one did is capped at the ladder's annotate rung (recorded
  and annotated, but no pause or abort), unless a confirmed incident was about as weak
  (`as_strong`). Distances in the metrics' units, not z-scores: a calibrated z saturates.
* Never a missed confirmed incident: a confirmed incident of the same strength lifts the cap, a new
  metric decisively anomalous in the alarm (say the error rate joins in) is judged afresh, and so
  is the same pattern grown clearly stronger than anything a person called benign.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from ajan.clients.feedback_store import FeedbackHistory, FeedbackRecord, FeedbackStore
from ajan.clients.kubernetes import KubeStore
from ajan.models import Action, Anomaly, LadderStep, RemediationPlan, RemediationPlanStatus, Verdict
from ajan.models.common import rfc3339
from ajan.services.assessment import Assessment, rung_for
from ajan.services.incident import ACTION_RANK

#: An alarm that moves a metric this many times as far from its baseline as a rejected one did is
#: judged afresh; a confirmed incident vouches for alarms at least 1/this as strong.
ESCALATION_FACTOR: Final = 1.5
#: The anomaly score (policy's zHalf scale) at which a metric's anomaly is decisive, enough on its
#: own to make an alarm unlike a rejected one: |z| about 1.8 zHalf (a 2.5x latency at medium), where
#: the default threshold (0.5) lists every metric past zHalf.
DECISIVE_SCORE: Final = 0.9
ODDS_EPSILON: Final = 1e-6
#: The signature of an alarm with no anomalous metric (a prediction from correlations alone).
NO_ANOMALY: Final = "-"


class PlanNotFoundError(LookupError):
    """The plan the feedback is about does not exist."""


def signature(metrics: Iterable[str]) -> str:
    """The anomaly signature of a set of anomalous metrics: their names, sorted, joined by ``+``."""
    names = sorted(set(metrics))
    return "+".join(names) if names else NO_ANOMALY


def signature_metrics(sig: str) -> frozenset[str]:
    """The metrics of a signature (the inverse of `signature`)."""
    return frozenset(name for name in sig.split("+") if name and name != NO_ANOMALY)


def relevant(history: FeedbackHistory, sig: str, decisive: Collection[str] | None = None) -> FeedbackHistory:
    """The verdicts that bear on an alarm of signature ``sig``.

    A rejected alarm bears on it if it involved every metric of this one that is ``decisive``ly
    anomalous (default: every metric), and at least one of its metrics: a recurring pattern does
    not push the same metrics past the threshold every time, so an alarm on part of a rejected
    pattern is that pattern, while a metric the rejected alarm did not involve is news if it is
    decisive (a marginal one is noise riding along). A confirmed incident bears on it if this alarm
    involves every metric the incident did.
    """
    metrics = signature_metrics(sig)
    strong = metrics if decisive is None else metrics & frozenset(decisive)

    def bears(record: FeedbackRecord) -> bool:
        judged = signature_metrics(record.signature)
        if record.verdict is Verdict.FALSE_POSITIVE:
            # No metric at all (a prediction from correlations alone) is judged by the verdicts.
            return strong <= judged and (not metrics or bool(metrics & judged))
        return bool(judged) and judged <= metrics

    return FeedbackHistory(tuple(r for r in history.records if bears(r)))


def _plan_anomalies(plan: RemediationPlan) -> list[Anomaly]:
    """The anomalies of a plan's evidence when proposed and of its latest evidence."""
    latest = plan.current.latest_evidence
    return [*plan.spec.evidence.anomalies, *(latest.anomalies if latest is not None else [])]


def plan_signature(plan: RemediationPlan) -> str:
    """The signature of a plan: every metric anomalous when it was proposed or since."""
    return signature(a.metric for a in _plan_anomalies(plan))


def plan_shifts(plan: RemediationPlan) -> dict[str, float]:
    """Per anomalous metric of a plan, the largest distance from the baseline its evidence and its
    ``status.peakShifts`` show."""
    return merge_shifts(
        shifts((a.metric, a.value, a.baseline) for a in plan.spec.evidence.anomalies),
        status_shifts(plan.current),
    )


def status_shifts(status: RemediationPlanStatus) -> dict[str, float]:
    """The same, from a plan's status alone: its latest evidence and its ``peakShifts``."""
    latest = status.latest_evidence.anomalies if status.latest_evidence is not None else []
    return merge_shifts(
        shifts((a.metric, a.value, a.baseline) for a in latest),
        {p.metric: p.shift for p in status.peak_shifts},
    )


def merge_shifts(*alarms: Mapping[str, float]) -> dict[str, float]:
    """Per metric, the largest shift of any of ``alarms``."""
    out: dict[str, float] = {}
    for alarm in alarms:
        for metric, shift in alarm.items():
            out[metric] = max(out.get(metric, 0.0), shift)
    return out


def shifts(anomalies: Iterable[tuple[str, float, float]]) -> dict[str, float]:
    """Per metric of ``(metric, value, baseline)`` triples, the largest ``|value - baseline|``."""
    out: dict[str, float] = {}
    for metric, value, baseline in anomalies:
        out[metric] = max(out.get(metric, 0.0), abs(value - baseline))
    return out


def assessment_shifts(assessment: Assessment) -> dict[str, float]:
    """Per anomalous metric of an assessment, its distance from the baseline."""
    return shifts((a.metric, a.value, a.baseline) for a in assessment.evidence.anomalies)


def record_of(
    plan: RemediationPlan, verdict: Verdict, at: datetime, by: str | None = None, comment: str | None = None
) -> FeedbackRecord:
    """The stored form of a verdict on ``plan``."""
    return FeedbackRecord(
        namespace=str(plan.metadata["namespace"]),
        policy=plan.spec.policy_ref.name,
        plan=plan.name,
        signature=plan_signature(plan),
        verdict=verdict,
        at=at,
        shifts=plan_shifts(plan),
        confidence=float(plan.spec.confidence),
        action=plan.spec.action.value,
        by=by,
        comment=comment,
    )


async def submit_feedback(
    kube: KubeStore,
    store: FeedbackStore,
    namespace: str,
    plan_name: str,
    verdict: Verdict,
    at: datetime,
    *,
    by: str | None = None,
    comment: str | None = None,
) -> FeedbackRecord:
    """Record a verdict from outside the cluster (the feedback API): Redis first, then the plan.

    Redis first, because it is what changes later decisions: when it is down this raises
    `ajan.clients.feedback_store.FeedbackUnavailableError` and nothing is written anywhere. The plan's
    ``spec.feedback`` then shows the verdict to ``kubectl`` users and wakes the operator (which, for a
    false positive on an executed pause or abort, reverts it).

    Raises `PlanNotFoundError` when the plan does not exist (or vanishes before its spec is patched).
    """
    plan = await kube.get_plan(namespace, plan_name)
    if plan is None:
        raise PlanNotFoundError(f"remediationplan {namespace}/{plan_name} not found")
    record = record_of(plan, verdict, at, by, comment)
    await store.record(record)
    feedback: dict[str, Any] = {"verdict": verdict.value, "at": rfc3339(at)}
    if by is not None:
        feedback["by"] = by
    if comment is not None:
        feedback["comment"] = comment
    if await kube.patch_plan_spec(namespace, plan_name, {"feedback": feedback}) is None:
        raise PlanNotFoundError(f"remediationplan {namespace}/{plan_name} was deleted")
    return record


@dataclass(frozen=True)
class FeedbackEffect:
    """How the feedback changes one decision.

    confidence: the confidence after the verdicts' likelihood ratio.
    capped: the action may go no further than annotating.
    reason: why, for the plan's evidence and the policy's events (None when nothing changed).
    """

    confidence: float
    capped: bool
    reason: str | None


def refine(
    assessment: Assessment, ladder: Sequence[LadderStep], history: FeedbackHistory
) -> tuple[Assessment, list[LadderStep]]:
    """The assessment and ladder as the verdicts on the assessment's signature change them.

    The operator and the replay (:mod:`ajan.evaluation.feedback_replay`) both decide through this.
    """
    steps = list(ladder)
    decisive = decisive_metrics(assessment)
    history = relevant(history, assessment_signature(assessment), decisive)
    effect = apply_feedback(assessment.confidence, assessment_shifts(assessment), history, decisive)
    if effect.reason is None:
        return assessment, steps
    if effect.capped:
        # Every rung keeps its threshold (so recovery is judged as before) but only annotates: a
        # ladder without its pause rung would read a rejected incident as over.
        steps = [
            step.model_copy(update={"action": Action.ANNOTATE})
            if ACTION_RANK[step.action] > ACTION_RANK[Action.ANNOTATE]
            else step
            for step in steps
        ]
    evidence = assessment.evidence.model_copy(update={"feedback": effect.reason})
    refined = dataclasses.replace(
        assessment, confidence=effect.confidence, rung=rung_for(effect.confidence, steps), evidence=evidence
    )
    return refined, steps


def decisive_metrics(assessment: Assessment) -> frozenset[str]:
    """The anomalous metrics of an assessment whose score reaches :data:`DECISIVE_SCORE`."""
    return frozenset(
        a.metric
        for a in assessment.evidence.anomalies
        if assessment.metric_scores.get(a.metric, 0.0) >= DECISIVE_SCORE
    )


def assessment_signature(assessment: Assessment) -> str:
    """The signature of what an assessment found anomalous."""
    return signature(a.metric for a in assessment.evidence.anomalies)


def no_stronger(alarm: Mapping[str, float], than: Mapping[str, float]) -> bool:
    """Whether no metric of ``alarm`` moved more than :data:`ESCALATION_FACTOR` times as far as in
    ``than`` (metrics ``than`` lacks are not compared)."""
    return all(shift <= ESCALATION_FACTOR * than[m] for m, shift in alarm.items() if m in than)


def as_strong(alarm: Mapping[str, float], than: Mapping[str, float]) -> bool:
    """Whether ``alarm`` moved every metric of ``than`` at least 1/:data:`ESCALATION_FACTOR` as far."""
    return all(m in alarm and alarm[m] * ESCALATION_FACTOR >= shift for m, shift in than.items())


def apply_feedback(
    confidence: float,
    alarm: Mapping[str, float],
    history: FeedbackHistory,
    decisive: Collection[str] | None = None,
) -> FeedbackEffect:
    """Adjust one decision by the verdicts that bear on it (see the module docstring).

    ``alarm``: this alarm's distance from the baseline per anomalous metric (`assessment_shifts`);
    ``history``: only the verdicts that bear on it (`relevant`); ``decisive``: the metrics whose
    growth can make the alarm stronger than a rejected one (default: all of ``alarm``'s).

    Examples
    --------
    >>> apply_feedback(0.8, {"latency": 0.2}, FeedbackHistory()).confidence
    0.8
    """
    # Only verdicts on alarms like this one count: a rejected alarm this one is no stronger than,
    # a confirmed incident this one is as strong as.
    tp = sum(as_strong(alarm, r.shifts) for r in history.records if r.verdict is Verdict.TRUE_POSITIVE)
    # A marginal metric that moved further than in the rejected alarm is still marginal.
    strong = alarm if decisive is None else {m: s for m, s in alarm.items() if m in decisive}
    fp = sum(no_stronger(strong, r.shifts) for r in history.records if r.verdict is Verdict.FALSE_POSITIVE)
    if not history.records:
        return FeedbackEffect(confidence, capped=False, reason=None)
    ratio = (tp + 1) / (fp + 1)
    # Odds of exactly 0 or 1 would not move: no model is ever that sure.
    p = min(max(confidence, ODDS_EPSILON), 1.0 - ODDS_EPSILON)
    odds = p / (1.0 - p) * ratio
    adjusted = confidence if tp == fp else float(min(max(odds / (1.0 + odds), 0.0), 1.0))
    like_rejected, like_confirmed = fp > 0, tp > 0
    capped = like_rejected and not like_confirmed
    if capped:
        marginal = sorted(set(alarm) - set(strong))
        reason = (
            f"like {fp} alarm(s) operators called false positive, no stronger, and like no confirmed "
            f"incident: annotating only (confidence odds x{ratio:.2g})"
            + (
                f"; {', '.join(marginal)} also moved, but too little (anomaly score under "
                f"{DECISIVE_SCORE:g}) to make this alarm stronger than or different from the rejected one"
                if marginal
                else ""
            )
        )
    elif like_confirmed:
        reason = f"like a confirmed incident ({tp} confirmed, {fp} rejected): confidence odds x{ratio:.2g}"
    else:
        reason = (
            f"stronger than the {history.false_positives} alarm(s) operators rejected (a metric moved "
            f"more than {ESCALATION_FACTOR:g} times as far): judged afresh"
        )
    return FeedbackEffect(adjusted, capped=capped, reason=reason)
