"""Acting on Argo Rollouts, end to end: ``ajan run`` under manifests/' role, Argo's own Rollout CRD.

Each test: a namespace with a Rollout (Argo's CRD from its Go module), a metrics generator with
five minutes of healthy history and its Prometheus, a policy, and ``ajan run`` authenticated as the
restricted identity bound (in the namespace) to exactly the ClusterRole in manifests/rbac.yaml: a
verb missing from the role fails these tests. The metrics are the generator's canary, so a fault
injected there is what the policy sees.
"""

from __future__ import annotations

import json
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
import redis
import yaml
from kubernetes import client

from ajan.simulate.stack import RedisServer, free_port
from ajan.simulate.stack import canary_policy as policy
from support.kube import Kube, server_side_apply
from support.operator import Cluster, OperatorProcess
from support.prometheus import HistoryStack, StartWithHistory, wait_for
from support.rollouts import RolloutKit

ROOT: Final = Path(__file__).resolve().parents[2]
ROLE: Final = ROOT / "manifests" / "rbac.yaml"
PAUSE_LADDER: Final = [{"minConfidence": 0.5, "severity": "warning", "action": "pause"}]
CAREFUL_PAUSE_LADDER: Final = [{"minConfidence": 0.75, "severity": "warning", "action": "pause"}]
#: Generous: a loaded 2-core CI machine evaluates late; polls return as soon as the state is there.
TIMEOUT: Final = 180.0
#: An error burst that runs its course on its own (the feedback test's recurring pattern).
BURST_S: Final = 45.0
WINDOW_S: Final = 90.0


@dataclass
class Webhook:
    """A local HTTP endpoint that records the JSON bodies posted to it."""

    url: str
    received: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Webhook(f"http://127.0.0.1:{server.server_address[1]}/hook", received)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def bind_role(api: client.ApiClient, namespace: str) -> None:
    """manifests/' ClusterRole (applied as is) bound to the restricted identity in ``namespace``."""
    role = next(d for d in yaml.safe_load_all(ROLE.read_text()) if d["kind"] == "ClusterRole")
    server_side_apply(
        api, f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{role['metadata']['name']}", role
    )
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "ajan", "namespace": namespace},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": role["metadata"]["name"],
        },
        "subjects": [{"kind": "User", "name": "ajan-restricted", "apiGroup": "rbac.authorization.k8s.io"}],
    }
    server_side_apply(
        api, f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings/ajan", binding
    )


@dataclass
class Env:
    cluster: Cluster
    kit: RolloutKit
    stack: HistoryStack
    start_operator: Callable[..., OperatorProcess]
    api: client.ApiClient
    namespace: str


@pytest.fixture
def env(
    kube: Kube,
    admin_api: client.ApiClient,
    namespace: str,
    rollout_kit: RolloutKit,
    prometheus_with_history: StartWithHistory,
    ajan_operator: Callable[..., OperatorProcess],
) -> Env:
    bind_role(admin_api, namespace)
    stack = prometheus_with_history(300.0, day_seconds=86400)

    def start(*extra: str) -> OperatorProcess:
        return ajan_operator(stack.url, *extra, kubeconfig=kube.restricted_kubeconfig)

    return Env(Cluster(admin_api, namespace), rollout_kit, stack, start, admin_api, namespace)


def remediation(mode: str, ladder: list[dict[str, Any]] = PAUSE_LADDER, **more: Any) -> dict[str, Any]:
    return {"mode": mode, "ladder": ladder, **more}


def plan_in(cluster: Cluster, phase: str) -> Callable[[], dict[str, Any] | None]:
    def check() -> dict[str, Any] | None:
        return next((p for p in cluster.plans() if (p.get("status") or {}).get("phase") == phase), None)

    return check


def throttled(cluster: Cluster, reason: str) -> Callable[[], dict[str, Any] | None]:
    """A check for a plan held back with a Throttled condition of that reason."""

    def check() -> dict[str, Any] | None:
        for plan in cluster.plans():
            conditions = (plan.get("status") or {}).get("conditions") or []
            if any(c["type"] == "Throttled" and c["reason"] == reason for c in conditions):
                return plan
        return None

    return check


def events(api: client.ApiClient, namespace: str, name: str) -> list[dict[str, Any]]:
    listed = client.CoreV1Api(api).list_namespaced_event(namespace)
    found: list[dict[str, Any]] = [
        api.sanitize_for_serialization(e) for e in listed.items if e.involved_object.name == name
    ]
    return found


