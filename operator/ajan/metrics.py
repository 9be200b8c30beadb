"""ajan's own Prometheus metrics (``aiops_*``), in prometheus_client's default registry.

Served on ``/metrics`` by the operator's HTTP server (``--feedback-listen``), beside the feedback
API's ``aiops_feedback_*``. Every label has a bounded set of values: results and reasons are enums,
actions and severities the CRD's, and policies are named only in the per-policy gauges (as many
series as there are CorrelationPolicies).
"""

from __future__ import annotations

import contextlib
from typing import Final

from prometheus_client import Counter, Gauge, Histogram

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


def forget_policy(namespace: str, policy: str) -> None:
    """Drop a deleted policy's series."""
    for gauge in (CONFIDENCE, ANOMALOUS_METRICS):
        with contextlib.suppress(KeyError):  # never evaluated in this process
            gauge.remove(namespace, policy)
