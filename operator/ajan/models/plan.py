"""RemediationPlan: one proposed action on a Rollout, the evidence for it, and what became of it.

The operator creates a plan, owned by its CorrelationPolicy (an ownerReference, so deleting the
policy collects its plans), when the confidence of a predicted breach reaches a ladder step. What
the plan proposes (target, action, severity, confidence, evidence) is immutable: an approval is
given to exactly that, so a changed proposal is a new plan. People write ``spec.approval`` (approve
mode) and ``spec.feedback`` (was the alarm right?); the operator writes the status.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import AwareDatetime, Field, StrictBool, StrictFloat, StrictStr, StringConstraints

from ajan.models.common import (
    Action,
    Condition,
    Correlation,
    Fraction,
    Generation,
    KubeModel,
    MetricName,
    PolicyRef,
    Rule,
    Severity,
    TargetRef,
    conditions_field,
    immutable,
    section,
)
from ajan.models.policy import RemediationMode


class PlanPhase(StrEnum):
    """Life cycle of a plan. Proposed is the only phase that is not settled or in progress."""

    PROPOSED = "Proposed"
    """Created; waiting for approval (approve mode) or for execution."""
    APPROVED = "Approved"
    """A person approved it (spec.approval.approved true); execution is next."""
    EXECUTING = "Executing"
    """The action is being sent to the Rollout."""
    EXECUTED = "Executed"
    """The action was applied to the Rollout."""
    DRY_RUN = "DryRun"
    """Dry-run mode: the exact patch was recorded in status.dryRunPatch and not sent."""
    REJECTED = "Rejected"
    """A person declined it (spec.approval.approved false)."""
    EXPIRED = "Expired"
    """No approval came within the policy's remediation.approvalTimeout."""
    FAILED = "Failed"
    """The action could not be applied; the conditions say why."""
    SUPERSEDED = "Superseded"
    """A newer plan for the same Rollout replaced it before it ran."""
    RESOLVED = "Resolved"
    """The anomaly ended; nothing more will be done."""


class Anomaly(KubeModel):
    """An anomalous metric at the time of the plan."""

    metric: MetricName
    """Metric name, as in the policy."""

    value: StrictFloat
    """Current value, in the metric's unit."""

    baseline: StrictFloat
    """Typical value in the baseline window, in the metric's unit."""

    stable: StrictFloat | None = None
    """The stable track's current value, when the metric has a stableQuery (the baseline is then
    the stable track's usual level, and the canary is judged by its excess over stable)."""

    z_score: StrictFloat
    """Calibrated z-score of the current value (signed: positive is above normal)."""

    p95: StrictFloat | None = None
    """95th percentile over the recent window, in the metric's unit."""

    p99: StrictFloat | None = None
    """99th percentile over the recent window, in the metric's unit."""

    since: AwareDatetime | None = None
    """Onset: when the metric became anomalous."""


class PredictedImpact(KubeModel):
    """The predicted effect on an SLO metric, with an interval."""

    metric: MetricName
    """SLO metric the prediction is about."""

    expected_z: StrictFloat
    """Expected z-score of the metric, lag seconds from now."""

    low_z: StrictFloat
    """Lower bound of the prediction interval."""

    high_z: StrictFloat
    """Upper bound of the prediction interval."""

    lag_seconds: StrictFloat = Field(ge=0.0)
    """How far ahead the prediction is, in seconds."""

    breach_probability: Fraction
    """Probability that the metric breaches its objective, in [0, 1]."""

    cel_rules = (
        Rule(
            "self.lowZ <= self.expectedZ && self.expectedZ <= self.highZ",
            "expectedZ must lie between lowZ and highZ",
            lambda p: p.low_z <= p.expected_z <= p.high_z,
        ),
    )


