"""Two replicas as the Deployment runs them: cluster-wide, kopf peering, exactly one active.

A control plane of its own (the session's one holds other tests' namespaces and policies, which a
cluster-wide operator would pick up), with manifests/' CRDs, peering object and ClusterRole bound
to the restricted identity, as `kubectl apply -k manifests/` would leave a cluster. Each replica
serves /metrics, so a test can tell which of them evaluates.
"""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
import yaml
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from ajan.models import GROUP, VERSION
from ajan.simulate import stack
from ajan.simulate.stack import ControlPlane, OperatorProcess, PrometheusServer, free_port, wait_for
from support.kube import FIELD_MANAGER

REPO: Final = Path(__file__).resolve().parents[2]
NAMESPACE: Final = "shop"
POLICY: Final = "checkout-guard"
#: A crashed replica's keep-alive counts for `ajan run`'s peering lifetime (30 s); then some slack.
TAKEOVER_TIMEOUT_S: Final = 120.0
EVALUATIONS_TIMEOUT_S: Final = 120.0

# Its replicas are `OperatorProcess`es of its own (on its own control plane), not `ajan_operator`.
pytestmark = pytest.mark.e2e


def manifest(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((REPO / "manifests" / name).read_text()) if doc]


@pytest.fixture
def plane(tmp_path: Path, audit_logs: Path) -> Iterator[ControlPlane]:
    started = ControlPlane.start(
        tmp_path / "kube-up", audit_log=audit_logs / f"peering-{uuid.uuid4().hex}.log"
    )
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def cluster(plane: ControlPlane, prometheus: PrometheusServer) -> Iterator[client.ApiClient]:
    """The CRDs, the peering object and the role of manifests/, a canary Rollout and a policy on it."""
    with plane.api_client() as api:
        stack.apply_crds(api, field_manager=FIELD_MANAGER)
        stack.apply_rollout_crd(api, field_manager=FIELD_MANAGER)
        peering_crds = [d for d in manifest("kopf-peering.yaml") if d["kind"] == "CustomResourceDefinition"]
        for crd in peering_crds:
            stack.server_side_apply(
                api,
                f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}",
                crd,
                field_manager=FIELD_MANAGER,
            )
            names = crd["spec"]["names"]
            stack.wait_served(api, crd["metadata"]["name"], "kopf.dev", "v1", names["plural"])
        (peering,) = [d for d in manifest("kopf-peering.yaml") if d["kind"] == "ClusterKopfPeering"]
        stack.server_side_apply(
            api, f"/apis/kopf.dev/v1/clusterkopfpeerings/{peering['metadata']['name']}", peering,
            field_manager=FIELD_MANAGER,
        )  # fmt: skip
        (role,) = [d for d in manifest("rbac.yaml") if d["kind"] == "ClusterRole"]
        rbac = client.RbacAuthorizationV1Api(api)
        rbac.create_cluster_role(role)
        rbac.create_cluster_role_binding(
            {
                "metadata": {"name": "ajan"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "ajan"},
                "subjects": [
                    {"kind": "User", "name": "ajan-restricted", "apiGroup": "rbac.authorization.k8s.io"}
                ],
            }
        )
        client.CoreV1Api(api).create_namespace({"metadata": {"name": NAMESPACE}})
        custom = client.CustomObjectsApi(api)
        custom.create_namespaced_custom_object(
            "argoproj.io", "v1alpha1", NAMESPACE, "rollouts", stack.canary_rollout("checkout")
        )
        custom.create_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, "correlationpolicies", stack.canary_policy(POLICY)
        )
        yield api


class Replica:
    """One ``ajan run`` replica with its own /metrics."""

    def __init__(self, plane: ControlPlane, prometheus_url: str, workdir: Path) -> None:
        workdir.mkdir()
        self.port = free_port()
        #: Its peering identity: the Deployment sets POD_ID to the pod's name the same way.
        self.name = f"ajan-{workdir.name}"
        self.process = OperatorProcess(
            plane.restricted_kubeconfig, None, prometheus_url, workdir,
            "--peering", "ajan", "--metrics-listen", f"127.0.0.1:{self.port}",
            env={"POD_ID": self.name},
        )  # fmt: skip

    def evaluations(self) -> float:
        text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            if family.name == "aiops_evaluations"
            for sample in family.samples
            if sample.name == "aiops_evaluations_total"
        )


def peers(api: client.ApiClient) -> dict[str, int]:
    """The live replicas in the ClusterKopfPeering's status, with their priorities."""
    peering = client.CustomObjectsApi(api).get_cluster_custom_object(
        "kopf.dev", "v1", "clusterkopfpeerings", "ajan"
    )
    return {name: int(peer["priority"]) for name, peer in (peering.get("status") or {}).items() if peer}


def evaluated(api: client.ApiClient) -> str:
    policy = client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, NAMESPACE, "correlationpolicies", POLICY
    )
    return str((policy.get("status") or {}).get("lastEvaluationTime") or "")


def more_evaluations(api: client.ApiClient, count: int) -> None:
    """Wait until the policy's status shows ``count`` evaluations after the current one."""
    seen = {evaluated(api)}

    def enough() -> bool:
        seen.add(evaluated(api))
        return len(seen) > count

    wait_for(
        enough, timeout=EVALUATIONS_TIMEOUT_S, what=f"{count} more evaluations of {POLICY}", interval=0.5
    )


def test_of_two_replicas_one_evaluates_and_the_other_takes_over_when_it_crashes(
    plane: ControlPlane, cluster: client.ApiClient, prometheus: PrometheusServer, tmp_path: Path
) -> None:
    replicas = [Replica(plane, prometheus.url, tmp_path / name) for name in ("a", "b")]
    try:
        for replica in replicas:
            replica.process.start()
        # Each picked a random priority (no --peering-priority): the higher one is active.
        priorities = wait_for(
            lambda: peers(cluster) if len(peers(cluster)) == 2 else None,
            timeout=EVALUATIONS_TIMEOUT_S,
            what="both replicas in the peering object",
        )
        assert len(set(priorities.values())) == 2, f"equal priorities pause both replicas: {priorities}"
        active, standby = sorted(replicas, key=lambda r: priorities[r.name], reverse=True)

        more_evaluations(cluster, 3)
        idle = standby.evaluations()
        busy = active.evaluations()
        more_evaluations(cluster, 3)
        assert standby.evaluations() == idle, "the paused replica evaluated policies too"
        assert active.evaluations() >= busy + 3

        # A crash leaves no goodbye: the standby resumes once the keep-alive expires.
        active.process.stop(signal.SIGKILL)
        wait_for(
            lambda: standby.evaluations() > idle,
            timeout=TAKEOVER_TIMEOUT_S,
            what="the standby replica evaluating after the active one crashed",
        )
        more_evaluations(cluster, 2)
        assert "Resuming operations" in standby.process.log()
    finally:
        for replica in replicas:
            replica.process.stop()
