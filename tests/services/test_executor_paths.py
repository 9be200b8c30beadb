"""The executor's time-driven paths, in-process against the test run's API server, at chosen times.

Expiry, cooldown, the hourly limit and a target mismatch were tested only end to end (10-33 s
each, at the operator's pace); here `Executor.progress` is called directly with the clock a test
chooses, on real plans and a real Rollout, so each path takes a few API calls. One end-to-end test
per behaviour stays in tests/e2e/test_actions.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client

from ajan.clients.kubernetes import KubeStore
from ajan.clients.rollouts import RolloutClient
from ajan.models import (
    GROUP,
    VERSION,
    ConditionStatus,
    CorrelationPolicySpec,
    PlanPhase,
    RemediationPlan,
    find_condition,
)
from ajan.models.common import rfc3339
from ajan.services.execution import Executor, OperatorLimit
from ajan.services.reconcile import LABEL_INCIDENT, LABEL_POLICY
from ajan.simulate.stack import canary_policy
from support.rollouts import RolloutKit

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def policy_spec(**remediation: Any) -> CorrelationPolicySpec:
    spec = canary_policy("p")["spec"]
    spec["targetRef"] = {"name": "checkout"}
    spec["remediation"] = {"mode": "auto", "cooldown": "10m", "maxActionsPerHour": 6, **remediation}
    return CorrelationPolicySpec.model_validate(spec)


class Plans:
    """Plans of policy ``p`` in the test namespace, created as the operator would leave them."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.namespace = namespace

    def create(self, name: str, action: str, *, mode: str = "auto", target: str = "checkout",
               status: dict[str, Any]) -> None:  # fmt: skip
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "RemediationPlan",
            "metadata": {"name": name, "labels": {LABEL_POLICY: "p", LABEL_INCIDENT: name}},
            "spec": {
                "policyRef": {"name": "p"}, "targetRef": {"name": target}, "action": action,
                "severity": "warning", "confidence": 0.8, "mode": mode,
            },
        }  # fmt: skip
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, "remediationplans", body)
        self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, self.namespace, "remediationplans", name, {"status": status}
        )

    def all(self) -> list[RemediationPlan]:
        listed = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, "remediationplans")
        return [RemediationPlan.model_validate(p) for p in listed["items"]]

    def one(self, name: str) -> RemediationPlan:
        return next(p for p in self.all() if p.name == name)


def proposed(minutes: float) -> dict[str, Any]:
    return {"phase": "Proposed", "proposedAt": rfc3339(at(minutes))}


def executed(minutes: float) -> dict[str, Any]:
    stamp = rfc3339(at(minutes))
    return {"phase": "Executed", "proposedAt": stamp, "executedAt": stamp}


@pytest.fixture
def executor(admin_api: client.ApiClient, namespace: str) -> Iterator[Executor]:
    store = KubeStore(admin_api, max_workers=2)
    rollouts = RolloutClient(admin_api, max_workers=2)
    try:
        yield Executor(rollouts, store, OperatorLimit(20), None, namespace, "p")
    finally:
        rollouts.close()


def step(executor: Executor, plans: Plans, spec: CorrelationPolicySpec, minutes: float) -> list[str]:
    """One `Executor.progress` at ``T0 + minutes``; the notes' reasons."""
    notes = asyncio.run(executor.progress(spec, plans.all(), at(minutes)))
    return [n.reason for n in notes]


def test_an_unapproved_plan_waits_until_its_timeout_and_then_expires(
    admin_api: client.ApiClient, namespace: str, rollout_kit: RolloutKit, executor: Executor
) -> None:
    before = rollout_kit.create_rollout("checkout")
    plans = Plans(admin_api, namespace)
    plans.create("wait", "pause", mode="approve", status=proposed(0))
    spec = policy_spec(mode="approve", approvalTimeout="10m")
    assert step(executor, plans, spec, 1) == ["AwaitingApproval"]
    assert plans.one("wait").current.expires_at == at(10)
    assert step(executor, plans, spec, 9.9) == []
    assert plans.one("wait").current.phase is PlanPhase.PROPOSED
    assert step(executor, plans, spec, 10) == ["PlanExpired"]
    plan = plans.one("wait")
    assert plan.current.phase is PlanPhase.EXPIRED and plan.current.resolved_at == at(10)
    expired = find_condition(plan.current.conditions, "Expired")
    assert expired is not None and expired.reason == "ApprovalTimeout"
    assert rollout_kit.get("checkout")["spec"] == before["spec"]


