"""A real Argo Rollouts controller moving real canaries, with ajan's writes as the plugin's.

Argo's ``rollouts-controller`` (v1.10.1, built from its Go module) runs ``--namespaced`` on the
test's namespace; a ReplicaSet controller, kube-scheduler and kwok make the pods of its ReplicaSets
Running and Ready (`ajan.simulate.argo`). Promote and abort are sent by ajan's own `RolloutClient`,
which sends the Argo kubectl plugin's patches: these tests show the controller does with them what
it does with the plugin's. Analysis steps query the session's real Prometheus.

Every wait polls a condition with a deadline; a timeout prints where the Rollout got stuck.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from ajan.clients import rollouts as ro
from ajan.clients.rollouts import RolloutClient
from support.kube import FIELD_MANAGER
from support.prometheus import PrometheusServer
from support.rollouts import GROUP, VERSION

from .kit import (
    IMAGE_1,
    IMAGE_2,
    ArgoKit,
    aborted,
    at_step,
    deploy_first_revision,
    healthy,
    scaled,
)

pytestmark = pytest.mark.kube_controller_manager  # namespaces' `default` service account, GC

Object = dict[str, Any]
STEPS: list[Object] = [{"setWeight": 25}, {"pause": {"duration": "5s"}}, {"setWeight": 50}, {"pause": {}}]


@pytest.fixture
def rollouts(admin_api: client.ApiClient) -> Iterator[RolloutClient]:
    """ajan's own client for its writes to Rollouts."""
    rc = RolloutClient(admin_api, max_workers=2, instance="ajan-test")
    yield rc
    rc.close()


def test_canary_steps_pause_and_promote(argo: ArgoKit, rollouts: RolloutClient) -> None:
    """25 %, a timed pause, 50 %, an indefinite pause; ajan's promote takes it to 100 %."""
    name = "checkout"
    stable = deploy_first_revision(argo, name, STEPS)
    [first_pod_hash] = argo.replicasets(name)

    updated = time.monotonic()
    argo.set_image(name, IMAGE_2)
    # Step 0 set 25 %: one canary pod of four, three stable ones; step 1 holds it for 5 s.
    rollout = argo.wait(name, "the timed pause (step 1)", lambda: at_step(argo, name, 1))
    canary = rollout["status"]["currentPodHash"]
    assert canary != stable == first_pod_hash
    argo.wait(name, "1 canary pod", lambda: scaled(argo, name, canary, 1))
    argo.wait(name, "3 stable pods", lambda: scaled(argo, name, stable, 3))

    # Step 2 sets 50 % once the 5 s are up; step 3 pauses until someone promotes.
    rollout = argo.wait(name, "the indefinite pause (step 3)", lambda: at_step(argo, name, 3, paused=True))
    # The pause's start is stored in whole seconds (metav1.Time), so it may end up to 1 s early.
    assert time.monotonic() - updated >= 4.0, "the 5 s pause step was not honoured"
    argo.wait(name, "2 canary pods", lambda: scaled(argo, name, canary, 2))
    argo.wait(name, "2 stable pods", lambda: scaled(argo, name, stable, 2))
    status = argo.rollout(name)["status"]
    assert [c["reason"] for c in status["pauseConditions"]] == ["CanaryPauseStep"]
    assert status["controllerPause"] is True
    assert status["stableRS"] == stable

    # What `kubectl argo rollouts promote` sends here: clear the pause conditions, nothing else.
    sent = asyncio.run(rollouts.promote(argo.namespace, name))
    assert [(p.subresource, p.body) for p in sent] == [("status", {"status": {"pauseConditions": None}})]

    rollout = argo.wait(name, "Healthy on the new revision", lambda: healthy(argo, name))
    assert rollout["status"]["stableRS"] == canary
    assert rollout["status"]["currentStepIndex"] == len(STEPS)
    argo.wait(name, "4 new pods, the old ReplicaSet at 0", lambda: scaled(argo, name, canary, 4))
    argo.wait(name, "the old pods gone", lambda: scaled(argo, name, stable, 0))
    revisions = {
        h: rs["metadata"]["annotations"]["rollout.argoproj.io/revision"]
        for h, rs in argo.replicasets(name).items()
    }
    assert revisions == {stable: "1", canary: "2"}


def test_abort_scales_the_canary_down(argo: ArgoKit, rollouts: RolloutClient) -> None:
    """An abort (``status.abort`` on the status subresource, as the plugin sends it) puts all four
    replicas back on the stable ReplicaSet and scales the canary's to zero."""
    name = "checkout"
    stable = deploy_first_revision(argo, name, [{"setWeight": 50}, {"pause": {}}])
    argo.set_image(name, IMAGE_2)
    rollout = argo.wait(name, "the indefinite pause (step 1)", lambda: at_step(argo, name, 1, paused=True))
    canary = rollout["status"]["currentPodHash"]
    argo.wait(name, "2 canary pods, 2 stable ones", lambda: scaled(argo, name, canary, 2))

    asyncio.run(rollouts.apply(argo.namespace, name, ro.abort()))

    rollout = argo.wait(name, "aborted, the canary at 0", lambda: aborted(argo, name, stable, canary))
    status = rollout["status"]
    assert status["stableRS"] == stable
    assert status["message"].startswith("RolloutAborted")
    assert status["abortedAt"]


