"""`ArgoKit`: what the tests against a real Argo Rollouts controller create, read and wait for."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import pytest
from kubernetes import client

from ajan.simulate.argo import RolloutsController, Workloads
from ajan.simulate.stack import StackTimeoutError, wait_for
from support.kube import FIELD_MANAGER
from support.rollouts import GROUP, HASH_LABEL, PLURAL, VERSION, pod_template

Object = dict[str, Any]
T = TypeVar("T")
#: Generous for a loaded 2-core machine; each step here takes about a second.
STEP_TIMEOUT_S: Final = 60.0
IMAGE_1 = "registry.example/checkout:1"
IMAGE_2 = "registry.example/checkout:2"


@dataclass
class ArgoKit:
    """Rollouts, their ReplicaSets, pods and AnalysisRuns in one namespace, with a controller on it."""

    api: client.ApiClient
    namespace: str
    controller: RolloutsController
    workloads: Workloads

    @property
    def custom(self) -> client.CustomObjectsApi:
        """The API of ``argoproj.io`` objects, as the test's admin."""
        return client.CustomObjectsApi(self.api)

    def create(self, plural: str, body: Object) -> Object:
        """Create an ``argoproj.io`` object (``rollouts``, ``analysistemplates``...) in the namespace."""
        created: Object = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, plural, body, field_manager=FIELD_MANAGER
        )
        return created

    def create_rollout(self, name: str, steps: list[Object], *, image: str, replicas: int = 4) -> Object:
        """A canary Rollout with these steps, as a user writes it (no traffic routing)."""
        spec = {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": pod_template(name, image),
            "strategy": {"canary": {"steps": steps}},
        }
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Rollout",
            "metadata": {"name": name},
            "spec": spec,
        }
        return self.create(PLURAL, body)

    def rollout(self, name: str) -> Object:
        """The Rollout as it is now."""
        rollout: Object = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name
        )
        return rollout

    def set_image(self, name: str, image: str) -> Object:
        """What a CI pipeline does to start a canary: a new image in the pod template."""
        containers = [{"name": "app", "image": image, "ports": [{"containerPort": 8080}]}]
        patched: Object = self.custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            self.namespace,
            PLURAL,
            name,
            {"spec": {"template": {"spec": {"containers": containers}}}},
            field_manager=FIELD_MANAGER,
        )
        return patched

    def replicasets(self, name: str) -> dict[str, Object]:
        """The Rollout's ReplicaSets by pod-template hash."""
        items = client.AppsV1Api(self.api).list_namespaced_replica_set(
            self.namespace, label_selector=f"app={name}"
        )
        return {rs.metadata.labels[HASH_LABEL]: self.api.sanitize_for_serialization(rs) for rs in items.items}

    def pods(self, name: str) -> list[client.V1Pod]:
        """The Rollout's pods, those being deleted included (kwok removes them at once)."""
        items = client.CoreV1Api(self.api).list_namespaced_pod(self.namespace, label_selector=f"app={name}")
        pods: list[client.V1Pod] = items.items
        return pods

    def analysis_runs(self) -> list[Object]:
        """The namespace's AnalysisRuns (the controller creates them for analysis steps)."""
        runs: list[Object] = self.custom.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "analysisruns"
        )["items"]
        return runs

    def describe(self, name: str) -> str:
        """Where the Rollout is: its status, ReplicaSets, pods, AnalysisRuns, the controller's log tail."""
        lines = [f"rollout status: {json.dumps(self.rollout(name).get('status'), indent=1)}"]
        for pod_hash, rs in self.replicasets(name).items():
            lines.append(
                f"replicaset {pod_hash}: spec {rs['spec'].get('replicas')} status {rs.get('status')}"
            )
        lines += [
            f"pod {p.metadata.name} on {p.spec.node_name}: {p.status.phase}"
            + (" (being deleted)" if p.metadata.deletion_timestamp else "")
            for p in self.pods(name)
        ]
        lines += [f"analysisrun {r['metadata']['name']}: {r.get('status')}" for r in self.analysis_runs()]
        scheduler_log = self.workloads.scheduler.log().splitlines()
        lines.append("kube-scheduler log (tail):\n" + "\n".join(scheduler_log[-15:]))
        lines.append(
            "rollouts-controller log (tail):\n" + "\n".join(self.controller.log().splitlines()[-40:])
        )
        return "\n".join(lines)

    def wait(self, name: str, what: str, probe: Callable[[], T | None], timeout: float = STEP_TIMEOUT_S) -> T:
        """Poll ``probe`` until it returns something true; at the deadline fail, describing the Rollout."""
        try:
            return wait_for(probe, timeout=timeout, what=what)
        except StackTimeoutError as err:
            message = f"{err}\n{self.describe(name)}"
        pytest.fail(message, pytrace=False)  # outside the except: no "during handling of" chain


