"""CorrelationPolicy: which Rollout to watch, which metrics, how to score them, and what to do.

A policy names an Argo Rollout and the Prometheus queries of its canary's metrics. The operator
evaluates it every ``interval``: it scores anomalies against a baseline ``window`` sampled every
``step``, correlates the metrics, and, when the confidence climbs the remediation ``ladder``,
proposes (or, in ``auto`` mode, executes) a RemediationPlan.
"""

from __future__ import annotations

from enum import StrEnum
from itertools import pairwise
from typing import Annotated, Any, Final, Literal

from pydantic import AwareDatetime, Field, StrictFloat, StrictInt, StrictStr, StringConstraints

from ajan.models.common import (
    Action,
    Condition,
    Correlation,
    Duration,
    Fraction,
    Generation,
    KubeModel,
    MetricName,
    ObjectName,
    PositiveDuration,
    Rule,
    Severity,
    TargetRef,
    cel_is_duration,
    conditions_field,
    parse_duration,
    section,
)


class MetricRole(StrEnum):
    """What a metric is to the policy."""

    SLO = "slo"
    """An objective to protect: its predicted breach is what remediation acts on."""
    SIGNAL = "signal"
    """Evidence: scored and correlated, and may lead an SLO metric."""


class Objective(StrEnum):
    """The direction in which a metric is bad."""

    MAX = "max"
    """Higher is worse (latency, errors, memory)."""
    MIN = "min"
    """Lower is worse (throughput, success ratio)."""
    BOTH = "both"
    """Either way is bad (request rate, queue depth): judged in the direction it moved."""


class Metric(KubeModel):
    """One metric of the canary: a PromQL query returning a single series."""

    name: MetricName
    """Name of the metric, unique within the policy (lower case, digits and '-')."""

    query: Annotated[StrictStr, StringConstraints(min_length=1, max_length=4096)]
    """PromQL query; it must return one series (aggregate with sum/avg/histogram_quantile)."""

    stable_query: Annotated[StrictStr, StringConstraints(min_length=1, max_length=4096)] | None = None
    """PromQL query of the same metric on the stable track (one series). ajan then judges the
    canary's excess over the stable track at each time: a load spike or a daily ramp that moves both
    tracks cancels out, and before the canary's first sample the stable track's history stands for
    its past, so a canary worse than stable from its first minute is an anomaly."""

    role: MetricRole = MetricRole.SIGNAL
    """slo: an objective to protect; signal: evidence that may lead an SLO metric."""

    objective: Objective = Objective.MAX
    """The direction that is bad: max when higher is worse (latency), min when lower is worse, both
    when a move either way is (request rate)."""

    weight: StrictFloat = Field(default=1.0, gt=0.0, le=10.0)
    """Weight of the metric in the combined anomaly score, in (0, 10]."""

    threshold: StrictFloat | None = None
    """The SLO's bound, in the metric's unit: with objective max the metric must stay below it (a
    p99 under 0.5), with min above it. ajan then forecasts when the metric will cross it and acts
    on a breach predicted within remediation.horizon. Only for role slo with objective max or min."""

    cel_rules = (
        Rule(
            "!has(self.threshold) || (has(self.role) && self.role == 'slo')",
            "threshold is an SLO's bound: it needs role slo",
            lambda m: m.threshold is None or m.role is MetricRole.SLO,
        ),
        Rule(
            "!has(self.threshold) || !has(self.objective) || self.objective != 'both'",
            "threshold needs objective max (stay below it) or min (stay above it), not both",
            lambda m: m.threshold is None or m.objective is not Objective.BOTH,
        ),
    )


def _first_duplicate(metrics: list[Metric]) -> str:
    seen: set[str] = set()
    for metric in metrics:
        if metric.name in seen:
            return metric.name
        seen.add(metric.name)
    return ""


UNIQUE_METRIC_NAMES: Final = Rule(
    "self.all(m, self.exists_one(n, n.name == m.name))",
    "metric names must be unique",
    lambda metrics: not _first_duplicate(metrics),
    # The API server names the duplicate through the list-map key (spec.metrics[2]: Duplicate value:
    # {"name":"latency"}); a CEL messageExpression cannot, its cost estimate is unbounded.
    explain=lambda metrics: (
        f'metric names must be unique: "{_first_duplicate(metrics)}" is used more than once'
    ),
)

