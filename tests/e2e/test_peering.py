"""Two replicas as the Deployment runs them: cluster-wide, kopf peering, exactly one active.

The control plane, policy and `Replica` are tests/e2e/conftest.py's. Each replica serves /metrics,
so a test can tell which of them evaluates.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Final

import pytest
from kubernetes import client

from ajan.models import GROUP, VERSION
from ajan.simulate.stack import ControlPlane, PrometheusServer, wait_for
from support.replicas import EVALUATIONS_TIMEOUT_S, NAMESPACE, POLICY, Replica

#: A crashed replica's keep-alive counts for `ajan run`'s peering lifetime (30 s); then some slack.
TAKEOVER_TIMEOUT_S: Final = 120.0

# Its replicas are `OperatorProcess`es of its own (on its own control plane), not `ajan_operator`.
pytestmark = pytest.mark.e2e


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
    replicas = [Replica(plane, prometheus.url, tmp_path / name, "--peering", "ajan") for name in ("a", "b")]
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
