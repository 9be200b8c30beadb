"""One evaluation of a policy, the same for the operator and for ``ajan backtest``.

Pure: the policy, its metrics' window, its open incident and the operators' live verdicts in; the
assessment (with its advisory severity), the ladder the verdicts left and the incident's decision
out. The operator fetches the window and the verdicts and carries the decision out; the backtest
replays the same function over history, so a backtest is what the operator would have done.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from ajan.analysis.calibration import OPENING_MAP, platt
from ajan.clients.feedback_store import FeedbackHistory
from ajan.models import CorrelationPolicySpec, Incident, LadderStep
from ajan.services.assessment import Assessment, FloatArray, MetricWindow, assess
from ajan.services.feedback import refine
from ajan.services.incident import Decision, decide
from ajan.services.severity import SeverityClassifier, estimate


@dataclass(frozen=True)
class Step:
    """What one evaluation concluded."""

    assessment: Assessment
    """The assessment, refined by the verdicts, with the severity estimate in its evidence."""
    ladder: list[LadderStep]
    """The policy's ladder as the verdicts left it (the one the decision climbed)."""
    decision: Decision


def evaluate(
    policy: str,
    spec: CorrelationPolicySpec,
    window: MetricWindow,
    current_from: float,
    incident: Incident | None,
    at: datetime,
    classifier: SeverityClassifier,
    verdicts: FeedbackHistory | None = None,
    spread: FloatArray | None = None,
) -> Step:
    """Assess ``window`` (scored from ``current_from`` on), apply the verdicts, estimate severity
    (where a plan may show it) and move ``incident`` on.

    Raises
    ------
    InsufficientData
        As :func:`ajan.services.assessment.assess`: nothing is decided without enough data.
    """
    assessment = assess_window(spec, window, current_from, incident_open=incident is not None, spread=spread)
    return conclude(policy, spec, assessment, incident, at, classifier, verdicts)


def assess_window(
    spec: CorrelationPolicySpec,
    window: MetricWindow,
    current_from: float,
    *,
    incident_open: bool,
    spread: FloatArray | None = None,
) -> Assessment:
    """The assessment :func:`evaluate` makes of ``window``: it depends on the window and on whether
    an incident is open, nothing else (so a replay can make the quiet ones ahead, elsewhere).

    Raises
    ------
    InsufficientData
        As :func:`ajan.services.assessment.assess`.
    """
    # Without detail: the drift and the severity, which only a plan shows, cost half of a quiet
    # evaluation, and most evaluations can open no plan.
    return assess(spec, window, current_from, hold=incident_open, spread=spread, detail=False)


def conclude(
    policy: str,
    spec: CorrelationPolicySpec,
    assessment: Assessment,
    incident: Incident | None,
    at: datetime,
    classifier: SeverityClassifier,
    verdicts: FeedbackHistory | None = None,
) -> Step:
    """The rest of :func:`evaluate` once :func:`assess_window` has assessed the window: apply the
    verdicts, estimate severity, move ``incident`` on."""
    ladder = list(spec.remediation.ladder)
    if verdicts is not None:
        # Verdicts cannot lift an assessment left without detail onto a rung: it names no anomalous
        # metric, and only a confirmation of an alarm on metrics it names raises a confidence.
        assessment, ladder = refine(assessment, ladder, verdicts)
    if assessment.features is not None:
        assessment = estimate(assessment, classifier)
    # From the confidence the decision climbs on, the verdicts' refinement included.
    probability = float(platt(assessment.confidence, OPENING_MAP))
    evidence = assessment.evidence.model_copy(update={"probability_real": probability})
    assessment = replace(assessment, evidence=evidence)
    recovery = spec.remediation.recovery_evaluations
    decision = decide(policy, incident, assessment.confidence, ladder, recovery, at)
    return Step(assessment, ladder, decision)
