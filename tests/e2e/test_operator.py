"""The operator end to end: ``ajan run`` against the real kube-apiserver and a real Prometheus.

Each test has its own namespace, its own metrics generator and Prometheus (so one test's fault
cannot leak into the next one's baseline) with history backfilled, and its own ``ajan run``.
Waits poll the API server with deadlines counted in evaluations; nothing sleeps and hopes.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final

import pytest
from kubernetes import client

from ajan.analysis.calibration import OPENING_MAP, platt
from ajan.simulate.stack import CANARY_METRICS, canary_policy
from support.operator import Cluster, OperatorProcess
from support.prometheus import HistoryStack, StartWithHistory, wait_for
from support.rollouts import RolloutKit

INTERVAL_S: Final = 2.0
policy = canary_policy
HISTORY_S: Final = 300.0
#: Generous: a loaded 2-core CI machine evaluates late; polls return as soon as the state is there.
EVALUATIONS_TIMEOUT_S: Final = 180.0
SINGLE_RUNG: Final = {
    "mode": "dry-run",
    "ladder": [{"minConfidence": 0.5, "severity": "warning", "action": "pause"}],
}


@dataclass
class Setup:
    cluster: Cluster
    stack: HistoryStack
    operator: OperatorProcess


@pytest.fixture
def setup(
    admin_api: client.ApiClient,
    namespace: str,
    rollout_kit: RolloutKit,
    prometheus_with_history: StartWithHistory,
    ajan_operator: Callable[..., OperatorProcess],
) -> Setup:
    """The canary's Rollout (Argo's CRD), a generator with five minutes of healthy history, its
    Prometheus, and ``ajan run``. Policies here are in dry-run mode: plans are recorded, not acted on
    (test_actions.py acts)."""
    rollout_kit.create_rollout("checkout")
    # A real day's length: a 10-minute "day" would ramp the load faster than any canary changes.
    stack = prometheus_with_history(HISTORY_S, day_seconds=86400)
    return Setup(Cluster(admin_api, namespace), stack, ajan_operator(stack.url))


def ready(cluster: Cluster, name: str) -> Callable[[], dict[str, Any] | None]:
    def check() -> dict[str, Any] | None:
        cond = cluster.condition(name, "Ready")
        return cond if cond and cond["status"] == "True" else None

    return check


def plans_of(cluster: Cluster, count: int) -> Callable[[], list[dict[str, Any]] | None]:
    def check() -> list[dict[str, Any]] | None:
        plans = cluster.plans()
        return plans if len(plans) >= count else None

    return check


def test_healthy_canary_yields_no_plan(setup: Setup) -> None:
    cluster = setup.cluster
    cluster.apply(policy("healthy"))
    first = wait_for(ready(cluster, "healthy"), timeout=EVALUATIONS_TIMEOUT_S, what="Ready=True")
    cluster.evaluations_after("healthy", first["lastTransitionTime"], 15, timeout=EVALUATIONS_TIMEOUT_S)
    assert cluster.plans() == []
    status = cluster.policy("healthy")["status"]
    assert status["confidence"] < 0.5
    assert "incident" not in status
    assert status["observedGeneration"] == cluster.policy("healthy")["metadata"]["generation"]


def test_a_thousand_invalid_policies_are_refused_and_never_reach_the_operator(setup: Setup) -> None:
    """Bad input at scale: the CRD's schema refuses each with a readable message at the API server,
    so the running operator never sees one, and its valid policy goes on being evaluated."""
    cluster = setup.cluster
    cluster.apply(policy("valid"))
    first = wait_for(ready(cluster, "valid"), timeout=EVALUATIONS_TIMEOUT_S, what="Ready=True")
    broken = [policy(f"broken-{i:04d}", interval="soon" if i % 2 else "5s", metrics=[] if i % 2 == 0 else
                     CANARY_METRICS) for i in range(1000)]  # fmt: skip

    def refusal(body: dict[str, Any]) -> tuple[int, str]:
        try:
            cluster.apply(body)
        except client.ApiException as err:
            return err.status, json.loads(err.body)["message"]
        return 201, ""

    with ThreadPoolExecutor(max_workers=8) as pool:  # at once, as a bad `kubectl apply -f dir/` would
        answers = list(pool.map(refusal, broken))
    assert {status for status, _ in answers} == {422}
    assert all("spec.interval" in m for m in [m for i, (_, m) in enumerate(answers) if i % 2]), answers[1]
    assert all("spec.metrics" in m for m in [m for i, (_, m) in enumerate(answers) if i % 2 == 0]), answers[0]
    listed = cluster.custom.list_namespaced_custom_object(
        "aiops.ajan.dev", "v1alpha1", cluster.namespace, "correlationpolicies"
    )
    assert [p["metadata"]["name"] for p in listed["items"]] == ["valid"]
    cluster.evaluations_after("valid", first["lastTransitionTime"], 3, timeout=EVALUATIONS_TIMEOUT_S)
    assert "broken-" not in setup.operator.log()


def test_fault_yields_exactly_one_plan_with_its_evidence(setup: Setup) -> None:
    cluster, stack = setup.cluster, setup.stack
    cluster.apply(policy("errors", remediation=SINGLE_RUNG))
    first = wait_for(ready(cluster, "errors"), timeout=EVALUATIONS_TIMEOUT_S, what="Ready=True")
    cluster.evaluations_after("errors", first["lastTransitionTime"], 3, timeout=EVALUATIONS_TIMEOUT_S)
    assert cluster.plans() == [], json.dumps([p["spec"] for p in cluster.plans()], indent=1)
    stack.post_fault(kind="error_burst", rate=0.3, duration_s=600)
    # Bounded: the 15 s rate window fills, then the median of three samples; 30 evaluations is ample.
    plans = wait_for(plans_of(cluster, 1), timeout=30 * INTERVAL_S + 30, what="a plan", interval=1.0)
    stamp = cluster.policy("errors")["status"]["lastEvaluationTime"]
    cluster.evaluations_after("errors", stamp, 10, timeout=EVALUATIONS_TIMEOUT_S)
    plans = cluster.plans()
    assert len(plans) == 1, [p["metadata"]["name"] for p in plans]
    plan = plans[0]
    spec, status = plan["spec"], plan["status"]
    assert spec["action"] == "pause" and spec["severity"] == "warning"
    assert spec["targetRef"] == {"kind": "Rollout", "name": "checkout"}
    assert spec["policyRef"] == {"name": "errors"}
    assert spec["confidence"] >= 0.5
    top = spec["evidence"]["anomalies"][0]
    assert top["metric"] == "error-ratio"
    assert top["value"] > 10 * top["baseline"] and top["zScore"] > 0
    # The shipped severity model loaded and classified the decision (advisory, in the evidence).
    severity = spec["evidence"]["severity"]
    assert severity["source"] == "model"
    assert abs(severity["info"] + severity["warning"] + severity["critical"] - 1.0) < 1e-3
    # How often an opening at this confidence was real on labelled data (advisory, beside it).
    expected = float(platt(spec["confidence"], OPENING_MAP))
    assert spec["evidence"]["probabilityReal"] == pytest.approx(expected, abs=1e-3)
    assert status["phase"] == "DryRun"  # the patches recorded, nothing sent
    pause, annotate = status["dryRunPatch"].splitlines()
    assert pause == '{"spec": {"paused": true}}'
    assert json.loads(annotate)["metadata"]["annotations"]["aiops.ajan.dev/plan"] == plan["metadata"]["name"]
    owner = plan["metadata"]["ownerReferences"][0]
    assert owner["kind"] == "CorrelationPolicy" and owner["name"] == "errors"
    incident = cluster.policy("errors")["status"]["incident"]
    assert incident["plan"] == plan["metadata"]["name"]
    assert plan["metadata"]["labels"]["aiops.ajan.dev/incident"] == incident["id"]


def test_escalation_supersedes_and_recovery_resolves(setup: Setup) -> None:
    cluster, stack = setup.cluster, setup.stack
    ladder = {
        # approve: the first plan (a pause) waits for a person, so an escalation supersedes it.
        # (An annotation would not wait: it changes nothing, so approve mode carries it out.)
        "mode": "approve",
        "recoveryEvaluations": 3,
        "ladder": [
            {"minConfidence": 0.999, "severity": "critical", "action": "abort"},
            {"minConfidence": 0.3, "severity": "warning", "action": "pause"},
        ],
    }
    cluster.apply(policy("lifecycle", remediation=ladder))
    wait_for(ready(cluster, "lifecycle"), timeout=EVALUATIONS_TIMEOUT_S, what="Ready=True")
    # A slow creep (+0.5 %/s): the confidence climbs through the pause rung over several
    # evaluations. At 2 %/s it could jump from below 0.3 to above 0.999 between two evaluations on
    # a loaded machine, and the first plan was then already the abort.
    stack.post_fault(kind="latency_creep", rate=0.005, duration_s=600)
    first = wait_for(plans_of(cluster, 1), timeout=EVALUATIONS_TIMEOUT_S, what="a first plan", interval=1.0)
    assert first[0]["spec"]["action"] == "pause", first[0]["spec"]
    awaiting = wait_for(lambda: cluster.plan_condition(first[0]["metadata"]["name"], "AwaitingApproval"),
                        timeout=EVALUATIONS_TIMEOUT_S, what="the pause awaiting approval")  # fmt: skip
    assert awaiting["status"] == "True"
    stack.post_fault(kind="error_burst", rate=0.9, duration_s=600)
    both = wait_for(plans_of(cluster, 2), timeout=EVALUATIONS_TIMEOUT_S, what="an escalation", interval=1.0)
    by_action = {p["spec"]["action"]: p for p in both}
    assert set(by_action) == {"pause", "abort"}

    def superseded() -> bool:
        plans = {p["spec"]["action"]: p for p in cluster.plans()}
        return (plans["pause"].get("status") or {}).get("phase") == "Superseded"

    wait_for(superseded, timeout=EVALUATIONS_TIMEOUT_S, what="the first plan superseded")
    pause = {p["spec"]["action"]: p for p in cluster.plans()}["pause"]
    conditions = {c["type"]: c for c in pause["status"]["conditions"]}
    assert by_action["abort"]["metadata"]["name"] in conditions["Superseded"]["message"]
    # It no longer waits for anyone: `kubectl wait --for=condition=AwaitingApproval=false` returns.
    assert conditions["AwaitingApproval"]["status"] == "False"
    assert conditions["AwaitingApproval"]["reason"] == "Superseded"
    incident = cluster.policy("lifecycle")["status"]["incident"]
    assert incident["plan"] == by_action["abort"]["metadata"]["name"] and incident["action"] == "abort"

    stack.clear_faults()

    def resolved() -> bool:
        plans = {p["spec"]["action"]: p for p in cluster.plans()}
        return (plans["abort"].get("status") or {}).get("phase") == "Resolved"

    wait_for(resolved, timeout=EVALUATIONS_TIMEOUT_S, what="the plan resolved after recovery", interval=1.0)
    status = cluster.policy("lifecycle")["status"]
    assert "incident" not in status
    plans = {p["spec"]["action"]: p for p in cluster.plans()}
    assert plans["pause"]["status"]["phase"] == "Superseded"  # settled phases stay as they were
    assert len(plans) == 2


def test_a_policy_whose_rollout_does_not_exist_is_degraded_and_makes_no_plan(
    setup: Setup, rollout_kit: RolloutKit
) -> None:
    """Not Ready while it guards nothing, whatever the metrics do; Ready once the Rollout exists."""
    cluster, stack = setup.cluster, setup.stack
    cluster.apply(policy("orphan", targetRef={"name": "not-yet"}, remediation=SINGLE_RUNG))

    def degraded() -> dict[str, Any] | None:
        cond = cluster.condition("orphan", "Degraded")
        return cond if cond and cond["status"] == "True" else None

    cond = wait_for(degraded, timeout=EVALUATIONS_TIMEOUT_S, what="Degraded=True")
    assert cond["reason"] == "TargetNotFound" and "not-yet" in cond["message"]
    assert cluster.condition("orphan", "Ready")["status"] == "False"
    stack.post_fault(kind="error_burst", rate=0.3, duration_s=600)
    stamp = cluster.policy("orphan")["status"]["lastEvaluationTime"]
    cluster.evaluations_after("orphan", stamp, 10, timeout=EVALUATIONS_TIMEOUT_S)
    assert cluster.plans() == []
    warnings = [e for e in _events(setup, "orphan") if e.reason == "TargetNotFound"]
    assert warnings and warnings[0].type == "Warning"

    rollout_kit.create_rollout("not-yet")
    wait_for(
        ready(cluster, "orphan"), timeout=EVALUATIONS_TIMEOUT_S, what="Ready=True once the Rollout exists"
    )
    assert cluster.condition("orphan", "Degraded")["status"] == "False"


def _events(setup: Setup, name: str) -> list[Any]:
    core = client.CoreV1Api(setup.cluster.custom.api_client)
    listed = core.list_namespaced_event(setup.cluster.namespace, field_selector=f"involvedObject.name={name}")
    return list(listed.items)


def test_prometheus_down_degrades_without_action_and_recovers(setup: Setup) -> None:
    cluster, stack = setup.cluster, setup.stack
    cluster.apply(policy("outage", remediation=SINGLE_RUNG))
    wait_for(ready(cluster, "outage"), timeout=EVALUATIONS_TIMEOUT_S, what="Ready=True")
    stack.prometheus.stop()
    # A fault while Prometheus is down must not become a plan: ajan cannot see it.
    stack.post_fault(kind="error_burst", rate=0.5, duration_s=600)

    def degraded() -> dict[str, Any] | None:
        cond = cluster.condition("outage", "Degraded")
        return cond if cond and cond["status"] == "True" else None

    cond = wait_for(degraded, timeout=EVALUATIONS_TIMEOUT_S, what="Degraded=True")
    assert cond["reason"] == "PrometheusUnavailable"
    assert "unreachable" in cond["message"] and stack.url.removeprefix("http://") in cond["message"]
    ready_cond = cluster.condition("outage", "Ready")
    assert ready_cond is not None and ready_cond["status"] == "False"
    assert ready_cond["reason"] == "PrometheusUnavailable"
    cluster.evaluations_after("outage", cond["lastTransitionTime"], 3, timeout=EVALUATIONS_TIMEOUT_S)
    assert cluster.plans() == []
    stack.clear_faults()
    stack.prometheus.start()
    back = wait_for(ready(cluster, "outage"), timeout=EVALUATIONS_TIMEOUT_S, what="Ready=True again")
    assert back["reason"] == "Evaluated"
    degraded_now = cluster.condition("outage", "Degraded")
    assert degraded_now is not None and degraded_now["status"] == "False"


def test_bad_query_degrades_with_query_failed(setup: Setup) -> None:
    cluster = setup.cluster
    metrics = [*CANARY_METRICS, {"name": "by-track", "query": "sum by (track) (queue_depth)"}]
    cluster.apply(policy("ambiguous", metrics=metrics))

    def degraded() -> dict[str, Any] | None:
        cond = cluster.condition("ambiguous", "Degraded")
        return cond if cond and cond["status"] == "True" else None

    cond = wait_for(degraded, timeout=EVALUATIONS_TIMEOUT_S, what="Degraded=True")
    assert cond["reason"] == "QueryFailed"
    assert cond["message"].startswith("metric by-track: query returned 2 series")
    assert cluster.plans() == []


def test_operator_restart_mid_incident_makes_no_duplicate(setup: Setup) -> None:
    cluster, stack, operator = setup.cluster, setup.stack, setup.operator
    cluster.apply(policy("restart", remediation=SINGLE_RUNG))
    wait_for(ready(cluster, "restart"), timeout=EVALUATIONS_TIMEOUT_S, what="Ready=True")
    stack.post_fault(kind="error_burst", rate=0.3, duration_s=600)
    plans = wait_for(plans_of(cluster, 1), timeout=EVALUATIONS_TIMEOUT_S, what="a plan", interval=1.0)
    incident = cluster.policy("restart")["status"]["incident"]
    operator.stop(signal.SIGKILL)  # a crash: no graceful shutdown
    operator.start()
    stamp = cluster.policy("restart")["status"]["lastEvaluationTime"]
    cluster.evaluations_after("restart", stamp, 10, timeout=EVALUATIONS_TIMEOUT_S)
    after = cluster.plans()
    assert [p["metadata"]["name"] for p in after] == [plans[0]["metadata"]["name"]]
    assert after[0]["status"]["phase"] == "DryRun"  # recorded once (dry-run), not again
    assert cluster.policy("restart")["status"]["incident"]["id"] == incident["id"]
