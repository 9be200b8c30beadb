"""The API server refuses one of ajan's writes (403: its role changed under it).

The operator's own `PolicyEvaluator` on real clients, as an identity of its own (a client
certificate signed by the test control plane's CA, so that the refusals stay out of the audit log
tests/e2e/test_rbac.py reads), bound to manifests/rbac.yaml's rules less the one that lets it move a
plan on (``patch remediationplans/status``). What must hold: the refusal is a ``Degraded`` condition
naming what was refused, never a second incident or a second plan, and once the rule is back the
same plan goes on.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from ajan.services.reconcile import PolicyEvaluator, Report
from observability.harness import always_policy, runtime_of
from support.kube import Kube
from support.operator import Cluster
from support.prometheus import StartWithHistory, wait_for
from support.rollouts import RolloutKit

REPO: Final = Path(__file__).resolve().parents[2]
USER: Final = "ajan-refused"
PLAN_STATUS: Final = "remediationplans/status"
#: Evaluations until the first with data (the backfilled history's gap to the live scrapes).
DEADLINE_EVALUATIONS: Final = 120


def _shipped_rules() -> list[dict[str, Any]]:
    docs = yaml.safe_load_all((REPO / "manifests" / "rbac.yaml").read_text())
    (role,) = [d for d in docs if d and d["kind"] == "ClusterRole"]
    rules: list[dict[str, Any]] = role["rules"]
    return rules


@pytest.fixture
def refused_api(kube: Kube, tmp_path: Path) -> Iterator[client.ApiClient]:
    """An API client as the user ``ajan-refused``: a client certificate from the control plane's CA."""
    pki = kube.dir / "pki"
    key, csr, cert = tmp_path / "user.key", tmp_path / "user.csr", tmp_path / "user.crt"
    subprocess.run(
        ["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-subj", f"/CN={USER}", "-keyout", str(key), "-out", str(csr)],
        check=True, capture_output=True,
    )  # fmt: skip
    subprocess.run(
        ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(pki / "ca.crt"),
         "-CAkey", str(pki / "ca.key"), "-CAcreateserial", "-CAserial", str(tmp_path / "ca.srl"),
         "-days", "1", "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    admin = yaml.safe_load(kube.admin_kubeconfig.read_text())
    configuration = client.Configuration()
    configuration.host = admin["clusters"][0]["cluster"]["server"]
    configuration.ssl_ca_cert = str(pki / "ca.crt")
    configuration.cert_file, configuration.key_file = str(cert), str(key)
    with client.ApiClient(configuration) as api:
        yield api


def _grant(admin_api: client.ApiClient, namespace: str, rules: list[dict[str, Any]]) -> None:
    """The Role ``ajan`` in ``namespace``, bound to the user, with ``rules`` (created, or replaced)."""
    rbac = client.RbacAuthorizationV1Api(admin_api)
    role = {"metadata": {"name": "ajan"}, "rules": rules}
    try:
        rbac.create_namespaced_role(namespace, role)
    except ApiException as err:
        if err.status != 409:
            raise
        rbac.replace_namespaced_role("ajan", namespace, role)
        return
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "ajan"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "ajan"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": USER}],
    })  # fmt: skip


def _allowed(api: client.ApiClient, namespace: str, verb: str, resource: str, subresource: str = "") -> bool:
    """Whether the API server's authorizer lets ``api``'s user do it now (RBAC changes take a moment)."""
    review = client.AuthorizationV1Api(api).create_self_subject_access_review({
        "spec": {"resourceAttributes": {"namespace": namespace, "verb": verb, "group": "aiops.ajan.dev",
                                        "resource": resource, "subresource": subresource}},
    })  # fmt: skip
    return bool(review.status.allowed)


async def _evaluate_until(
    evaluator: PolicyEvaluator, cluster: Cluster, name: str, reason: str | None
) -> Report:
    """Evaluate until an evaluation ends with ``reason`` (None: a good one); fail after a deadline."""
    seen: list[str | None] = []
    for _ in range(DEADLINE_EVALUATIONS):
        report = await evaluator.evaluate(cluster.policy(name))
        if report.reason == reason:
            return report
        seen.append(report.reason)
        await asyncio.sleep(0.5)
    raise AssertionError(f"no evaluation ended with {reason}; they ended with {seen[-5:]}")


def test_a_refused_plan_write_is_a_condition_and_never_a_second_plan(
    admin_api: client.ApiClient,
    refused_api: client.ApiClient,
    namespace: str,
    rollout_kit: RolloutKit,
    prometheus_with_history: StartWithHistory,
) -> None:
    rollout_kit.create_rollout("checkout")
    stack = prometheus_with_history(300.0, day_seconds=86400)
    cluster = Cluster(admin_api, namespace)
    name = "refused"
    # Every good evaluation opens (or goes on with) an incident and its dry-run annotate plan.
    cluster.apply(always_policy(name))
    shipped = _shipped_rules()
    allowed_but_plan_status = [
        {**rule, "resources": [r for r in rule["resources"] if r != PLAN_STATUS]}
        for rule in shipped
        if rule["resources"] != [PLAN_STATUS]
    ]
    assert len(allowed_but_plan_status) == len(shipped) - 1
    _grant(admin_api, namespace, allowed_but_plan_status)
    wait_for(
        lambda: _allowed(refused_api, namespace, "patch", "correlationpolicies", "status"),
        timeout=30,
        what="the role in force",
    )
    assert not _allowed(refused_api, namespace, "patch", "remediationplans", "status")

    async def scenario() -> None:
        async with runtime_of(refused_api, refused_api, stack.url, None) as runtime:
            evaluator = PolicyEvaluator(runtime, namespace, name)
            refused = await _evaluate_until(evaluator, cluster, name, "Forbidden")
            assert refused.outcome is None
            degraded = cluster.condition(name, "Degraded")
            assert degraded is not None and degraded["status"] == "True", degraded
            assert degraded["reason"] == "Forbidden"
            assert f'User "{USER}" cannot patch resource "remediationplans/status"' in degraded["message"]
            assert "manifests/rbac.yaml" in degraded["message"]
            ready = cluster.condition(name, "Ready")
            assert ready is not None and ready["status"] == "False" and ready["reason"] == "Forbidden"
            # The incident was written before its plan, and the plan made: both stay, alone.
            incident = cluster.policy(name)["status"]["incident"]
            (plan,) = cluster.plans()
            assert plan["metadata"]["name"] == incident["plan"]
            assert "phase" not in (plan.get("status") or {})
            for _ in range(3):
                again = await evaluator.evaluate(cluster.policy(name))
                assert again.reason == "Forbidden"
            assert [p["metadata"]["name"] for p in cluster.plans()] == [incident["plan"]]
            assert cluster.policy(name)["status"]["incident"] == incident

            # The rule is back: the same plan goes on (dry-run: its patch recorded), nothing new.
            _grant(admin_api, namespace, shipped)
            wait_for(
                lambda: _allowed(refused_api, namespace, "patch", "remediationplans", "status"),
                timeout=30,
                what="the whole role in force",
            )
            await _evaluate_until(evaluator, cluster, name, None)
            (plan,) = cluster.plans()
            assert plan["metadata"]["name"] == incident["plan"]
            assert plan["status"]["phase"] in ("Proposed", "DryRun"), plan["status"]
            assert cluster.policy(name)["status"]["incident"]["id"] == incident["id"]
            degraded = cluster.condition(name, "Degraded")
            assert degraded is not None and degraded["status"] == "False", degraded

    asyncio.run(scenario())
