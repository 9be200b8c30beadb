"""ajan's own Prometheus metrics (``aiops_*``), in prometheus_client's default registry.

Served on ``/metrics`` by the operator's metrics server (``--metrics-listen``) and by the feedback
API (``--feedback-listen``). Every label has a bounded set of values: results, reasons, phases and
verdicts are enums, actions and severities the CRD's; policies are named only in the per-policy
series, whose ``metric``, ``leader`` and ``follower`` labels are the policy's own metric names (at
most 50 per policy by the CRD) and which `forget_policy` drops with the policy.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from ajan import __version__
from ajan.models import Action, PlanPhase, Verdict

#: Seconds: one evaluation is ~10-50 ms of analysis plus the queries.
DURATION_BUCKETS: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

EVALUATIONS: Final = Counter(
    "aiops_evaluations",
    "Policy evaluations, by result: evaluated, or the Degraded reason (no action was taken).",
    ["result"],
)
EVALUATION_SECONDS: Final = Histogram(
    "aiops_evaluation_duration_seconds",
    "Time of one policy evaluation: the queries, the analysis, the decision and its writes.",
    buckets=DURATION_BUCKETS,
)
QUERY_ERRORS: Final = Counter(
    "aiops_prometheus_query_errors",
    "Evaluations whose Prometheus queries failed or returned data ajan cannot trust, by reason.",
    ["reason"],
)
PLANS: Final = Counter(
    "aiops_plans",
    "RemediationPlans proposed, by action and severity.",
    ["action", "severity"],
)
ACTIONS: Final = Counter(
    "aiops_actions_executed",
    "Actions applied to Rollouts (dry-run plans not counted), by action.",
    ["action"],
)
PLAN_TRANSITIONS: Final = Counter(
    "aiops_plan_transitions",
    "RemediationPlans entering a phase (status.phase), by the plan's action and the phase entered.",
    ["action", "phase"],
)
CONFIDENCE: Final = Gauge(
    "aiops_policy_confidence",
    "Confidence of each policy's last evaluation, in [0, 1].",
    ["namespace", "policy"],
)
ANOMALOUS_METRICS: Final = Gauge(
    "aiops_policy_anomalous_metrics",
    "Metrics whose anomaly score reached the threshold at each policy's last evaluation.",
    ["namespace", "policy"],
)
ANOMALIES: Final = Counter(
    "aiops_anomalies",
    "Anomalous metrics found, summed over each policy's evaluations.",
    ["namespace", "policy"],
)
METRIC_ANOMALY_SCORE: Final = Gauge(
    "aiops_metric_anomaly_score",
    "Anomaly score of each metric of each policy at its last evaluation, in [0, 1].",
    ["namespace", "policy", "metric"],
)
METRIC_CORRELATION: Final = Gauge(
    "aiops_metric_correlation",
    "Correlation coefficient r (at the best lag) of each significant leader/follower pair in each "
    "policy's last evaluation's evidence, in [-1, 1].",
    ["namespace", "policy", "leader", "follower"],
)
FEEDBACK_VERDICTS: Final = Gauge(
    "aiops_feedback_verdicts",
    "Operators' verdicts in force (within the feedback TTL) on each policy's plans, by verdict, "
    "as read from Redis at the policy's last evaluation.",
    ["namespace", "policy", "verdict"],
)
FALSE_POSITIVE_RATIO: Final = Gauge(
    "aiops_false_positive_ratio",
    "False-positive verdicts over all verdicts in force on each policy's plans, in [0, 1] "
    "(absent while none is in force).",
    ["namespace", "policy"],
)
BUILD_INFO: Final = Gauge("aiops_build_info", "ajan's version; always 1.", ["version"])
BUILD_INFO.labels(version=__version__).set(1)

#: The bounded values of ``aiops_feedback_rejected_total{reason}``.
REJECT_REASONS: Final = (
    "unauthenticated",
    "forbidden",
    "rate-limited",
    "invalid",
    "not-found",
    "unavailable",
    "error",
)

# Every series of a bounded label set from the start: a rate() over a series that appears only at
# its first increment misses that increment.
for _action in Action:
    for _phase in PlanPhase:
        PLAN_TRANSITIONS.labels(action=_action.value, phase=_phase.value)


@dataclass(frozen=True)
class FeedbackMetrics:
    """The feedback metrics of one registry: the API counts there, and so do verdicts set with kubectl."""

    accepted: Counter
    rejected: Counter
    duration: Histogram


_feedback_lock = threading.Lock()
_feedback_metrics: weakref.WeakKeyDictionary[CollectorRegistry, FeedbackMetrics] = weakref.WeakKeyDictionary()


def feedback_metrics(registry: CollectorRegistry = REGISTRY) -> FeedbackMetrics:
    """``aiops_feedback_*`` in ``registry``, registered on first use (the same objects afterwards).

    One set per registry: the feedback API (`ajan.api.make_app`) and the plan handler, which counts
    verdicts set with ``kubectl``, share the default registry's.
    """
    with _feedback_lock:
        known = _feedback_metrics.get(registry)
        if known is not None:
            return known
        made = FeedbackMetrics(
            accepted=Counter(
                "aiops_feedback",
                "Verdicts on RemediationPlans recorded, by the feedback API or from a plan's "
                "spec.feedback set with kubectl.",
                ["verdict"],
                registry=registry,
            ),
            rejected=Counter(
                "aiops_feedback_rejected",
                "Feedback requests refused, by reason.",
                ["reason"],
                registry=registry,
            ),
            duration=Histogram(
                "aiops_feedback_request_duration_seconds",
                "Time to answer a feedback request, whatever the outcome.",
                registry=registry,
            ),
        )
        for verdict in Verdict:
            made.accepted.labels(verdict=verdict.value)
        for reason in REJECT_REASONS:
            made.rejected.labels(reason=reason)
        _feedback_metrics[registry] = made
        return made


# The label values each policy's multi-series gauges carry now, so that a metric removed from the
# spec or a pair gone from the evidence loses its series (a stale series would read as current).
_scored: dict[tuple[str, str], set[str]] = {}
_correlated: dict[tuple[str, str], set[tuple[str, str]]] = {}


def record_evaluation(
    namespace: str,
    policy: str,
    *,
    confidence: float,
    anomalous: int,
    metric_scores: Mapping[str, float],
    correlations: Iterable[tuple[str, str, float]],
) -> None:
    """Set a policy's series from an evaluation that had its data (not from a degraded one).

    ``correlations`` are ``(leader, follower, r)``, strongest first: a pair listed twice keeps the
    first r.
    """
    key = (namespace, policy)
    CONFIDENCE.labels(namespace, policy).set(confidence)
    ANOMALOUS_METRICS.labels(namespace, policy).set(anomalous)
    ANOMALIES.labels(namespace, policy).inc(anomalous)
    for metric in _scored.get(key, set()) - set(metric_scores):
        with contextlib.suppress(KeyError):
            METRIC_ANOMALY_SCORE.remove(namespace, policy, metric)
    for metric, score in metric_scores.items():
        METRIC_ANOMALY_SCORE.labels(namespace, policy, metric).set(score)
    _scored[key] = set(metric_scores)
    pairs: dict[tuple[str, str], float] = {}
    for leader, follower, r in correlations:
        pairs.setdefault((leader, follower), r)
    for leader, follower in _correlated.get(key, set()) - set(pairs):
        with contextlib.suppress(KeyError):
            METRIC_CORRELATION.remove(namespace, policy, leader, follower)
    for (leader, follower), r in pairs.items():
        METRIC_CORRELATION.labels(namespace, policy, leader, follower).set(r)
    _correlated[key] = set(pairs)


def record_feedback(namespace: str, policy: str, true_positives: int, false_positives: int) -> None:
    """Set a policy's verdicts in force, as the evaluation read them from Redis."""
    FEEDBACK_VERDICTS.labels(namespace, policy, Verdict.TRUE_POSITIVE.value).set(true_positives)
    FEEDBACK_VERDICTS.labels(namespace, policy, Verdict.FALSE_POSITIVE.value).set(false_positives)
    judged = true_positives + false_positives
    if judged:
        FALSE_POSITIVE_RATIO.labels(namespace, policy).set(false_positives / judged)
    else:
        # No verdict is not a ratio of 0: absent, so an alert on the ratio does not fire on nothing.
        with contextlib.suppress(KeyError):
            FALSE_POSITIVE_RATIO.remove(namespace, policy)


def plan_entered(action: str, phase: str) -> None:
    """Count a plan entering ``phase`` (the plan's ``spec.action`` and the new ``status.phase``)."""
    PLAN_TRANSITIONS.labels(action=action, phase=phase).inc()


def forget_policy(namespace: str, policy: str) -> None:
    """Drop every series of a deleted policy."""
    key = (namespace, policy)
    for metric in (CONFIDENCE, ANOMALOUS_METRICS, ANOMALIES, FALSE_POSITIVE_RATIO):
        with contextlib.suppress(KeyError):  # never evaluated in this process
            metric.remove(namespace, policy)
    for verdict in Verdict:
        with contextlib.suppress(KeyError):
            FEEDBACK_VERDICTS.remove(namespace, policy, verdict.value)
    for name in _scored.pop(key, set()):
        with contextlib.suppress(KeyError):
            METRIC_ANOMALY_SCORE.remove(namespace, policy, name)
    for leader, follower in _correlated.pop(key, set()):
        with contextlib.suppress(KeyError):
            METRIC_CORRELATION.remove(namespace, policy, leader, follower)