def unchanged(before: dict[str, Any], after: dict[str, Any]) -> bool:
    return bool(before["metadata"]["resourceVersion"] == after["metadata"]["resourceVersion"])


def settle(cluster: Cluster, name: str, evaluations: int = 5) -> None:
    """Wait for ``evaluations`` more evaluations. A plan can be executed before the policy's first
    evaluation writes its status (the status comes last), so a missing status counts as none yet."""
    stamp = (cluster.policy(name).get("status") or {}).get("lastEvaluationTime") or ""
    cluster.evaluations_after(name, stamp, evaluations, timeout=TIMEOUT)


def test_auto_pause_acts_once_announces_it_and_touches_nothing_else(env: Env, webhook: Webhook) -> None:
    target = env.kit.create_rollout("checkout")
    other = env.kit.create_rollout("other")
    env.start_operator()
    env.cluster.apply(policy("p", remediation=remediation("auto"), notification={"webhookUrl": webhook.url}))
    wait_for(lambda: env.cluster.condition("p", "Ready"), timeout=TIMEOUT, what="a first evaluation")
    env.stack.post_fault(kind="error_burst", rate=0.3, duration_s=600)
    plan = wait_for(plan_in(env.cluster, "Executed"), timeout=TIMEOUT, what="the plan executed", interval=1.0)
    name = plan["metadata"]["name"]
    assert plan["spec"]["mode"] == "auto" and plan["spec"]["action"] == "pause"
    pause, annotate = plan["status"]["dryRunPatch"].splitlines()
    assert pause == '{"spec": {"paused": true}}'
    assert json.loads(annotate)["metadata"]["annotations"]["aiops.ajan.dev/plan"] == name
    path = f"/namespaces/{env.namespace}/rollouts/checkout (application/merge-patch+json)"
    assert all(request.endswith(path) for request in plan["status"]["patchRequest"].splitlines())
    assert plan["status"]["executedAt"]
    paused = env.kit.get("checkout")
    assert paused["spec"]["paused"] is True
    assert paused["metadata"]["generation"] == target["metadata"]["generation"] + 1
    managers = {m["manager"] for m in paused["metadata"]["managedFields"]}
    assert "ajan" in managers
    # Nothing but the pause changed: the spec is the old one plus paused; and the Rollout names the
    # plan that paused it.
    assert {k: v for k, v in paused["spec"].items() if k != "paused"} == target["spec"]
    assert paused["metadata"]["annotations"]["aiops.ajan.dev/plan"] == name
    assert paused["metadata"]["annotations"]["aiops.ajan.dev/action"] == "pause"
    assert unchanged(other, env.kit.get("other"))

    settle(env.cluster, "p")
    assert env.kit.get("checkout")["metadata"]["resourceVersion"] == paused["metadata"]["resourceVersion"]
    on_rollout = [e for e in events(env.api, env.namespace, "checkout") if e["reason"] == "ActionPause"]
    on_plan = [e for e in events(env.api, env.namespace, name) if e["reason"] == "ActionPause"]
    assert len(on_rollout) == 1 and len(on_plan) == 1, (on_rollout, on_plan)
    assert on_rollout[0]["involvedObject"]["kind"] == "Rollout" and name in on_rollout[0]["message"]
    assert [p["metadata"]["name"] for p in env.cluster.plans()] == [name]
    said = {body["event"]: body for body in webhook.received}
    assert set(said) >= {"proposed", "executed"}, webhook.received
    assert name in said["executed"]["text"] and "pause on rollout checkout" in said["executed"]["text"]


def test_dry_run_records_the_exact_patch_and_changes_nothing(env: Env) -> None:
    ladder = [{"minConfidence": 0.5, "severity": "critical", "action": "abort"}]
    before = env.kit.create_rollout("checkout")
    env.start_operator()
    env.cluster.apply(policy("p", remediation=remediation("dry-run", ladder)))
    wait_for(lambda: env.cluster.condition("p", "Ready"), timeout=TIMEOUT, what="a first evaluation")
    env.stack.post_fault(kind="error_burst", rate=0.3, duration_s=600)
    plan = wait_for(plan_in(env.cluster, "DryRun"), timeout=TIMEOUT, what="the dry run", interval=1.0)
    status = plan["status"]
    abort, annotate = status["dryRunPatch"].splitlines()
    assert abort == '{"status": {"abort": true}}'
    assert json.loads(annotate)["metadata"]["annotations"]["aiops.ajan.dev/action"] == "abort"
    to_status, to_rollout = status["patchRequest"].splitlines()
    assert to_status.endswith("/rollouts/checkout/status (application/merge-patch+json)")
    assert to_rollout.endswith("/rollouts/checkout (application/merge-patch+json)")
    assert any(c["type"] == "DryRun" and c["status"] == "True" for c in status["conditions"])
    settle(env.cluster, "p", 3)
    assert unchanged(before, env.kit.get("checkout"))


