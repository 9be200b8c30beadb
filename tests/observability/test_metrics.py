"""ajan's Prometheus series after real evaluations, in-process: the values each new series must
show, stale series removed, every per-policy series dropped by `forget_policy`, every label bounded.

The evaluations are the operator's own (`PolicyEvaluator`) against the test control plane, a
Prometheus backfilled with the canary generator's history, and Redis (see `harness`).
"""

from __future__ import annotations

import asyncio
import copy
from datetime import UTC, datetime

import pytest
from kubernetes import client
from prometheus_client import REGISTRY

from ajan import __version__, metrics
from ajan.clients.kubernetes import KubeStore
from ajan.models import Action, PlanPhase, Verdict
from ajan.services.feedback import submit_feedback
from ajan.services.reconcile import PolicyEvaluator
from observability.harness import LOOSE_CORRELATION, METRIC_NAMES, always_policy, good_evaluation, runtime_of
from support.kube import Kube
from support.operator import Cluster
from support.prometheus import StartWithHistory
from support.redis import RedisServer
from support.rollouts import RolloutKit

#: The series a policy owns, dropped with it.
PER_POLICY = (
    "aiops_policy_confidence",
    "aiops_policy_anomalous_metrics",
    "aiops_anomalies_total",
    "aiops_anomalies_created",
    "aiops_metric_anomaly_score",
    "aiops_metric_correlation",
    "aiops_feedback_verdicts",
    "aiops_false_positive_ratio",
)
#: Label values every aiops_* series may take, besides the per-policy names checked apart.
RESULTS = {"evaluated", "PrometheusUnavailable", "QueryFailed", "InsufficientData", "InvalidSpec", "error"}
BOUNDED: dict[str, set[str]] = {
    "result": RESULTS,
    "reason": RESULTS | set(metrics.REJECT_REASONS),
    "action": {a.value for a in Action},
    "phase": {p.value for p in PlanPhase},
    "verdict": {v.value for v in Verdict},
    "severity": {"info", "warning", "critical"},
    "version": {__version__},
}


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def policy_samples(namespace: str, policy: str) -> list[tuple[str, dict[str, str], float]]:
    """Every sample in the default registry that names this policy."""
    return [
        (s.name, dict(s.labels), s.value)
        for family in REGISTRY.collect()
        for s in family.samples
        if s.labels.get("namespace") == namespace and s.labels.get("policy") == policy
    ]


def assert_bounded() -> None:
    """No aiops_* label value outside its bounded set (per-policy names: the canary's metrics)."""
    for family in REGISTRY.collect():
        if not family.name.startswith("aiops_"):
            continue
        for s in family.samples:
            for label, value in s.labels.items():
                if label in ("metric", "leader", "follower"):
                    assert value in METRIC_NAMES, (s.name, s.labels)
                elif label in BOUNDED:
                    assert value in BOUNDED[label], (s.name, s.labels)
                elif label != "le":
                    assert label in ("namespace", "policy"), (s.name, s.labels)