HAS_SLO_METRIC: Final = Rule(
    "self.exists(m, m.role == 'slo')",
    "at least one metric must have role slo (an objective to protect)",
    lambda metrics: any(m.role is MetricRole.SLO for m in metrics),
)


class PrometheusRef(KubeModel):
    """Where to query: overrides the operator's default Prometheus for this policy."""

    url: Annotated[StrictStr, StringConstraints(pattern=r"^https?://", max_length=2048)]
    """Base URL of the Prometheus HTTP API, e.g. http://prometheus.monitoring:9090."""


class Sensitivity(StrEnum):
    """Preset anomaly sensitivities, each a ``zHalf`` (see :data:`SENSITIVITY_Z_HALF`)."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


# Calibrated |z| at which a metric's anomaly score is 0.5: a higher zHalf means a less sensitive
# detector. Lower than the analysis core's offline default (8), which guards against false alarms over
# tens of thousands of points per series: a policy tests one median-of-three point per metric per
# evaluation, and the calibration compresses large deviations (a 2.5x latency reads about z 7).
SENSITIVITY_Z_HALF: Final = {Sensitivity.LOW: 6.0, Sensitivity.MEDIUM: 4.0, Sensitivity.HIGH: 3.0}


class AnomalySettings(KubeModel):
    """How anomalies are scored."""

    sensitivity: Sensitivity | None = None
    """Preset sensitivity: low, medium or high (medium when neither this nor zHalf is set)."""

    z_half: StrictFloat | None = Field(default=None, gt=0.0, le=100.0)
    """Exact sensitivity instead of a preset: the |z| that scores 0.5 (low 6, medium 4, high 3)."""

    min_coverage: Fraction = 0.8
    """Share of expected samples a metric needs in the window to be scored, in [0, 1]."""

    threshold: StrictFloat = Field(default=0.5, gt=0.0, lt=1.0)
    """Anomaly score at which the policy counts an anomaly, in (0, 1)."""

    cel_rules = (
        Rule(
            "!(has(self.sensitivity) && has(self.zHalf))",
            "set either sensitivity or zHalf, not both",
            lambda s: s.sensitivity is None or s.z_half is None,
        ),
    )

    def effective_z_half(self) -> float:
        """The z-scale in force: ``zHalf`` if set, else the preset's (medium by default)."""
        if self.z_half is not None:
            return self.z_half
        return SENSITIVITY_Z_HALF[self.sensitivity or Sensitivity.MEDIUM]


class CorrelationMethod(StrEnum):
    """Correlation coefficient."""

    PEARSON = "pearson"
    """Linear correlation."""
    SPEARMAN = "spearman"
    """Rank correlation: robust to outliers and to monotone but non-linear relations."""


class CorrelationSettings(KubeModel):
    """How relations between metrics are found."""

    method: CorrelationMethod = CorrelationMethod.PEARSON
    """pearson (linear) or spearman (rank, robust to outliers)."""

    min_abs_r: Fraction = 0.5
    """Smallest |r| reported as a relation, in [0, 1]."""

    max_lag: Duration = "5m"
    """Longest lead of one metric over another that is searched for (0s: no lag search); at most a
    quarter of the baseline part of the window is searched, whatever this says."""

    alpha: StrictFloat = Field(default=0.01, gt=0.0, lt=1.0)
    """Significance level of a correlation, accounting for autocorrelation, in (0, 1)."""


class RemediationMode(StrEnum):
    """What happens when the ladder picks an action."""

    AUTO = "auto"
    """Execute the action at once."""
    APPROVE = "approve"
    """Propose a plan and wait for a person to set spec.approval."""
    DRY_RUN = "dry-run"
    """Propose a plan that records the exact patch it would have sent, and never send it."""


LadderAction = Literal[Action.ANNOTATE, Action.PAUSE, Action.ABORT, Action.ROLLBACK]


class LadderStep(KubeModel):
    """One rung of the remediation ladder: from this confidence on, this severity and action."""

    min_confidence: Fraction
    """Smallest confidence (in [0, 1]) at which this step applies."""

    severity: Severity
    """Severity reported for this step: info, warning or critical."""

    action: LadderAction
    """Action on the Rollout: annotate, pause, abort or rollback."""


DEFAULT_LADDER: Final = (
    LadderStep(min_confidence=0.9, severity=Severity.CRITICAL, action=Action.ABORT),
    LadderStep(min_confidence=0.75, severity=Severity.WARNING, action=Action.PAUSE),
    LadderStep(min_confidence=0.5, severity=Severity.INFO, action=Action.ANNOTATE),
)