def test_approve_waits_then_acts_once(env: Env) -> None:
    before = env.kit.create_rollout("checkout")
    env.start_operator()
    env.cluster.apply(policy("p", remediation=remediation("approve")))
    wait_for(lambda: env.cluster.condition("p", "Ready"), timeout=TIMEOUT, what="a first evaluation")
    env.stack.post_fault(kind="error_burst", rate=0.3, duration_s=600)

    def awaiting() -> dict[str, Any] | None:
        plan = plan_in(env.cluster, "Proposed")()
        conditions = ((plan or {}).get("status") or {}).get("conditions") or []
        return plan if any(c["type"] == "AwaitingApproval" for c in conditions) else None

    plan = wait_for(awaiting, timeout=TIMEOUT, what="a plan awaiting approval", interval=1.0)
    name = plan["metadata"]["name"]
    message = next(c for c in plan["status"]["conditions"] if c["type"] == "AwaitingApproval")["message"]
    assert f"kubectl -n {env.namespace} patch remediationplan {name} --type merge" in message
    assert plan["status"]["expiresAt"]
    settle(env.cluster, "p", 3)
    assert unchanged(before, env.kit.get("checkout"))
    assert env.cluster.plans()[0]["status"]["phase"] == "Proposed"

    env.cluster.custom.patch_namespaced_custom_object(
        "aiops.ajan.dev", "v1alpha1", env.namespace, "remediationplans", name,
        {"spec": {"approval": {"approved": True, "by": "alice@example.com"}}},
    )  # fmt: skip
    done = wait_for(plan_in(env.cluster, "Executed"), timeout=TIMEOUT, what="the approved plan executed")
    conditions = {c["type"]: c for c in done["status"]["conditions"]}
    assert "alice@example.com" in conditions["Approved"]["message"]
    # What held while it waited and while it was sent no longer does (kubectl wait can see it).
    held = {"AwaitingApproval": "False", "Executing": "False", "Approved": "True", "Executed": "True"}
    assert {t: conditions[t]["status"] for t in held} == held
    assert conditions["AwaitingApproval"]["reason"] == "Approved"
    assert env.kit.get("checkout")["spec"]["paused"] is True
    settle(env.cluster, "p", 3)
    pauses = [e for e in events(env.api, env.namespace, "checkout") if e["reason"] == "ActionPause"]
    assert len(pauses) == 1


def test_unapproved_plan_expires_and_nothing_happens(env: Env) -> None:
    before = env.kit.create_rollout("checkout")
    env.start_operator()
    env.cluster.apply(policy("p", remediation=remediation("approve", approvalTimeout="4s")))
    wait_for(lambda: env.cluster.condition("p", "Ready"), timeout=TIMEOUT, what="a first evaluation")
    env.stack.post_fault(kind="error_burst", rate=0.3, duration_s=600)
    plan = wait_for(plan_in(env.cluster, "Expired"), timeout=TIMEOUT, what="the plan expired", interval=1.0)
    assert any(c["reason"] == "ApprovalTimeout" for c in plan["status"]["conditions"])
    assert plan["status"]["resolvedAt"]
    assert unchanged(before, env.kit.get("checkout"))


def test_rate_limit_holds_an_escalation_in_a_storm(env: Env) -> None:
    pause = {"minConfidence": 0.3, "severity": "warning", "action": "pause"}
    abort = {"minConfidence": 0.999, "severity": "critical", "action": "abort"}
    env.kit.create_rollout("checkout")
    env.start_operator()
    # The abort rung joins only once the pause is sent: a creep seen late already reaches 0.999, and
    # which rung the first plan gets must not hang on when the first evaluation falls.
    env.cluster.apply(policy("p", remediation=remediation("auto", [pause], maxActionsPerHour=1)))
    wait_for(lambda: env.cluster.condition("p", "Ready"), timeout=TIMEOUT, what="a first evaluation")
    env.stack.post_fault(kind="latency_creep", rate=0.02, duration_s=600)
    wait_for(plan_in(env.cluster, "Executed"), timeout=TIMEOUT, what="the pause", interval=1.0)
    env.cluster.custom.patch_namespaced_custom_object(
        "aiops.ajan.dev", "v1alpha1", env.namespace, "correlationpolicies", "p",
        {"spec": {"remediation": {"ladder": [abort, pause]}}},
    )  # fmt: skip
    env.stack.post_fault(kind="error_burst", rate=0.9, duration_s=600)

    plan = wait_for(
        throttled(env.cluster, "RateLimited"), timeout=TIMEOUT, what="the abort held back", interval=1.0
    )
    assert plan["spec"]["action"] == "abort" and plan["status"]["phase"] == "Proposed"
    settle(env.cluster, "p", 3)
    rollout = env.kit.get("checkout")
    assert rollout["spec"]["paused"] is True
    assert not (rollout.get("status") or {}).get("abort")


