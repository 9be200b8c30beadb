"""The operator as its users run it: ``ajan run`` in a process of its own, against the test control plane.

`ajan_operator` starts it (`ajan.simulate.stack.OperatorProcess`, watching one namespace, with a
default Prometheus) and waits for kopf's liveness endpoint; the test may restart or stop it;
teardown stops it and checks that nothing of it is left. Its log is kept in the test's temporary
directory and printed when a test fails.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

import pytest
from kubernetes import client

from ajan.simulate.stack import START_DEADLINE_S, OperatorProcess, wait_for
from support.kube import Kube

__all__ = ["START_DEADLINE_S", "Cluster", "OperatorProcess"]

GROUP: Final = "aiops.ajan.dev"
VERSION: Final = "v1alpha1"


@pytest.fixture
def ajan_operator(
    kube: Kube, admin_api: client.ApiClient, namespace: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., OperatorProcess]]:
    """Factory: ``ajan_operator(prometheus_url, *extra_flags, kubeconfig=admin)`` runs ``ajan run`` on the
    test namespace, as the admin or (``kube.restricted_kubeconfig``) as the restricted identity."""
    started: list[OperatorProcess] = []

    def start(prometheus_url: str, *extra: str, kubeconfig: Path | None = None) -> OperatorProcess:
        process = OperatorProcess(
            kubeconfig or kube.admin_kubeconfig, namespace, prometheus_url, tmp_path, *extra
        )
        started.append(process)
        process.start()
        return process

    yield start
    failed = getattr(request.node, "rep_call", None)
    for process in started:
        process.stop()
        if failed is not None and failed.failed:
            print(f"\n--- ajan log ({process.log_path}) ---\n{process.log()[-20000:]}")
    if started and failed is not None and failed.failed:
        # What the operator decided, in the order it decided it: a log line says a plan changed,
        # only the plan says why.
        plans = Cluster(admin_api, namespace).plans()
        for plan in sorted(plans, key=lambda p: str(p["metadata"]["creationTimestamp"])):
            print(f"\n--- plan {plan['metadata']['name']} ---\n{_plan_summary(plan)}")
        listed = client.CoreV1Api(admin_api).list_namespaced_event(namespace).items
        print("\n--- events ---")
        for event in sorted(listed, key=lambda e: str(e.last_timestamp or e.event_time or "")):
            print(f"{event.last_timestamp or event.event_time} {event.involved_object.name} "
                  f"{event.reason}: {event.message}")  # fmt: skip


def _plan_summary(plan: dict[str, Any]) -> str:
    spec, status = plan.get("spec") or {}, plan.get("status") or {}
    evidence = spec.get("evidence") or {}
    keep = {
        "created": plan["metadata"]["creationTimestamp"],
        "action": spec.get("action"),
        "confidence": spec.get("confidence"),
        "feedback": spec.get("feedback"),
        "evidenceFeedback": evidence.get("feedback"),
        "anomalies": _anomalies(evidence),
        "phase": status.get("phase"),
        "peakShifts": status.get("peakShifts"),
        "latestAnomalies": _anomalies(status.get("latestEvidence") or {}),
    }
    return json.dumps(keep, indent=1, default=str)


def _anomalies(evidence: dict[str, Any]) -> list[tuple[Any, ...]]:
    keys = ("metric", "value", "baseline", "zScore")
    return [tuple(a.get(k) for k in keys) for a in evidence.get("anomalies", [])]


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Keep each phase's report on the test item, so fixtures can tell whether the test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


class Cluster:
    """The few API calls the tests make, as the admin."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.namespace = namespace

    def apply(self, body: dict[str, Any]) -> dict[str, Any]:
        created: dict[str, Any] = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "correlationpolicies", body
        )
        return created

    def policy(self, name: str) -> dict[str, Any]:
        got: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "correlationpolicies", name
        )
        return got

    def plans(self) -> list[dict[str, Any]]:
        listed = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, "remediationplans")
        items: list[dict[str, Any]] = listed["items"]
        return sorted(items, key=lambda p: p["metadata"]["creationTimestamp"])

    def condition(self, name: str, type_: str) -> dict[str, Any] | None:
        conditions = (self.policy(name).get("status") or {}).get("conditions") or []
        return next((c for c in conditions if c["type"] == type_), None)

    def plan(self, name: str) -> dict[str, Any]:
        got: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "remediationplans", name
        )
        return got

    def plan_condition(self, name: str, type_: str) -> dict[str, Any] | None:
        """The plan's condition of type ``type_``, or None while it has none."""
        conditions = (self.plan(name).get("status") or {}).get("conditions") or []
        return next((c for c in conditions if c["type"] == type_), None)

    def evaluations_after(self, name: str, after: str, count: int, timeout: float) -> None:
        """Wait until the policy was evaluated ``count`` more times after ``after`` (lastEvaluationTime)."""
        seen: set[str] = set()

        def check() -> bool:
            stamp = (self.policy(name).get("status") or {}).get("lastEvaluationTime")
            if stamp and stamp > after:
                seen.add(stamp)
            return len(seen) >= count

        wait_for(check, timeout=timeout, what=f"{count} evaluations of {name}", interval=0.5)