class Forecast(KubeModel):
    """When an SLO metric with a threshold is predicted to cross it."""

    metric: MetricName
    """SLO metric, as in the policy."""

    threshold: StrictFloat
    """The metric's threshold, in its unit."""

    value: StrictFloat
    """The metric now (median of its newest samples), in its unit."""

    eta_seconds: Annotated[StrictFloat, Field(ge=0.0)] | None = None
    """Seconds until the forecast crosses the threshold (0: already beyond it); absent when it does
    not within the horizon."""

    eta_low_seconds: Annotated[StrictFloat, Field(ge=0.0)] | None = None
    """Earliest crossing in the 90 % interval; absent when the interval does not reach it."""

    eta_high_seconds: Annotated[StrictFloat, Field(ge=0.0)] | None = None
    """Latest crossing in the 90 % interval; absent when it may not cross within the horizon."""

    horizon_seconds: Annotated[StrictFloat, Field(ge=0.0)]
    """How far ahead the forecast reached."""

    probability: Fraction
    """Probability that the metric is beyond its threshold within the horizon, in [0, 1]."""

    def sentence(self) -> str:
        """The forecast in words, for reports and notifications.

        >>> Forecast(metric="p99", threshold=0.5, value=0.44, eta_seconds=180.0, eta_low_seconds=120.0,
        ...          eta_high_seconds=300.0, horizon_seconds=300.0, probability=0.9).sentence()
        'p99 predicted to cross 0.5 in about 3 min (2 min to 5 min)'
        >>> Forecast(metric="p99", threshold=0.5, value=0.62, eta_seconds=0.0, horizon_seconds=300.0,
        ...          probability=1.0).sentence()
        'p99 is beyond its threshold 0.5 (0.62 now)'
        """
        if self.eta_seconds == 0.0:
            return f"{self.metric} is beyond its threshold {self.threshold:g} ({self.value:.3g} now)"
        within = _in_words(self.horizon_seconds)
        if self.eta_seconds is None:
            if self.eta_low_seconds is None:
                return f"{self.metric} not predicted to cross {self.threshold:g} within {within}"
            return (
                f"{self.metric} may cross {self.threshold:g} within {within} "
                f"(probability {self.probability:.0%})"
            )
        low = _in_words(self.eta_low_seconds or 0.0)
        interval = (
            f"{low} to {_in_words(self.eta_high_seconds)}"
            if self.eta_high_seconds is not None
            else f"{low} or later"
        )
        return (
            f"{self.metric} predicted to cross {self.threshold:g} in about "
            f"{_in_words(self.eta_seconds)} ({interval})"
        )


def _in_words(seconds: float) -> str:
    return f"{seconds / 60.0:.0f} min" if seconds >= 120.0 else f"{seconds:.0f} s"


class Drift(KubeModel):
    """A metric whose distribution moved away from the baseline's."""

    metric: MetricName
    """Metric name, as in the policy."""

    psi: StrictFloat = Field(ge=0.0)
    """Population stability index against the baseline (above 0.2: a real shift)."""

    ks_p_value: Fraction
    """Two-sample Kolmogorov-Smirnov p-value, in [0, 1]."""


#: The most metrics a plan's ``status.peakShifts`` lists (the CRD's maxItems, and where a longer list
#: is cut: :func:`peak_shifts_of`).
MAX_PEAK_SHIFTS: Final = 50


class MetricShift(KubeModel):
    """How far a metric moved from its baseline."""

    metric: MetricName
    """Metric name, as in the policy."""

    shift: Annotated[StrictFloat, Field(ge=0.0)]
    """|value - baseline|, in the metric's unit."""


def peak_shifts_of(peaks: Mapping[str, float]) -> list[MetricShift]:
    """``status.peakShifts`` for the largest shift of each metric: by metric name, rounded to 9 digits
    (the noise of float sums is not a change worth a write), cut to :data:`MAX_PEAK_SHIFTS`."""
    ordered = sorted(peaks.items())[:MAX_PEAK_SHIFTS]
    return [MetricShift(metric=metric, shift=round(float(shift), 9)) for metric, shift in ordered]