LADDER_SORTED: Final = Rule(
    # The API server's CEL has isSorted() (ascending) but no index access in macros: negate.
    "self.map(s, -s.minConfidence).isSorted() "
    "&& self.all(a, self.exists_one(b, b.minConfidence == a.minConfidence))",
    "ladder steps must be sorted by minConfidence, highest first, each minConfidence once",
    lambda ladder: all(a.min_confidence > b.min_confidence for a, b in pairwise(ladder)),
)


def _default_ladder() -> list[LadderStep]:
    return [step.model_copy() for step in DEFAULT_LADDER]


class RemediationSettings(KubeModel):
    """What the policy does about a predicted breach, and how cautiously."""

    mode: RemediationMode = RemediationMode.DRY_RUN
    """auto: act at once; approve: wait for spec.approval on the plan; dry-run: record, never act."""

    ladder: Annotated[list[LadderStep], LADDER_SORTED] = Field(
        default_factory=_default_ladder,
        max_length=10,
        json_schema_extra={"default": [step.to_kube() for step in DEFAULT_LADDER]},
    )
    """Confidence ladder, highest minConfidence first: the first step the confidence reaches applies."""

    cooldown: Duration = "10m"
    """Least time between two actions on the Rollout (0s: none). An escalation to a stronger action
    is not held back, and annotations neither wait nor count."""

    max_actions_per_hour: StrictInt = Field(default=6, ge=0, le=60)
    """Most actions per hour on the Rollout, annotations not counted, in [0, 60] (0: never act)."""

    approval_timeout: PositiveDuration = "30m"
    """How long a plan waits for approval before it expires (approve mode)."""

    horizon: PositiveDuration = "5m"
    """How far ahead a predicted breach of an SLO metric's threshold counts: the probability that a
    metric with a threshold crosses it within this time adds to the confidence. The forecast looks
    back as far (and two and four times as far), and needs a baseline several horizons long."""

    recovery_evaluations: StrictInt = Field(default=3, ge=1, le=100)
    """Consecutive healthy evaluations that end an incident and resolve its plan, in [1, 100]."""

    cel_rules = (
        Rule(
            "!has(self.mode) || self.mode != 'auto' || (has(self.ladder) && self.ladder.size() > 0)",
            "mode auto needs at least one ladder step",
            lambda s: s.mode is not RemediationMode.AUTO or len(s.ladder) > 0,
        ),
    )


class Notification(KubeModel):
    """Where to announce this policy's plans."""

    webhook_url: Annotated[StrictStr, StringConstraints(pattern=r"^https?://", max_length=2048)]
    """A URL receiving a JSON summary of each plan when it is proposed and when its action is taken,
    with a Slack-compatible ``text`` field (a Slack incoming webhook works as is)."""


def _cel_shorter(short: str, long: str) -> str:
    """CEL: duration ``short`` < duration ``long``, where both are set and well-formed.

    Defaults make the fields present; the guards keep a missing or malformed one reported once, by
    its own field's check, rather than again as a CEL evaluation error here.
    """
    guards = []
    for path in (short, long):
        parts = path.split(".")  # self.correlation.maxLag: has(self.correlation), then the field
        guards += [f"!has({'.'.join(parts[:i])})" for i in range(2, len(parts) + 1)]
    guards += [f"!{cel_is_duration(path)}" for path in (short, long)]
    return " || ".join([*guards, f"duration({short}) < duration({long})"])