def _plan(namespace: str, name: str, target: str, phase: str | None, mode: str = "auto") -> dict[str, Any]:
    return {
        "apiVersion": "aiops.ajan.dev/v1alpha1",
        "kind": "RemediationPlan",
        "metadata": {"name": name, "labels": {"aiops.ajan.dev/policy": "p", "aiops.ajan.dev/incident": "x1"}},
        "spec": {
            "policyRef": {"name": "p"}, "targetRef": {"name": target}, "action": "pause",
            "severity": "warning", "confidence": 0.8, "mode": mode,
        },
    }  # fmt: skip


def _create_plan(env: Env, name: str, target: str, status: dict[str, Any] | None) -> None:
    custom = env.cluster.custom
    custom.create_namespaced_custom_object(
        "aiops.ajan.dev",
        "v1alpha1",
        env.namespace,
        "remediationplans",
        _plan(env.namespace, name, target, None),
    )
    if status is not None:
        custom.patch_namespaced_custom_object_status(
            "aiops.ajan.dev", "v1alpha1", env.namespace, "remediationplans", name, {"status": status}
        )


def test_restart_between_intent_and_patch_finishes_the_action_once(env: Env) -> None:
    """A crash after the intent was written: the plan is Executing and nothing was sent yet."""
    before = env.kit.create_rollout("checkout")
    env.cluster.apply(policy("p", remediation=remediation("auto")))
    intent = {
        "phase": "Executing",
        "dryRunPatch": '{"spec": {"paused": true}}',
        "proposedAt": "2026-01-01T00:00:00Z",
    }
    _create_plan(env, "p-x1-pause", "checkout", intent)
    env.start_operator()
    done = wait_for(
        plan_in(env.cluster, "Executed"), timeout=TIMEOUT, what="the action finished", interval=1.0
    )
    assert done["metadata"]["name"] == "p-x1-pause"
    after = env.kit.get("checkout")
    assert after["spec"]["paused"] is True
    assert after["metadata"]["generation"] == before["metadata"]["generation"] + 1
    settle(env.cluster, "p", 3)
    # Said apart: an incident of the policy's own on the healthy generator (a false alarm, which
    # would also touch the canary) is another failure than a second pause.
    assert [p["metadata"]["name"] for p in env.cluster.plans()] == ["p-x1-pause"]
    assert env.kit.get("checkout")["metadata"]["resourceVersion"] == after["metadata"]["resourceVersion"]
    assert len([e for e in events(env.api, env.namespace, "checkout") if e["reason"] == "ActionPause"]) == 1


def test_restart_after_the_patch_records_it_without_sending_again(env: Env) -> None:
    """A crash after the pause was sent, before Executed was written: the pause is not sent again
    (the spec, so the generation, is untouched); only the annotations that had not gone yet are."""
    env.kit.create_rollout("checkout", paused=True)
    before = env.kit.get("checkout")
    env.cluster.apply(policy("p", remediation=remediation("auto")))
    _create_plan(env, "p-x1-pause", "checkout", {"phase": "Executing"})
    env.start_operator()
    wait_for(plan_in(env.cluster, "Executed"), timeout=TIMEOUT, what="the action recorded", interval=1.0)
    after = env.kit.get("checkout")
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["spec"] == before["spec"]
    assert after["metadata"]["annotations"]["aiops.ajan.dev/plan"] == "p-x1-pause"
    settle(env.cluster, "p", 3)
    assert unchanged(after, env.kit.get("checkout"))