def healthy(argo: ArgoKit, name: str, replicas: int = 4) -> Object | None:
    """The Rollout once Healthy with its current revision stable and all replicas available."""
    rollout = argo.rollout(name)
    status = rollout.get("status") or {}
    if (
        status.get("phase") == "Healthy"
        and status.get("observedGeneration") == str(rollout["metadata"]["generation"])
        and status.get("stableRS")
        and status.get("stableRS") == status.get("currentPodHash")
        and status.get("availableReplicas") == replicas
    ):
        return rollout
    return None


def running_pods(argo: ArgoKit, name: str, pod_hash: str) -> list[client.V1Pod]:
    """The ReplicaSet ``pod_hash``'s pods that kwok runs: bound to its node, Running and Ready."""
    return [
        pod
        for pod in argo.pods(name)
        if pod.metadata.labels.get("rollouts-pod-template-hash") == pod_hash
        and pod.metadata.deletion_timestamp is None
        and pod.spec.node_name in argo.workloads.nodes
        and pod.status.phase == "Running"
        and any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
    ]


def scaled(argo: ArgoKit, name: str, pod_hash: str, replicas: int) -> bool:
    """The ReplicaSet wants ``replicas`` and has exactly that many pods, all running: the pods of a
    scale-down are gone, not merely being deleted."""
    rs = argo.replicasets(name).get(pod_hash)
    if rs is None or rs["spec"].get("replicas") != replicas:
        return False
    pods = [p for p in argo.pods(name) if p.metadata.labels.get("rollouts-pod-template-hash") == pod_hash]
    return len(pods) == replicas and len(running_pods(argo, name, pod_hash)) == replicas


def deploy_first_revision(argo: ArgoKit, name: str, steps: list[Object]) -> str:
    """Create the Rollout and wait until its first revision is Healthy (steps apply only to
    updates); return the stable pod-template hash."""
    argo.create_rollout(name, steps, image=IMAGE_1)
    rollout = argo.wait(name, "the first revision Healthy", lambda: healthy(argo, name))
    stable: str = rollout["status"]["stableRS"]
    argo.wait(name, "4 stable pods Running and Ready on kwok's nodes", lambda: scaled(argo, name, stable, 4))
    return stable


def at_step(argo: ArgoKit, name: str, index: int, *, paused: bool = False) -> Object | None:
    """The Rollout once at step ``index`` (and, with ``paused``, its pause there in effect)."""
    rollout = argo.rollout(name)
    status = rollout.get("status") or {}
    if status.get("currentStepIndex") != index:
        return None
    if paused and not (status.get("phase") == "Paused" and status.get("pauseConditions")):
        return None
    return rollout


def aborted(argo: ArgoKit, name: str, stable: str, canary: str) -> Object | None:
    """The Rollout aborted: Degraded, the canary scaled to nothing, the stable back to 4."""
    rollout = argo.rollout(name)
    status = rollout.get("status") or {}
    if (
        status.get("abort") is True
        and status.get("phase") == "Degraded"
        and scaled(argo, name, canary, 0)
        and scaled(argo, name, stable, 4)
    ):
        return rollout
    return None
