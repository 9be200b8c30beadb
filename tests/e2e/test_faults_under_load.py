"""Faults under load: a hundred policies, each with an open incident, through an API server that hangs
while they propose their plans, a Prometheus crash and hang, and an operator crash (issue 16,
docs/reliability.md).

A hundred dry-run policies on the canary, every one on the same fault, so every one holds an
incident and has proposed its plan when the faults come. What must hold after each: no plan lost
or proposed twice, every incident the one it was, and no policy left Degraded once the fault is over.
The seconds each recovery took are printed (``-s``) for docs/reliability.md; they are not asserted.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any, Final

import pytest
from kubernetes import client

from ajan.simulate.stack import canary_policy, processes_mentioning
from support.kube import Kube
from support.operator import GROUP, VERSION, Cluster, OperatorProcess
from support.prometheus import HistoryStack, StartWithHistory, wait_for
from support.rollouts import RolloutKit

pytestmark = pytest.mark.e2e

POLICIES: Final = tuple(f"load-{i:03d}" for i in range(100))
#: A hundred policies every 15 s: about seven evaluations a second, each of an open incident.
INTERVAL_S: Final = 15.0
HISTORY_S: Final = 300.0
#: Short of kopf's 30 s request timeout: requests in flight, and new ones (the kernel still accepts
#: the connections), wait the hang out.
API_HANG_S: Final = 20.0
#: Six intervals: a policy queued behind a hung Prometheus's query slots must not wait for every
#: query ahead of it to time out (about 500 s for a hundred policies at 8 slots and 10 s).
HUNG_DEADLINE_S: Final = 6 * INTERVAL_S
#: Generous: a loaded 2-core CI machine evaluates late; polls return as soon as the state is there.
TIMEOUT_S: Final = 600.0
PAUSE_IN_DRY_RUN: Final = {
    "mode": "dry-run",
    "ladder": [{"minConfidence": 0.5, "severity": "warning", "action": "pause"}],
}


def _policies(cluster: Cluster) -> dict[str, dict[str, Any]]:
    listed = cluster.custom.list_namespaced_custom_object(
        GROUP, VERSION, cluster.namespace, "correlationpolicies"
    )
    return {p["metadata"]["name"]: p for p in listed["items"]}


def _condition(policy: dict[str, Any], type_: str) -> bool:
    conditions = (policy.get("status") or {}).get("conditions") or []
    return any(c["type"] == type_ and c["status"] == "True" for c in conditions)


def _all(cluster: Cluster, test: Callable[[dict[str, Any]], bool]) -> Callable[[], bool]:
    def check() -> bool:
        policies = _policies(cluster)
        return len(policies) == len(POLICIES) and all(test(p) for p in policies.values())

    return check


def _stamps(cluster: Cluster) -> dict[str, str]:
    return {
        n: str((p.get("status") or {}).get("lastEvaluationTime") or "") for n, p in _policies(cluster).items()
    }


def _evaluated_since(cluster: Cluster, since: dict[str, str], times: int) -> None:
    """Every policy evaluated (lastEvaluationTime moved) at least ``times`` more times."""
    seen: dict[str, set[str]] = {n: set() for n in POLICIES}

    def check() -> bool:
        for name, stamp in _stamps(cluster).items():
            if stamp > since.get(name, ""):
                seen[name].add(stamp)
        return all(len(s) >= times for s in seen.values())

    wait_for(check, timeout=TIMEOUT_S, what=f"{times} evaluations of every policy", interval=2.0)


def _plans_by_policy(cluster: Cluster) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for plan in cluster.plans():
        out.setdefault(plan["spec"]["policyRef"]["name"], []).append(plan["metadata"]["name"])
    return out


def _incidents(cluster: Cluster) -> dict[str, str | None]:
    return {
        n: ((p.get("status") or {}).get("incident") or {}).get("id") for n, p in _policies(cluster).items()
    }


def _timed(what: str, started: float) -> None:
    print(f"\n[faults under load] {what}: {time.monotonic() - started:.0f} s")


def _degraded(cluster: Cluster, after: str, deadline_s: float) -> None:
    """Every policy Degraded within ``deadline_s``."""
    started = time.monotonic()
    wait_for(
        _all(cluster, lambda p: _condition(p, "Degraded")),
        timeout=deadline_s,
        what=f"every policy Degraded after: {after}",
        interval=2.0,
    )
    _timed(f"{after} -> every policy Degraded", started)


def _recovered(
    cluster: Cluster, after: str, plans: dict[str, list[str]], incidents: dict[str, str | None]
) -> None:
    """Every policy Ready and not Degraded again, with the same plans and incidents as before."""
    started = time.monotonic()
    wait_for(
        _all(cluster, lambda p: _condition(p, "Ready") and not _condition(p, "Degraded")),
        timeout=TIMEOUT_S,
        what=f"every policy Ready after: {after}",
        interval=2.0,
    )
    _timed(f"{after} -> every policy Ready", started)
    assert _plans_by_policy(cluster) == plans
    assert _incidents(cluster) == incidents


def _apiserver_pid(kube: Kube) -> int:
    def executable(line: str) -> str:
        return line.split(":", 1)[1].split()[0].rsplit("/", 1)[-1]

    (line,) = [p for p in processes_mentioning(str(kube.dir)) if executable(p).startswith("kube-apiserver")]
    return int(line.split(":", 1)[0])


def test_a_hundred_open_incidents_survive_an_api_server_hang_a_prometheus_crash_and_an_operator_crash(
    kube: Kube,
    admin_api: client.ApiClient,
    namespace: str,
    rollout_kit: RolloutKit,
    prometheus_with_history: StartWithHistory,
    ajan_operator: Callable[..., OperatorProcess],
) -> None:
    rollout_kit.create_rollout("checkout")
    stack: HistoryStack = prometheus_with_history(HISTORY_S, day_seconds=86400)
    operator = ajan_operator(stack.url)
    cluster = Cluster(admin_api, namespace)
    for name in POLICIES:
        cluster.apply(canary_policy(name, interval_s=INTERVAL_S, remediation=PAUSE_IN_DRY_RUN))
    wait_for(_all(cluster, lambda p: _condition(p, "Ready")), timeout=TIMEOUT_S, what="every policy Ready")

    # The load: every policy on the same fault, each opening its own incident and proposing its plan;
    # the API server hangs while they do, with plans and status writes in flight.
    stack.post_fault(kind="error_burst", rate=0.3, duration_s=3600)
    wait_for(
        lambda: len(_plans_by_policy(cluster)) >= 10, timeout=TIMEOUT_S, what="the first plans", interval=1.0
    )
    apiserver = _apiserver_pid(kube)
    print(f"\n[faults under load] API server hung with {len(_plans_by_policy(cluster))} of 100 plans made")
    os.kill(apiserver, signal.SIGSTOP)
    try:
        time.sleep(API_HANG_S)  # nothing to poll: the API server is what hangs
    finally:
        os.kill(apiserver, signal.SIGCONT)
    started = time.monotonic()
    wait_for(
        lambda: len(_plans_by_policy(cluster)) == len(POLICIES),
        timeout=TIMEOUT_S,
        what="a plan from every policy",
        interval=2.0,
    )
    _timed(f"API server hung {API_HANG_S:g} s mid-plans, resumed -> a plan from every policy", started)
    plans = _plans_by_policy(cluster)
    incidents = _incidents(cluster)
    assert all(len(names) == 1 for names in plans.values()), plans
    assert all(incidents.values()), incidents

    # Prometheus crashes: every policy degrades, acts on nothing, and recovers when it is back.
    stack.prometheus.stop(signal.SIGKILL)
    _degraded(cluster, "Prometheus killed", TIMEOUT_S)
    stack.prometheus.start()
    _recovered(cluster, "Prometheus restarted", plans, incidents)

    # Prometheus hangs (SIGSTOP: connections are accepted, nothing answers): every policy says so
    # within a few intervals, not only those whose queries hold the slots, and acts on nothing.
    proc = stack.prometheus.proc
    assert proc is not None
    proc.send_signal(signal.SIGSTOP)
    try:
        _degraded(cluster, "Prometheus hung", HUNG_DEADLINE_S)
        assert _plans_by_policy(cluster) == plans
    finally:
        proc.send_signal(signal.SIGCONT)
    _recovered(cluster, "Prometheus resumed", plans, incidents)

    # The operator crashes (SIGKILL, no shutdown) with a hundred incidents open, and restarts.
    operator.stop(signal.SIGKILL)
    before = _stamps(cluster)
    started = time.monotonic()
    operator.start()
    _evaluated_since(cluster, before, 2)
    _timed("operator killed and restarted -> every policy evaluated twice", started)
    assert _plans_by_policy(cluster) == plans
    assert _incidents(cluster) == incidents
    assert not any(_condition(p, "Degraded") for p in _policies(cluster).values())
