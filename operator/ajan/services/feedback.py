"""What operators said about earlier plans, and how it changes the next decision.

A verdict is about an *anomaly signature*: the policy and the set of metrics that were anomalous
(each metric counts only in the direction its objective calls bad, so the set says what went wrong).
A recurring benign pattern (a nightly batch job's CPU and queue bump, say) has one signature; a real
incident that also moves the SLO metric has another.

How feedback changes a decision, for the same policy and signature over the feedback TTL:

* The confidence's odds are multiplied by ``(true positives + 1) / (false positives + 1)``: a
  Laplace-smoothed likelihood ratio of the people's verdicts. One false alarm halves the odds.
* While the signature has false positives and no confirmed incident, an alarm no stronger than
  :data:`ESCALATION_FACTOR` times the strongest rejected one is capped at the ladder's annotate rung:
  it is still recorded and annotated, but no longer pauses or aborts the Rollout.
* Never a missed confirmed incident: one true-positive verdict on the signature lifts the cap, a
  different signature (say the SLO metric joins in) is judged afresh, and so is the same pattern
  grown clearly stronger than anything a person called benign.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from ajan.clients.feedback_store import FeedbackHistory, FeedbackRecord, FeedbackStore
from ajan.clients.kubernetes import KubeStore
from ajan.models import Verdict
from ajan.models.common import rfc3339

#: An alarm this many times stronger (peak z) than the strongest one rejected is judged afresh.
ESCALATION_FACTOR: Final = 1.5
ODDS_EPSILON: Final = 1e-6
#: The signature of an alarm with no anomalous metric (a prediction from correlations alone).
NO_ANOMALY: Final = "-"


class PlanNotFoundError(LookupError):
    """The plan the feedback is about does not exist."""


def signature(metrics: Iterable[str]) -> str:
    """The anomaly signature of a set of anomalous metrics: their names, sorted, joined by ``+``."""
    names = sorted(set(metrics))
    return "+".join(names) if names else NO_ANOMALY


def plan_signature(spec: Mapping[str, Any]) -> str:
    """The signature of a plan: the anomalous metrics of the evidence it was proposed on."""
    anomalies = (spec.get("evidence") or {}).get("anomalies") or []
    return signature(a["metric"] for a in anomalies)


def plan_peak_z(spec: Mapping[str, Any]) -> float:
    """The strongest anomaly of a plan's evidence, as an absolute z-score (0 without any)."""
    anomalies = (spec.get("evidence") or {}).get("anomalies") or []
    return max((abs(float(a["z_score" if "z_score" in a else "zScore"])) for a in anomalies), default=0.0)


def record_of(
    plan: Mapping[str, Any], verdict: Verdict, at: datetime, by: str | None = None, comment: str | None = None
) -> FeedbackRecord:
    """The stored form of a verdict on ``plan`` (a RemediationPlan object)."""
    spec = plan["spec"]
    return FeedbackRecord(
        namespace=plan["metadata"]["namespace"],
        policy=spec["policyRef"]["name"],
        plan=plan["metadata"]["name"],
        signature=plan_signature(spec),
        verdict=verdict,
        at=at,
        peak_z=plan_peak_z(spec),
        confidence=float(spec.get("confidence", 0.0)),
        action=str(spec.get("action", "")),
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


def apply_feedback(confidence: float, peak_z: float, history: FeedbackHistory) -> FeedbackEffect:
    """Adjust one decision's confidence by the verdicts on its signature (see the module docstring).

    Examples
    --------
    >>> apply_feedback(0.8, 5.0, FeedbackHistory()).confidence
    0.8
    """
    tp, fp = history.true_positives, history.false_positives
    if tp == 0 and fp == 0:
        return FeedbackEffect(confidence, capped=False, reason=None)
    ratio = (tp + 1) / (fp + 1)
    # Odds of exactly 0 or 1 would not move: no model is ever that sure.
    p = min(max(confidence, ODDS_EPSILON), 1.0 - ODDS_EPSILON)
    odds = p / (1.0 - p) * ratio
    adjusted = odds / (1.0 + odds)
    stronger = peak_z > ESCALATION_FACTOR * history.max_rejected_z
    capped = tp == 0 and fp > 0 and not stronger
    if capped:
        reason = (
            f"{fp} false-positive verdict(s) on this signature and none confirmed: "
            f"annotating only (peak z {peak_z:.1f}, strongest rejected {history.max_rejected_z:.1f})"
        )
    elif tp == 0 and fp > 0:
        reason = (
            f"{fp} false-positive verdict(s) on this signature, but this alarm is stronger "
            f"(peak z {peak_z:.1f} > {ESCALATION_FACTOR:g} x {history.max_rejected_z:.1f}): acting on it"
        )
    else:
        reason = f"{tp} confirmed and {fp} rejected plan(s) of this signature: confidence x{ratio:.2g} odds"
    return FeedbackEffect(float(min(max(adjusted, 0.0), 1.0)), capped=capped, reason=reason)