def test_evaluations_set_every_new_series_and_forget_policy_drops_them(
    kube: Kube,
    admin_api: client.ApiClient,
    namespace: str,
    rollout_kit: RolloutKit,
    prometheus_with_history: StartWithHistory,
    redis_server: RedisServer,
) -> None:
    rollout_kit.create_rollout("checkout")
    stack = prometheus_with_history(300.0, day_seconds=86400)
    cluster = Cluster(admin_api, namespace)
    name = "observed"
    cluster.apply(always_policy(name, correlation=LOOSE_CORRELATION))
    ns = {"namespace": namespace, "policy": name}
    proposed_before = sample("aiops_plan_transitions_total", action="annotate", phase="Proposed") or 0.0
    executed_before = sample("aiops_plan_transitions_total", action="annotate", phase="DryRun") or 0.0

    async def scenario() -> None:
        async with runtime_of(kube.api_client(), admin_api, stack.url, redis_server.url) as runtime:
            evaluator = PolicyEvaluator(runtime, namespace, name)
            first = await good_evaluation(evaluator, lambda: cluster.policy(name))
            assert first.assessment is not None
            # Degraded evaluations before the first good one count no anomaly and set no score.
            anomalies = len(first.assessment.evidence.anomalies)

            # Every metric of the policy has its score, the one the assessment computed.
            scores = first.assessment.metric_scores
            assert set(scores) == METRIC_NAMES
            for metric, score in scores.items():
                assert sample("aiops_metric_anomaly_score", metric=metric, **ns) == pytest.approx(score)
            assert sample("aiops_anomalies_total", **ns) == anomalies
            assert sample("aiops_policy_confidence", **ns) == pytest.approx(first.assessment.confidence)

            # The correlation series are exactly the pairs of the plan's evidence, with its r.
            plans = cluster.plans()
            assert len(plans) == 1, [p["metadata"]["name"] for p in plans]
            plan = plans[0]
            evidence = plan["spec"]["evidence"]["correlations"]
            assert evidence, "no correlation to compare the series with"
            series = {
                (labels["leader"], labels["follower"]): value
                for sname, labels, value in policy_samples(namespace, name)
                if sname == "aiops_metric_correlation"
            }
            assert series == pytest.approx({(c["leader"], c["follower"]): c["r"] for c in evidence}, abs=1e-3)
            top = cluster.policy(name)["status"].get("topCorrelations") or []
            assert {(c["leader"], c["follower"]) for c in top} <= set(series)

            # The plan entered Proposed, then DryRun (recorded, not sent), each counted once.
            assert plan["status"]["phase"] == "DryRun"
            assert sample("aiops_plan_transitions_total", action="annotate", phase="Proposed") == (
                proposed_before + 1
            )
            assert sample("aiops_plan_transitions_total", action="annotate", phase="DryRun") == (
                executed_before + 1
            )

            # Verdicts in force, from Redis: none yet means no ratio at all.
            assert sample("aiops_feedback_verdicts", verdict="true-positive", **ns) == 0
            assert sample("aiops_feedback_verdicts", verdict="false-positive", **ns) == 0
            assert sample("aiops_false_positive_ratio", **ns) is None
            feedback_store = runtime.feedback
            assert feedback_store is not None
            kube_store = KubeStore(kube.api_client(), max_workers=1)
            try:
                await submit_feedback(
                    kube_store, feedback_store, namespace, plan["metadata"]["name"],
                    Verdict.FALSE_POSITIVE, datetime.now(UTC), by="observability-test",
                )  # fmt: skip
            finally:
                kube_store.close()
            second = await good_evaluation(evaluator, lambda: cluster.policy(name))
            assert second.assessment is not None
            anomalies += len(second.assessment.evidence.anomalies)
            assert sample("aiops_feedback_verdicts", verdict="false-positive", **ns) == 1
            assert sample("aiops_feedback_verdicts", verdict="true-positive", **ns) == 0
            assert sample("aiops_false_positive_ratio", **ns) == 1.0
            assert sample("aiops_anomalies_total", **ns) == anomalies

            # A metric dropped from the spec loses its score and every pair it was in.
            body = copy.deepcopy(cluster.policy(name))
            body["spec"]["metrics"] = [m for m in body["spec"]["metrics"] if m["name"] != "memory"]
            third = await good_evaluation(evaluator, lambda: body)
            assert third.assessment is not None
            assert sample("aiops_metric_anomaly_score", metric="memory", **ns) is None
            left = policy_samples(namespace, name)
            assert not [
                labels for sname, labels, _ in left
                if sname == "aiops_metric_correlation" and "memory" in (labels["leader"], labels["follower"])
            ]  # fmt: skip
            expected = {(c.leader, c.follower) for c in third.assessment.evidence.correlations}
            assert {
                (labels["leader"], labels["follower"])
                for sname, labels, _ in left
                if sname == "aiops_metric_correlation"
            } == expected

    asyncio.run(scenario())
    assert sample("aiops_build_info", version=__version__) == 1
    assert_bounded()
    names = {sname for sname, _, _ in policy_samples(namespace, name)}
    assert names == set(PER_POLICY), names
    metrics.forget_policy(namespace, name)
    assert policy_samples(namespace, name) == []


def test_stale_scores_and_pairs_are_removed_and_forget_policy_drops_the_rest() -> None:
    metrics.forget_policy("nowhere", "never")  # never evaluated: nothing to drop, no error
    ns = {"namespace": "ns", "policy": "p"}
    metrics.record_evaluation(
        "ns", "p", confidence=0.5, anomalous=1, metric_scores={"a": 0.9, "c": 0.1},
        correlations=[("a", "b", 0.8), ("c", "a", -0.6), ("a", "b", 0.1)],
    )  # fmt: skip
    assert sample("aiops_metric_correlation", leader="a", follower="b", **ns) == 0.8  # the first listed
    assert sample("aiops_metric_correlation", leader="c", follower="a", **ns) == -0.6
    metrics.record_evaluation(
        "ns", "p", confidence=0.4, anomalous=2, metric_scores={"a": 0.2}, correlations=[("a", "b", 0.7)]
    )
    assert sample("aiops_metric_correlation", leader="c", follower="a", **ns) is None
    assert sample("aiops_metric_correlation", leader="a", follower="b", **ns) == 0.7
    assert sample("aiops_metric_anomaly_score", metric="c", **ns) is None
    assert sample("aiops_anomalies_total", **ns) == 3
    metrics.record_feedback("ns", "p", 1, 3)
    assert sample("aiops_false_positive_ratio", namespace="ns", policy="p") == 0.75
    metrics.forget_policy("ns", "p")
    assert policy_samples("ns", "p") == []


def test_feedback_metrics_are_one_set_per_registry() -> None:
    from prometheus_client import CollectorRegistry

    own = CollectorRegistry()
    assert metrics.feedback_metrics(own) is metrics.feedback_metrics(own)
    assert metrics.feedback_metrics() is metrics.feedback_metrics(REGISTRY)
    assert own.get_sample_value("aiops_feedback_total", {"verdict": "true-positive"}) == 0.0