class SeverityEstimate(KubeModel):
    """The severity classifier's calibrated probabilities for this decision."""

    info: Fraction
    """Probability that nothing needs doing (no incident now or within a window)."""

    warning: Fraction
    """Probability that an incident is coming (within a window) but has not begun."""

    critical: Fraction
    """Probability that an incident is under way."""

    source: Literal["model", "rules"]
    """model: the shipped TFLite classifier; rules: the documented fallback (the model could not load)."""


class Evidence(KubeModel):
    """Why the plan was proposed: what ajan saw when it decided."""

    anomalies: list[Anomaly] = Field(default_factory=list, max_length=50)
    """Anomalous metrics, most anomalous first."""

    correlations: list[Correlation] = Field(default_factory=list, max_length=100)
    """Significant relations between metrics, strongest first."""

    predicted_impact: list[PredictedImpact] = Field(default_factory=list, max_length=50)
    """Predicted effect on the SLO metrics."""

    drift: list[Drift] = Field(default_factory=list, max_length=50)
    """Metrics whose distribution drifted from the baseline."""

    forecasts: list[Forecast] = Field(default_factory=list, max_length=50)
    """When each SLO metric with a threshold is predicted to cross it."""

    stale_metrics: list[MetricName] = Field(default_factory=list, max_length=50)
    """Metrics with no recent sample, left out of this decision (the others raised it alone)."""

    severity: SeverityEstimate | None = None
    """The severity classifier's probabilities (absent on plans made before it existed)."""

    probability_real: Fraction | None = None
    """How often an incident opened at this confidence was real when ajan's operator was replayed
    over labelled public data: the confidence through a two-parameter calibration map fitted on SMD
    and checked on NAB (docs/accuracy.md). A guide for the person judging the plan; the ladder climbs
    on the confidence (absent on plans made before it existed)."""

    feedback: Annotated[StrictStr, StringConstraints(max_length=1024)] | None = None
    """How operators' verdicts on earlier plans of the same anomaly signature changed this decision."""


class GitOpsManager(StrEnum):
    """A GitOps controller that owns the Rollout's manifest."""

    ARGOCD = "argocd"
    FLUX = "flux"


class GitOps(KubeModel):
    """The Rollout is synced from Git: what that means for the action."""

    manager: GitOpsManager
    """Which controller syncs the Rollout: argocd or flux."""

    source: Annotated[StrictStr, StringConstraints(max_length=1024)]
    """The label or annotation that says so, with its value."""

    note: Annotated[StrictStr, StringConstraints(max_length=4096)]
    """What the sync means for this plan's action."""

    suggestion: Annotated[StrictStr, StringConstraints(max_length=4096)]
    """What to do in Git so that the next sync does not undo the remediation."""


Person = Annotated[StrictStr, StringConstraints(min_length=1, max_length=253)]


class Approval(KubeModel):
    """A person's decision on a plan (approve mode)."""

    approved: StrictBool
    """True to execute the plan, false to reject it."""

    by: Person
    """Who decided (a user name or e-mail address)."""

    at: AwareDatetime | None = None
    """When the decision was made."""


class Verdict(StrEnum):
    """Was the alarm right? Feeds the operator's confidence calibration."""

    TRUE_POSITIVE = "true-positive"
    FALSE_POSITIVE = "false-positive"


class Feedback(KubeModel):
    """A person's verdict on the plan, after the fact."""

    verdict: Verdict
    """true-positive: a real problem; false-positive: a false alarm."""

    by: Person | None = None
    """Who gave the verdict."""

    comment: Annotated[StrictStr, StringConstraints(max_length=4096)] | None = None
    """Free text: what really happened."""

    at: AwareDatetime | None = None
    """When the verdict was given."""