def analysis_template(name: str, prometheus_url: str, success: str) -> Object:
    """A one-measurement Prometheus metric: ``vector(1)`` must meet ``success``."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "AnalysisTemplate",
        "metadata": {"name": name},
        "spec": {
            "metrics": [
                {
                    "name": "one",
                    "successCondition": success,
                    "provider": {"prometheus": {"address": prometheus_url, "query": "vector(1)"}},
                }
            ]
        },
    }


ANALYSIS_STEPS: list[Object] = [
    {"setWeight": 25},
    {"analysis": {"templates": [{"templateName": "prom"}]}},
    {"setWeight": 50},
]


def run_finished(argo: ArgoKit) -> Object | None:
    runs = argo.analysis_runs()
    if len(runs) == 1 and (runs[0].get("status") or {}).get("phase") in ("Successful", "Failed", "Error"):
        return runs[0]
    return None


def test_passing_analysis_step_lets_the_canary_through(argo: ArgoKit, prometheus: PrometheusServer) -> None:
    """A canary step's AnalysisRun queries the real Prometheus, succeeds, and the canary completes."""
    name = "checkout"
    argo.create("analysistemplates", analysis_template("prom", prometheus.url, "result[0] == 1"))
    stable = deploy_first_revision(argo, name, ANALYSIS_STEPS)
    argo.set_image(name, IMAGE_2)

    run = argo.wait(name, "the step's AnalysisRun finished", lambda: run_finished(argo))
    assert run["status"]["phase"] == "Successful", run["status"]
    [result] = run["status"]["metricResults"]
    assert result["name"] == "one"
    assert [m["value"] for m in result["measurements"]] == ["[1]"]  # Prometheus's answer
    assert run["metadata"]["ownerReferences"][0]["name"] == name

    rollout = argo.wait(name, "Healthy on the new revision", lambda: healthy(argo, name))
    assert rollout["status"]["stableRS"] != stable


def test_failing_analysis_step_aborts_the_rollout(argo: ArgoKit, prometheus: PrometheusServer) -> None:
    """A failed measurement fails the AnalysisRun, and Argo aborts: the canary goes back to zero."""
    name = "checkout"
    argo.create("analysistemplates", analysis_template("prom", prometheus.url, "result[0] > 1"))
    stable = deploy_first_revision(argo, name, ANALYSIS_STEPS)
    argo.set_image(name, IMAGE_2)

    run = argo.wait(name, "the step's AnalysisRun finished", lambda: run_finished(argo))
    assert run["status"]["phase"] == "Failed", run["status"]
    [result] = run["status"]["metricResults"]
    assert [m["phase"] for m in result["measurements"]] == ["Failed"]
    assert [m["value"] for m in result["measurements"]] == ["[1]"]

    canary = argo.rollout(name)["status"]["currentPodHash"]
    rollout = argo.wait(name, "aborted, the canary at 0", lambda: aborted(argo, name, stable, canary))
    assert rollout["status"]["message"].startswith("RolloutAborted"), rollout["status"]
    assert 'Metric "one" assessed Failed' in rollout["status"]["message"], rollout["status"]


def test_controller_scope_is_its_namespace(argo: ArgoKit, admin_api: client.ApiClient) -> None:
    """``--namespaced``: a Rollout in another namespace is left alone (no status, no ReplicaSet)."""
    core = client.CoreV1Api(admin_api)
    other = f"{argo.namespace}-other"
    core.create_namespace({"metadata": {"name": other, "labels": {"ajan.dev/test": "true"}}})
    try:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Rollout",
            "metadata": {"name": "elsewhere"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "elsewhere"}},
                "template": {
                    "metadata": {"labels": {"app": "elsewhere"}},
                    "spec": {"containers": [{"name": "app", "image": IMAGE_1}]},
                },
                "strategy": {"canary": {"steps": [{"setWeight": 50}]}},
            },
        }
        custom = client.CustomObjectsApi(admin_api)
        custom.create_namespaced_custom_object(
            GROUP, VERSION, other, "rollouts", body, field_manager=FIELD_MANAGER
        )
        # A Rollout in its own namespace, created after, is reconciled: by then the other one would be.
        deploy_first_revision(argo, "checkout", [{"setWeight": 50}])
        assert "status" not in custom.get_namespaced_custom_object(
            GROUP, VERSION, other, "rollouts", "elsewhere"
        )
        assert client.AppsV1Api(admin_api).list_namespaced_replica_set(other).items == []
    finally:
        core.delete_namespace(other)
