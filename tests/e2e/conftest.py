"""What the replica tests share: a control plane of their own, set up as `kubectl apply -k manifests/`
would leave it (CRDs, peering object, ClusterRole bound to the restricted identity), a canary
Rollout with a policy on it. `support.replicas.Replica` runs ``ajan run`` on it.

A control plane of its own because the session's one holds other tests' namespaces and policies,
which a cluster-wide operator would pick up.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from ajan.models import GROUP, VERSION
from ajan.simulate import stack
from ajan.simulate.stack import ControlPlane, PrometheusServer
from support.kube import FIELD_MANAGER
from support.replicas import NAMESPACE, POLICY, manifest


@pytest.fixture
def plane(tmp_path: Path, audit_logs: Path) -> Iterator[ControlPlane]:
    started = ControlPlane.start(
        tmp_path / "kube-up", audit_log=audit_logs / f"replicas-{uuid.uuid4().hex}.log"
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