class RemediationPlanSpec(KubeModel):
    """What a plan proposes (immutable) and what people said about it (approval, feedback)."""

    policy_ref: PolicyRef = Field(json_schema_extra=immutable("policyRef"))
    """The CorrelationPolicy that proposed the plan (also its owner)."""

    target_ref: TargetRef = Field(json_schema_extra=immutable("targetRef"))
    """The Argo Rollout the action is for."""

    action: Action = Field(json_schema_extra=immutable("action"))
    """Action on the Rollout: none, annotate, pause, abort or rollback."""

    severity: Severity = Field(json_schema_extra=immutable("severity"))
    """Severity: info, warning or critical."""

    confidence: Fraction = Field(json_schema_extra=immutable("confidence"))
    """Confidence in the predicted breach, in [0, 1]."""

    evidence: Evidence = section(Evidence, immutable("evidence"))
    """What ajan saw when it decided."""

    mode: RemediationMode = Field(default=RemediationMode.DRY_RUN, json_schema_extra=immutable("mode"))
    """The policy's mode when the plan was proposed: auto, approve or dry-run."""

    git_ops: GitOps | None = Field(default=None, json_schema_extra=immutable("gitOps"))
    """Set when a GitOps controller syncs the Rollout: a note and a Git-side suggestion."""

    approval: Approval | None = None
    """A person's decision (approve mode)."""

    feedback: Feedback | None = None
    """A person's verdict on the alarm, after the fact."""


class RemediationPlanStatus(KubeModel):
    """Observed state of a RemediationPlan, written by the operator."""

    phase: PlanPhase | None = None
    """Life cycle: Proposed; then Approved, Rejected or Expired (approve mode); Executing; Executed or
    Failed (DryRun in dry-run mode: recorded, not sent). Superseded when a newer plan replaces it,
    Resolved when the anomaly ends."""

    conditions: list[Condition] = conditions_field("Details of the current phase.")

    proposed_at: AwareDatetime | None = None
    """When the plan was proposed."""

    executed_at: AwareDatetime | None = None
    """When the action was applied (or recorded, in dry-run mode)."""

    resolved_at: AwareDatetime | None = None
    """When the plan reached a final phase."""

    dry_run_patch: Annotated[StrictStr, StringConstraints(max_length=65536)] | None = None
    """The exact patches that were (or, in dry-run mode, would have been) sent to the Rollout, one
    JSON document per line, in the order sent: the action's, then the annotations naming the plan."""

    patch_request: Annotated[StrictStr, StringConstraints(max_length=1024)] | None = None
    """Where each of those patches goes and how, one line each: method, path (with subresource) and
    content type."""

    expires_at: AwareDatetime | None = None
    """When a plan waiting for approval expires (approve mode)."""

    observed_generation: Generation | None = None
    """The metadata.generation of the spec last acted on."""

    confidence: Fraction | None = None
    """Latest confidence of the incident while this plan is its current one, in [0, 1]."""

    peak_confidence: Fraction | None = None
    """Highest confidence of the incident while this plan is its current one, in [0, 1]."""

    last_evaluation_time: AwareDatetime | None = None
    """When the evidence below was last refreshed."""

    latest_evidence: Evidence | None = None
    """The evidence as it grew after the plan was proposed (spec.evidence stays as proposed)."""

    peak_shifts: list[MetricShift] = Field(default_factory=list, max_length=MAX_PEAK_SHIFTS)
    """How far each anomalous metric moved from its baseline at most while this plan was current:
    how strong the alarm was, which operators' verdicts are compared by."""


class RemediationPlan(KubeModel):
    """A RemediationPlan object as the API server returns it."""

    api_version: Literal["aiops.ajan.dev/v1alpha1"] = "aiops.ajan.dev/v1alpha1"
    kind: Literal["RemediationPlan"] = "RemediationPlan"
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: RemediationPlanSpec
    status: RemediationPlanStatus | None = None

    @property
    def name(self) -> str:
        """``metadata.name`` (every plan read from the API server has one)."""
        return str(self.metadata["name"])

    @property
    def current(self) -> RemediationPlanStatus:
        """The status, or an empty one while the operator has not written any yet."""
        return self.status if self.status is not None else RemediationPlanStatus()