def test_a_plan_for_another_rollout_is_never_executed(env: Env) -> None:
    env.kit.create_rollout("checkout")
    other = env.kit.create_rollout("other")
    env.cluster.apply(policy("p", remediation=remediation("auto")))
    _create_plan(env, "p-x1-pause", "other", {"phase": "Proposed"})
    env.start_operator()
    failed = wait_for(plan_in(env.cluster, "Failed"), timeout=TIMEOUT, what="the plan refused", interval=1.0)
    assert any(c["reason"] == "TargetMismatch" for c in failed["status"]["conditions"])
    assert unchanged(other, env.kit.get("other"))


def test_gitops_managed_rollout_gets_abort_and_a_git_suggestion_not_a_rollback(env: Env) -> None:
    ladder = [{"minConfidence": 0.5, "severity": "critical", "action": "rollback"}]
    env.kit.create_rollout("checkout")
    env.kit.custom.patch_namespaced_custom_object(
        "argoproj.io", "v1alpha1", env.namespace, "rollouts", "checkout",
        {"metadata": {"labels": {"app.kubernetes.io/instance": "shop"}}},
    )  # fmt: skip
    env.start_operator()
    env.cluster.apply(policy("p", remediation=remediation("dry-run", ladder)))
    wait_for(lambda: env.cluster.condition("p", "Ready"), timeout=TIMEOUT, what="a first evaluation")
    env.stack.post_fault(kind="error_burst", rate=0.3, duration_s=600)
    plan = wait_for(plan_in(env.cluster, "DryRun"), timeout=TIMEOUT, what="the dry run", interval=1.0)
    assert plan["spec"]["action"] == "abort"
    gitops = plan["spec"]["gitOps"]
    assert gitops["manager"] == "argocd" and gitops["source"] == "app.kubernetes.io/instance=shop"
    assert "reverted by the next sync" in gitops["note"] and "revert" in gitops["suggestion"]
    assert plan["status"]["dryRunPatch"].splitlines()[0] == '{"status": {"abort": true}}'


def test_auto_rollback_restores_the_previous_revision(env: Env) -> None:
    ladder = [{"minConfidence": 0.5, "severity": "critical", "action": "rollback"}]
    rollout = env.kit.create_rollout("checkout", image="registry.example/app:2")
    env.kit.create_replicaset(rollout, 1, "registry.example/app:1", "aaaa1111")
    env.kit.create_replicaset(rollout, 2, "registry.example/app:2", "bbbb2222")
    env.start_operator()
    env.cluster.apply(policy("p", remediation=remediation("auto", ladder)))
    wait_for(lambda: env.cluster.condition("p", "Ready"), timeout=TIMEOUT, what="a first evaluation")
    env.stack.post_fault(kind="error_burst", rate=0.3, duration_s=600)
    plan = wait_for(plan_in(env.cluster, "Executed"), timeout=TIMEOUT, what="the rollback", interval=1.0)
    assert (
        plan["status"]["patchRequest"]
        .splitlines()[0]
        .endswith("/rollouts/checkout (application/json-patch+json)")
    )
    template = env.kit.get("checkout")["spec"]["template"]
    assert template["spec"]["containers"][0]["image"] == "registry.example/app:1"
    assert "rollouts-pod-template-hash" not in template["metadata"].get("labels", {})


def test_operator_crash_mid_incident_repeats_no_action(env: Env) -> None:
    env.kit.create_rollout("checkout")
    operator = env.start_operator()
    env.cluster.apply(policy("p", remediation=remediation("auto")))
    wait_for(lambda: env.cluster.condition("p", "Ready"), timeout=TIMEOUT, what="a first evaluation")
    env.stack.post_fault(kind="error_burst", rate=0.3, duration_s=600)
    wait_for(plan_in(env.cluster, "Executed"), timeout=TIMEOUT, what="the pause", interval=1.0)
    paused = env.kit.get("checkout")
    operator.stop(signal.SIGKILL)
    operator.start()
    settle(env.cluster, "p", 5)
    assert env.kit.get("checkout")["metadata"]["resourceVersion"] == paused["metadata"]["resourceVersion"]
    assert len(env.cluster.plans()) == 1


