"""Argo Rollouts on the test control plane: Argo's own Rollout CRD, and Rollouts with their history.

``rollout_crd`` installs ``manifests/crds/rollout-crd.yaml`` from the argo-rollouts Go module (its
path from ``hack/rollouts-crd.sh``) once per session, so ajan's patches meet Argo's real schema,
pruning and status subresource. No Argo controller runs: a test sets the status the controller
would have written, through the status subresource, and nothing changes it behind the test's back.

``RolloutKit`` (fixture ``rollout_kit``) creates a canary Rollout in the test's namespace and the
ReplicaSets of its revisions, owned by it (controller reference) and annotated with
``rollout.argoproj.io/revision`` and labelled with ``rollouts-pod-template-hash`` as Argo does.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import pytest
from kubernetes import client

from ajan.simulate.stack import StackError, apply_rollout_crd
from support.kube import FIELD_MANAGER

GROUP: Final = "argoproj.io"
VERSION: Final = "v1alpha1"
PLURAL: Final = "rollouts"
CRD_NAME: Final = "rollouts.argoproj.io"
HASH_LABEL: Final = "rollouts-pod-template-hash"
REVISION_ANNOTATION: Final = "rollout.argoproj.io/revision"

Object = dict[str, Any]


@pytest.fixture(scope="session")
def rollout_crd(admin_api: client.ApiClient) -> Object:
    """Argo's Rollout CRD, server-side applied, Established, and its resource answering."""
    try:
        crd: Object = apply_rollout_crd(admin_api, field_manager=FIELD_MANAGER)
    except StackError as err:
        pytest.fail(str(err), pytrace=False)
    assert crd["metadata"]["name"] == CRD_NAME
    return crd


def pod_template(app: str, image: str) -> Object:
    """A pod template as a user writes it (the API server defaults the rest in a ReplicaSet)."""
    return {
        "metadata": {"labels": {"app": app}},
        "spec": {"containers": [{"name": "app", "image": image, "ports": [{"containerPort": 8080}]}]},
    }


@dataclass
class RolloutKit:
    """Creates and reads Rollouts and ReplicaSets in one namespace, as the test's admin."""

    api: client.ApiClient
    namespace: str

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    @property
    def apps(self) -> client.AppsV1Api:
        return client.AppsV1Api(self.api)

    def create_rollout(
        self,
        name: str,
        *,
        image: str = "registry.example/app:2",
        paused: bool | None = None,
        steps: list[Object] | None = None,
        status: Mapping[str, Any] | None = None,
    ) -> Object:
        """A canary Rollout; ``status`` (as the controller would write it) set on its subresource."""
        spec: Object = {
            "replicas": 3,
            "selector": {"matchLabels": {"app": name}},
            "template": pod_template(name, image),
            "strategy": {
                "canary": {
                    "steps": steps
                    if steps is not None
                    else [{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"pause": {"duration": "1m"}}]
                }
            },
        }
        if paused is not None:
            spec["paused"] = paused
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Rollout",
            "metadata": {"name": name},
            "spec": spec,
        }
        rollout: Object = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, body, field_manager=FIELD_MANAGER
        )
        if status is not None:
            rollout = self.set_status(name, status)
        return rollout

    def set_status(self, name: str, status: Mapping[str, Any]) -> Object:
        """Merge ``status`` into the Rollout's status, as the Argo controller would."""
        rollout: Object = self.custom.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            self.namespace,
            PLURAL,
            name,
            {"status": dict(status)},
            field_manager="argo-rollouts",
        )
        return rollout

    def get(self, name: str) -> Object:
        rollout: Object = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name
        )
        return rollout

    def create_replicaset(
        self, rollout: Mapping[str, Any], revision: int | str | None, image: str, pod_hash: str
    ) -> Object:
        """A ReplicaSet of ``rollout`` (controller reference) at ``revision`` (None: no annotation)."""
        name = rollout["metadata"]["name"]
        template = copy.deepcopy(pod_template(name, image))
        template["metadata"]["labels"][HASH_LABEL] = pod_hash
        metadata: Object = {
            "name": f"{name}-{pod_hash}",
            "labels": {"app": name, HASH_LABEL: pod_hash},
            "ownerReferences": [
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "Rollout",
                    "name": name,
                    "uid": rollout["metadata"]["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        }
        if revision is not None:
            metadata["annotations"] = {REVISION_ANNOTATION: str(revision)}
        body = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": metadata,
            "spec": {
                "replicas": 0,  # no controller manager here; nothing is meant to run
                "selector": {"matchLabels": {"app": name, HASH_LABEL: pod_hash}},
                "template": template,
            },
        }
        created = self.apps.create_namespaced_replica_set(self.namespace, body, field_manager=FIELD_MANAGER)
        replicaset: Object = self.api.sanitize_for_serialization(created)
        return replicaset


@pytest.fixture
def rollout_kit(admin_api: client.ApiClient, rollout_crd: Object, namespace: str) -> RolloutKit:
    """A ``RolloutKit`` for the test's fresh namespace, with Argo's CRD installed."""
    return RolloutKit(admin_api, namespace)