def test_the_cooldown_holds_a_second_pause_until_it_is_over(
    admin_api: client.ApiClient, namespace: str, rollout_kit: RolloutKit, executor: Executor
) -> None:
    rollout_kit.create_rollout("checkout")
    plans = Plans(admin_api, namespace)
    plans.create("first", "pause", status=executed(0))
    plans.create("second", "pause", status=proposed(2))
    spec = policy_spec()
    assert step(executor, plans, spec, 3) == ["CoolingDown"]
    held = find_condition(plans.one("second").current.conditions, "Throttled")
    assert held is not None and held.status is ConditionStatus.TRUE and held.reason == "CoolingDown"
    assert step(executor, plans, spec, 9) == []  # still held; the condition is not written again
    assert rollout_kit.get("checkout")["spec"].get("paused") is not True
    step(executor, plans, spec, 10.5)
    assert plans.one("second").current.phase is PlanPhase.EXECUTED
    assert rollout_kit.get("checkout")["spec"]["paused"] is True


def test_the_hourly_limit_holds_even_an_escalation_for_the_rest_of_the_hour(
    admin_api: client.ApiClient, namespace: str, rollout_kit: RolloutKit, executor: Executor
) -> None:
    rollout_kit.create_rollout("checkout")
    plans = Plans(admin_api, namespace)
    plans.create("pause", "pause", status=executed(0))
    plans.create("abort", "abort", status=proposed(1))
    spec = policy_spec(maxActionsPerHour=1)
    assert step(executor, plans, spec, 2) == ["RateLimited"]
    assert step(executor, plans, spec, 59) == []
    assert plans.one("abort").current.phase is PlanPhase.PROPOSED
    assert not (rollout_kit.get("checkout").get("status") or {}).get("abort")
    step(executor, plans, spec, 60.5)
    assert plans.one("abort").current.phase is PlanPhase.EXECUTED


def test_a_plan_for_another_rollout_fails_and_touches_nothing(
    admin_api: client.ApiClient, namespace: str, rollout_kit: RolloutKit, executor: Executor
) -> None:
    other = rollout_kit.create_rollout("other")
    rollout_kit.create_rollout("checkout")
    plans = Plans(admin_api, namespace)
    plans.create("stray", "pause", target="other", status=proposed(0))
    assert step(executor, plans, policy_spec(), 1) == ["TargetMismatch"]
    assert plans.one("stray").current.phase is PlanPhase.FAILED
    assert rollout_kit.get("other")["spec"] == other["spec"]


@pytest.mark.parametrize("paused", [True, False])
def test_an_abort_lifts_a_pause_after_it_is_in(
    admin_api: client.ApiClient, namespace: str, rollout_kit: RolloutKit, executor: Executor, paused: bool
) -> None:
    # Argo does not reconcile a paused Rollout's ReplicaSets: an abort under ajan's earlier pause
    # would be recorded and never carried out (seen in tests/argo/test_beside_analysis.py).
    rollout_kit.create_rollout("checkout")
    if paused:
        rollout_kit.custom.patch_namespaced_custom_object(
            "argoproj.io", "v1alpha1", namespace, "rollouts", "checkout", {"spec": {"paused": True}}
        )
    plans = Plans(admin_api, namespace)
    plans.create("abort", "abort", status=proposed(0))
    step(executor, plans, policy_spec(), 1)
    plan = plans.one("abort")
    assert plan.current.phase is PlanPhase.EXECUTED
    sent = (plan.current.dry_run_patch or "").splitlines()
    lifted = (
        ['{"status": {"abort": true}}', '{"spec": {"paused": false}}']
        if paused
        else ['{"status": {"abort": true}}']
    )
    assert sent[:-1] == lifted, sent  # the abort first, then the pause lifted; the annotation last
    after = rollout_kit.get("checkout")
    assert after["status"]["abort"] is True
    assert after["spec"].get("paused") is not True


def test_a_plan_whose_rollout_is_gone_fails_with_the_api_servers_sentence(
    admin_api: client.ApiClient, namespace: str, rollout_kit: RolloutKit, executor: Executor
) -> None:
    # The Rollout deleted under an open incident (the service retired, renamed): not retried.
    plans = Plans(admin_api, namespace)
    plans.create("orphan", "pause", status=proposed(0))
    assert step(executor, plans, policy_spec(), 1) == ["RolloutNotFound"]
    plan = plans.one("orphan")
    assert plan.current.phase is PlanPhase.FAILED
    failed = find_condition(plan.current.conditions, "Failed")
    assert failed is not None and failed.reason == "RolloutNotFound"
    # The API server's own words, not its JSON Status object.
    assert 'rollouts.argoproj.io "checkout" not found' in failed.message
    assert "{" not in failed.message, failed.message
    assert step(executor, plans, policy_spec(), 2) == []