def test_a_confirmed_false_alarm_lets_the_canary_go_on(env: Env) -> None:
    """An executed pause marked false-positive in spec.feedback: ajan's pause undone, once; and only
    it: the canary was also held at a pause step of its own, which stays, at the same step."""
    env.kit.create_rollout("checkout", paused=True)
    step_pause = {
        "currentStepIndex": 1,
        "pauseConditions": [{"reason": "CanaryPauseStep", "startTime": "2026-01-01T00:00:00Z"}],
    }
    env.kit.set_status("checkout", step_pause)
    env.cluster.apply(policy("p", remediation=remediation("auto")))
    _create_plan(env, "p-x1-pause", "checkout", {"phase": "Executed", "executedAt": "2026-01-01T00:00:00Z"})
    env.cluster.custom.patch_namespaced_custom_object(
        "aiops.ajan.dev", "v1alpha1", env.namespace, "remediationplans", "p-x1-pause",
        {"spec": {"feedback": {"verdict": "false-positive", "by": "bob", "comment": "a load test"}}},
    )  # fmt: skip
    env.start_operator()

    def reverted() -> dict[str, Any] | None:
        # By name: a plan the policy opened meanwhile would sort before it.
        return env.cluster.plan_condition("p-x1-pause", "Reverted")

    cond = wait_for(reverted, timeout=TIMEOUT, what="the pause reverted", interval=1.0)
    assert cond["reason"] == "FalsePositive" and "unpause sent" in cond["message"]
    assert '{"spec": {"paused": false}}' in cond["message"]
    after = env.kit.get("checkout")
    assert not after["spec"].get("paused")
    assert after["status"]["currentStepIndex"] == 1
    assert after["status"]["pauseConditions"] == step_pause["pauseConditions"]
    settle(env.cluster, "p", 3)
    # Said apart: an incident of the policy's own on the healthy generator (a false alarm, which
    # would also touch the canary) is another failure than a second unpause.
    assert [p["metadata"]["name"] for p in env.cluster.plans()] == ["p-x1-pause"]
    assert env.kit.get("checkout")["metadata"]["resourceVersion"] == after["metadata"]["resourceVersion"]


def test_auto_abort_is_sent_to_the_status_and_a_false_alarm_retries_it(env: Env) -> None:
    """An abort goes to the status subresource, as the plugin sends it, followed by the annotations
    naming its plan; marked a false positive, it is retried (status.abort false), once."""
    ladder = [{"minConfidence": 0.5, "severity": "critical", "action": "abort"}]
    env.kit.create_rollout("checkout")
    env.start_operator()
    env.cluster.apply(policy("p", remediation=remediation("auto", ladder)))
    wait_for(lambda: env.cluster.condition("p", "Ready"), timeout=TIMEOUT, what="a first evaluation")
    env.stack.post_fault(kind="error_burst", rate=0.3, duration_s=600)
    plan = wait_for(plan_in(env.cluster, "Executed"), timeout=TIMEOUT, what="the abort", interval=1.0)
    name = plan["metadata"]["name"]
    aborted = env.kit.get("checkout")
    assert aborted["status"]["abort"] is True
    assert aborted["metadata"]["annotations"]["aiops.ajan.dev/plan"] == name
    env.stack.clear_faults()
    env.cluster.custom.patch_namespaced_custom_object(
        "aiops.ajan.dev", "v1alpha1", env.namespace, "remediationplans", name,
        {"spec": {"feedback": {"verdict": "false-positive", "by": "bob"}}},
    )  # fmt: skip

    def reverted() -> dict[str, Any] | None:
        conditions = (env.cluster.plan(name).get("status") or {}).get("conditions") or []
        return next((c for c in conditions if c["type"] == "Reverted"), None)

    cond = wait_for(reverted, timeout=TIMEOUT, what="the abort retried", interval=1.0)
    assert "retry sent" in cond["message"] and '{"status": {"abort": false}}' in cond["message"]
    assert not env.kit.get("checkout")["status"].get("abort")


def test_cooldown_holds_a_second_pause_after_a_new_incident(env: Env) -> None:
    """Two incidents in a row: the second one's pause waits out remediation.cooldown."""
    env.kit.create_rollout("checkout")
    env.start_operator()
    env.cluster.apply(policy("p", remediation=remediation("auto", cooldown="10m", recoveryEvaluations=2)))
    wait_for(lambda: env.cluster.condition("p", "Ready"), timeout=TIMEOUT, what="a first evaluation")
    env.stack.post_fault(kind="error_burst", rate=0.3, duration_s=600)
    first = wait_for(plan_in(env.cluster, "Executed"), timeout=TIMEOUT, what="the first pause", interval=1.0)
    env.stack.clear_faults()
    wait_for(plan_in(env.cluster, "Resolved"), timeout=TIMEOUT, what="the first incident over", interval=1.0)
    # A person resumed the canary; then it degrades again.
    env.kit.custom.patch_namespaced_custom_object(
        "argoproj.io", "v1alpha1", env.namespace, "rollouts", "checkout", {"spec": {"paused": False}}
    )
    resumed = env.kit.get("checkout")
    env.stack.post_fault(kind="error_burst", rate=0.3, duration_s=600)

    cooling = throttled(env.cluster, "CoolingDown")
    second = wait_for(cooling, timeout=TIMEOUT, what="the second pause held back", interval=1.0)
    assert second["metadata"]["name"] != first["metadata"]["name"]
    assert second["status"]["phase"] == "Proposed" and second["spec"]["action"] == "pause"
    settle(env.cluster, "p", 3)
    assert unchanged(resumed, env.kit.get("checkout"))


