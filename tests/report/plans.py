"""A realistic RemediationPlan and its series, shared by the report's tests.

The evidence is shaped like the one the operator writes for the generator's error burst
(tests/e2e/test_operator.py): error-ratio far above its baseline, latency following it, the severity
model's probabilities, a dry-run pause with the exact patch it would have sent.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import numpy as np

from ajan.models import CorrelationPolicy, RemediationPlan
from ajan.models.common import rfc3339
from ajan.report import MetricSeries, Timeline
from ajan.services.window import window_bounds
from ajan.simulate.stack import canary_policy

#: The plan's time in the pure tests.
AT: Final = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)
#: A hostile string: it must reach the page as text, never as markup.
SCRIPT: Final = "<script>alert('ajan')</script>"

CORRELATIONS: Final[list[dict[str, Any]]] = [
    {"leader": "queue-depth", "follower": "latency-p99", "r": 0.93, "lagSeconds": 4.0},
    {"leader": "error-ratio", "follower": "latency-p99", "r": 0.81, "lagSeconds": 0.0},
    {"leader": "memory", "follower": "error-ratio", "r": -0.62, "lagSeconds": 12.0},
    {"leader": "queue-depth", "follower": "error-ratio", "r": 0.55, "lagSeconds": 8.0},
]


def plan_body(
    name: str = "checkout-tk4c9z-pause", at: datetime = AT, policy: str = "checkout"
) -> dict[str, Any]:
    """The plan as the API server would return it, status included (``metadata`` minimal)."""
    since = at - timedelta(seconds=20)
    return {
        "apiVersion": "aiops.ajan.dev/v1alpha1",
        "kind": "RemediationPlan",
        "metadata": {
            "name": name,
            "namespace": "shop",
            "uid": "0b6a1d4e-0000-4000-8000-000000000001",
            "creationTimestamp": rfc3339(at),
            "labels": {"aiops.ajan.dev/incident": "tk4c9z"},
        },
        "spec": {
            "policyRef": {"name": policy},
            "targetRef": {"kind": "Rollout", "name": "checkout"},
            "action": "pause",
            "severity": "warning",
            "confidence": 0.82,
            "mode": "dry-run",
            "evidence": {
                "anomalies": [
                    {"metric": "error-ratio", "value": 0.31, "baseline": 0.011, "zScore": 9.3,
                     "p95": 0.3, "p99": 0.33, "since": rfc3339(since)},
                    {"metric": "latency-p99", "value": 0.42, "baseline": 0.18, "zScore": 5.1,
                     "p95": 0.4, "p99": 0.45, "since": rfc3339(since + timedelta(seconds=4))},
                ],
                "correlations": copy.deepcopy(CORRELATIONS),
                "predictedImpact": [
                    {"metric": "latency-p99", "expectedZ": 6.2, "lowZ": 4.1, "highZ": 8.4,
                     "lagSeconds": 4.0, "breachProbability": 0.91},
                ],
                "drift": [{"metric": "error-ratio", "psi": 1.7, "ksPValue": 0.0001}],
                "severity": {"info": 0.05, "warning": 0.7, "critical": 0.25, "source": "model"},
                "feedback": "2 earlier plans with this signature were judged true-positive: confidence +0.04",
                "probabilityReal": 0.28,
            },
        },
        "status": {
            "phase": "Executed",
            "proposedAt": rfc3339(at),
            "executedAt": rfc3339(at + timedelta(seconds=1)),
            "dryRunPatch": '{"spec": {"paused": true}}',
            "patchRequest": "PATCH /apis/argoproj.io/v1alpha1/namespaces/shop/rollouts/checkout "
            "(application/merge-patch+json)",
            "conditions": [
                {"type": "DryRun", "status": "True", "reason": "DryRun",
                 "message": "not sent (dry-run mode): see dryRunPatch",
                 "lastTransitionTime": rfc3339(at + timedelta(seconds=1))},
            ],
            "confidence": 0.86,
            "peakConfidence": 0.9,
        },
    }  # fmt: skip


def plan(**overrides: Any) -> RemediationPlan:
    """`plan_body` as the model."""
    return RemediationPlan.model_validate(plan_body(**overrides))


def policy(name: str = "checkout", **spec: Any) -> CorrelationPolicy:
    """The end-to-end tests' canary policy (3-minute window, 1 s step)."""
    return CorrelationPolicy.model_validate(canary_policy(name, **spec))


def series(at: float = AT.timestamp(), window_s: float = 180.0, step: float = 1.0) -> Timeline:
    """Synthetic series over the window before and after ``at``: error-ratio and latency jump 20 s
    before it, the signals wander; one gap in memory."""
    ts = np.arange(at - window_s, at + window_s + step / 2, step)
    rng = np.random.default_rng(3)
    onset = ts >= at - 20
    values = {
        "error-ratio": 0.011 + 0.002 * rng.standard_normal(ts.size) + np.where(onset, 0.3, 0.0),
        "latency-p99": 0.18 + 0.01 * rng.standard_normal(ts.size) + np.where(ts >= at - 16, 0.24, 0.0),
        "queue-depth": 20 + 3 * rng.standard_normal(ts.size),
        "memory": 3.0e8 + 1e6 * rng.standard_normal(ts.size),
    }
    values["memory"][40:55] = np.nan
    pol = policy()
    out = tuple(MetricSeries(m.name, m.query, ts, values[m.name]) for m in pol.spec.metrics)
    window = window_bounds(pol.spec, at)
    return Timeline(at, float(ts[0]), float(ts[-1]), window, out, source="http://prometheus.test:9090")