class CorrelationPolicySpec(KubeModel):
    """Desired behaviour of a CorrelationPolicy."""

    target_ref: TargetRef
    """The Argo Rollout to watch, in the policy's namespace."""

    prometheus: PrometheusRef | None = None
    """Prometheus to query; the operator's default when omitted."""

    interval: PositiveDuration = "1m"
    """How often the policy is evaluated, e.g. 30s or 1m."""

    window: PositiveDuration = "1h"
    """Baseline window: how much history each evaluation learns normal behaviour from."""

    step: PositiveDuration = "30s"
    """Resolution of the queries (Prometheus range-query step)."""

    metrics: Annotated[list[Metric], UNIQUE_METRIC_NAMES, HAS_SLO_METRIC] = Field(
        min_length=1,
        max_length=50,
        # Keyed by name: server-side apply merges metric by metric, and a duplicate is reported with
        # its index and name beside the rule's sentence.
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    """The canary's metrics (1 to 50), names unique, at least one with role slo."""

    anomaly: AnomalySettings = section(AnomalySettings)
    """Anomaly scoring."""

    correlation: CorrelationSettings = section(CorrelationSettings)
    """Correlation between metrics."""

    remediation: RemediationSettings = section(RemediationSettings)
    """Remediation: mode, confidence ladder, rate limits."""

    notification: Notification | None = None
    """Announce plans to a webhook (optional)."""

    cel_rules = (
        Rule(
            _cel_shorter("self.step", "self.window"),
            "step must be shorter than window",
            lambda s: parse_duration(s.step) < parse_duration(s.window),
        ),
    )


class PolicyConditionType(StrEnum):
    """The condition types a CorrelationPolicy reports."""

    READY = "Ready"
    """True when the last evaluation ran on enough data."""
    DEGRADED = "Degraded"
    """True when evaluation runs but cannot be trusted; the reason says why."""


class DegradedReason(StrEnum):
    """Reasons of a ``Degraded`` condition (and of ``Ready=False``)."""

    PROMETHEUS_UNAVAILABLE = "PrometheusUnavailable"
    """Prometheus did not answer."""
    QUERY_FAILED = "QueryFailed"
    """A query was refused or returned something other than one series."""
    INSUFFICIENT_DATA = "InsufficientData"
    """Too few samples in the window (see anomaly.minCoverage), or none recent enough."""
    INVALID_SPEC = "InvalidSpec"
    """The spec cannot be evaluated (the operator refuses what the API server would refuse)."""
    TARGET_NOT_FOUND = "TargetNotFound"
    """The Rollout named by targetRef does not exist: there is nothing to guard, and no plan is made."""
    FORBIDDEN = "Forbidden"
    """The API server refused one of ajan's writes (its role changed): the incident is kept, its
    plan is made or moved on once the write is allowed again."""


IncidentId = Annotated[StrictStr, StringConstraints(pattern=r"^[a-z0-9]{1,16}$")]
"""An incident's identifier: lower-case base-36 of its opening time, part of its plans' names."""


class Incident(KubeModel):
    """The incident a policy is in: evaluations whose confidence reached the ladder, until recovery.

    Written before any plan of the incident is created, so that a restart finds the plan's name
    here and neither loses the plan nor proposes it twice.
    """

    id: IncidentId
    """Identifier of the incident, shared by its plans (label aiops.ajan.dev/incident)."""

    opened_at: AwareDatetime
    """When the confidence first reached the ladder."""

    action: LadderAction
    """Strongest action proposed in the incident: only a stronger one makes a new plan."""

    plan: ObjectName
    """The incident's current plan."""

    peak_confidence: Fraction
    """Highest confidence seen in the incident."""

    healthy_evaluations: StrictInt = Field(default=0, ge=0)
    """Consecutive evaluations since the confidence fell below the recovery threshold."""


class CorrelationPolicyStatus(KubeModel):
    """Observed state of a CorrelationPolicy, written by the operator."""

    conditions: list[Condition] = conditions_field(
        "Ready and Degraded (reasons PrometheusUnavailable, QueryFailed, InsufficientData, "
        "InvalidSpec, TargetNotFound, Forbidden)."
    )

    observed_generation: Generation | None = None
    """The metadata.generation of the spec last evaluated."""

    last_evaluation_time: AwareDatetime | None = None
    """When the policy was last evaluated."""

    anomaly_score: Fraction | None = None
    """Combined anomaly score of the last evaluation, in [0, 1]."""

    top_correlations: list[Correlation] = Field(default_factory=list, max_length=20)
    """Strongest significant relations found by the last evaluation, strongest first."""

    last_plan: ObjectName | None = None
    """Name of the last RemediationPlan this policy proposed."""

    confidence: Fraction | None = None
    """Confidence of a predicted breach at the last evaluation, in [0, 1]."""

    incident: Incident | None = None
    """The open incident, if any; absent when the metrics are healthy."""


class CorrelationPolicy(KubeModel):
    """A CorrelationPolicy object as the API server returns it."""

    api_version: Literal["aiops.ajan.dev/v1alpha1"] = "aiops.ajan.dev/v1alpha1"
    kind: Literal["CorrelationPolicy"] = "CorrelationPolicy"
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: CorrelationPolicySpec
    status: CorrelationPolicyStatus | None = None