def _evaluated_at(cluster: Cluster, name: str) -> float:
    stamp = cluster.policy(name)["status"]["lastEvaluationTime"]
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _feedback_token(api: client.ApiClient, namespace: str) -> str:
    """A service-account token for the feedback API, as a chat bot in the cluster would hold."""
    core = client.CoreV1Api(api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "feedback-bot"}})
    request = {"spec": {"audiences": ["ajan-feedback"], "expirationSeconds": 3600}}
    token = core.create_namespaced_service_account_token("feedback-bot", namespace, request)
    return str(token.status.token)


def _let_judge(api: client.ApiClient, namespace: str, account: str) -> None:
    """Bind the shipped ``ajan-plan-judge`` ClusterRole (manifests/rbac-users.yaml) to a service
    account in ``namespace``, as docs/feedback-api.md tells a team to."""
    docs = yaml.safe_load_all((ROOT / "manifests" / "rbac-users.yaml").read_text())
    (judge,) = [d for d in docs if d and d["metadata"]["name"] == "ajan-plan-judge"]
    server_side_apply(api, "/apis/rbac.authorization.k8s.io/v1/clusterroles/ajan-plan-judge", judge)
    client.RbacAuthorizationV1Api(api).create_namespaced_role_binding(namespace, {
        "metadata": {"name": f"{account}-judges"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "ajan-plan-judge"},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
    })  # fmt: skip


def test_a_rejected_pattern_is_only_annotated_next_time_while_a_new_incident_is_acted_on(
    env: Env, redis_server: RedisServer
) -> None:
    """The feedback loop end to end: the verdict goes through the feedback API (a service-account
    token checked against the API server's own JWKS) into Redis; the same pattern then only
    annotates, and an incident of another kind still pauses the canary."""
    # In a cluster ajan runs as a service account, which may read the issuer's keys by default; the
    # restricted test identity is a user, so it gets the same ClusterRole explicitly.
    binding_name = f"ajan-jwks-{env.namespace}"
    rbac = client.RbacAuthorizationV1Api(env.api)
    rbac.create_cluster_role_binding({
        "metadata": {"name": binding_name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "system:service-account-issuer-discovery"},
        "subjects": [{"kind": "User", "name": "ajan-restricted", "apiGroup": "rbac.authorization.k8s.io"}],
    })  # fmt: skip
    try:
        _feedback_story(env, redis_server)
    finally:
        rbac.delete_cluster_role_binding(binding_name)


def _feedback_story(env: Env, redis_server: RedisServer) -> None:
    port = free_port()
    env.kit.create_rollout("checkout")
    env.start_operator(
        f"--redis-url={redis_server.url}", f"--feedback-listen=127.0.0.1:{port}",
        "--feedback-issuer=https://kubernetes.default.svc.cluster.local",
    )  # fmt: skip
    # A short window, so that a burst has left the baseline soon after it ends: a pattern that recurs
    # within one window is part of what normal looks like. The default ladder's pause rung (0.75),
    # not the other tests' 0.5: over this test's minutes the canary's p99, near a histogram bucket
    # boundary, now and then crosses the threshold alone (confidence about 0.6), and that is no pause.
    env.cluster.apply(
        policy(
            "p",
            window=f"{WINDOW_S:g}s",
            remediation=remediation("auto", CAREFUL_PAUSE_LADDER, cooldown="0s", recoveryEvaluations=2),
        )
    )
    wait_for(lambda: env.cluster.condition("p", "Ready"), timeout=TIMEOUT, what="a first evaluation")

    def out_of_the_window(burst_started: float) -> None:
        gone = burst_started + BURST_S + WINDOW_S
        wait_for(lambda: _evaluated_at(env.cluster, "p") > gone, timeout=TIMEOUT + WINDOW_S,
                 what="an evaluation whose window no longer holds the burst", interval=1.0)  # fmt: skip

    # 1. An error burst pauses the canary; the team says it was their load test. Both bursts run
    # their course (BURST_S), so the second is as strong as the first was.
    started = time.time()
    env.stack.post_fault(kind="error_burst", rate=0.3, duration_s=BURST_S)
    first = wait_for(plan_in(env.cluster, "Executed"), timeout=TIMEOUT, what="the first pause", interval=1.0)
    token = _feedback_token(env.api, env.namespace)

    def judge() -> httpx.Response:
        return httpx.post(
            f"http://127.0.0.1:{port}/v1/feedback",
            headers={"Authorization": f"Bearer {token}"},
            json={"namespace": env.namespace, "plan": first["metadata"]["name"], "verdict": "false-positive",
                  "comment": "our load test"},
            timeout=30,
        )  # fmt: skip

    # A token alone is not the right to judge: the operator asks the API server (as its restricted
    # identity), which says no until the bot is bound to ajan-plan-judge in this namespace.
    refused = judge()
    assert refused.status_code == 403, refused.text
    _let_judge(env.api, env.namespace, "feedback-bot")
    answer = judge()
    assert answer.status_code == 201, answer.text
    assert answer.json()["by"] == f"system:serviceaccount:{env.namespace}:feedback-bot"
    wait_for(plan_in(env.cluster, "Resolved"), timeout=TIMEOUT, what="the first incident over", interval=1.0)
    canary = env.kit.get("checkout")
    assert not canary["spec"].get("paused"), "the false alarm's pause was not reverted"
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    assert 'aiops_feedback_total{verdict="false-positive"} 1.0' in metrics
    # The operator's own series, on the same endpoint.
    assert 'aiops_plans_total{action="pause",severity="warning"} 1.0' in metrics
    assert 'aiops_actions_executed_total{action="pause"} 1.0' in metrics
    evaluated = re.search(r'^aiops_evaluations_total\{result="evaluated"\} (\S+)$', metrics, re.M)
    assert evaluated is not None and float(evaluated.group(1)) > 0
    assert f'aiops_policy_confidence{{namespace="{env.namespace}",policy="p"}}' in metrics

    # 2. The same burst again: recorded and annotated, the canary goes on.
    out_of_the_window(started)
    started = time.time()
    env.stack.post_fault(kind="error_burst", rate=0.3, duration_s=BURST_S)

    def second_plan() -> dict[str, Any] | None:
        return next((p for p in env.cluster.plans() if p["metadata"]["name"] != first["metadata"]["name"]
                     and (p.get("status") or {}).get("phase") == "Executed"), None)  # fmt: skip

    second = wait_for(second_plan, timeout=TIMEOUT, what="a plan for the second burst", interval=1.0)
    assert second["spec"]["action"] == "annotate", second["spec"]
    assert "false positive" in second["spec"]["evidence"]["feedback"]
    assert not env.kit.get("checkout")["spec"].get("paused")
    wait_for(lambda: all((p.get("status") or {}).get("phase") == "Resolved" for p in env.cluster.plans()),
             timeout=TIMEOUT, what="the second incident over", interval=1.0)  # fmt: skip

    # 3. Latency climbs: another kind of incident, which no verdict covers: paused. Redis is down
    # meanwhile: ajan decides without feedback rather than not at all. Steep (twice as slow after
    # 7 s): this policy's 90 s window learns a gentle ramp as the trend within a minute, and a
    # gentle one (0.05) was seen to peak at confidence 0.34 and never pause.
    out_of_the_window(started)
    redis_server.stop()
    env.stack.post_fault(kind="latency_creep", rate=0.15, duration_s=600)

    def pause_again() -> dict[str, Any] | None:
        return next((p for p in env.cluster.plans() if p["spec"]["action"] == "pause"
                     and p["metadata"]["name"] != first["metadata"]["name"]
                     and (p.get("status") or {}).get("phase") == "Executed"), None)  # fmt: skip

    third = wait_for(pause_again, timeout=TIMEOUT, what="a pause for the latency incident", interval=1.0)
    assert "latency-p99" in {a["metric"] for a in third["spec"]["evidence"]["anomalies"]}
    assert env.kit.get("checkout")["spec"]["paused"] is True
    env.stack.clear_faults()
    warned = [e for e in events(env.api, env.namespace, "p") if e["reason"] == "FeedbackUnavailable"]
    assert warned and warned[0]["type"] == "Warning"
    # Nothing stored was lost: the verdict is back with Redis.
    redis_server.start()
    stored = redis.Redis.from_url(redis_server.url)
    try:
        assert stored.exists(f"ajan:feedback:plan:{env.namespace}/p/{first['metadata']['name']}")
    finally:
        stored.close()
