"""Faults under load: a hundred policies, each with an open incident, through an API server that hangs
while they propose their plans, an API server crash, an etcd crash, a Prometheus crash and hang, and
a Redis crash while verdicts are given, and an operator crash (issue 16, docs/reliability.md).

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
import redis
from kubernetes import client

from ajan.simulate.stack import RedisServer, canary_policy
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


def _crash(kube: Kube, component: str) -> None:
    """SIGKILL ``component`` and return once its supervisor has started it again and the API answers."""
    pid = kube.pid(component)
    os.kill(pid, signal.SIGKILL)
    started = time.monotonic()
    wait_for(lambda: kube.pid(component) != pid, timeout=TIMEOUT_S, what=f"{component} restarted")
    core = client.CoreV1Api(kube.api_client())
    wait_for(lambda: _answers(core), timeout=TIMEOUT_S, what=f"the API server answering after {component}")
    _timed(f"{component} killed -> restarted and reading from etcd", started)


def _answers(core: client.CoreV1Api) -> bool:
    try:
        core.list_namespace(limit=1, _request_timeout=5)  # a quorum read: etcd answers it
    except Exception:  # refused, reset, 5xx, timeout: all mean not back yet
        return False
    return True


def _survived(
    cluster: Cluster,
    after: str,
    plans: dict[str, list[str]],
    incidents: dict[str, str | None],
    since: dict[str, str],
) -> None:
    """Every policy evaluated twice since ``since``, with the same plans and incidents and not Degraded."""
    started = time.monotonic()
    _evaluated_since(cluster, since, 2)
    _timed(f"{after} -> every policy evaluated twice", started)
    assert _plans_by_policy(cluster) == plans
    assert _incidents(cluster) == incidents
    wait_for(
        _all(cluster, lambda p: not _condition(p, "Degraded")),
        timeout=TIMEOUT_S,
        what=f"no policy Degraded after: {after}",
        interval=2.0,
    )


def _give_verdicts(cluster: Cluster, plans: list[str]) -> None:
    """Mark ``plans`` true-positive with ``kubectl patch`` (the operator copies them into Redis)."""
    verdict = {
        "spec": {
            "feedback": {"verdict": "true-positive", "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        }
    }
    for name in plans:
        cluster.custom.patch_namespaced_custom_object(
            GROUP, VERSION, cluster.namespace, "remediationplans", name, verdict
        )


def _stored_verdicts(server: RedisServer, namespace: str) -> set[str]:
    """The plans whose verdict is in Redis (empty while it is down)."""
    stored = redis.Redis.from_url(server.url, socket_timeout=5)
    try:
        keys = stored.keys(f"ajan:feedback:plan:{namespace}/*")
    except redis.RedisError:
        return set()
    finally:
        stored.close()
    return {key.decode().rsplit("/", 1)[-1] for key in keys}


def test_a_hundred_open_incidents_survive_api_server_and_etcd_faults_prometheus_faults_and_an_operator_crash(
    kube: Kube,
    admin_api: client.ApiClient,
    namespace: str,
    rollout_kit: RolloutKit,
    prometheus_with_history: StartWithHistory,
    ajan_operator: Callable[..., OperatorProcess],
    redis_server: RedisServer,
) -> None:
    rollout_kit.create_rollout("checkout")
    stack: HistoryStack = prometheus_with_history(HISTORY_S, day_seconds=86400)
    operator = ajan_operator(stack.url, f"--redis-url={redis_server.url}")
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
    apiserver = kube.pid("kube-apiserver")
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

    # The API server crashes (SIGKILL) and its supervisor restarts it, as the kubelet would; then
    # etcd, under a running API server. Meanwhile kopf's watches break and ajan's status writes
    # fail; afterwards every policy goes on evaluating its open incident, nothing proposed twice.
    for component in ("kube-apiserver", "etcd"):
        before = _stamps(cluster)
        _crash(kube, component)
        _survived(cluster, f"{component} killed and restarted", plans, incidents, before)

    # Redis crashes (SIGKILL) while people judge the plans: half the verdicts stored before, half
    # given while it is down. Every one is in Redis once it is back; the incidents go on meanwhile.
    names = sorted(name for named in plans.values() for name in named)
    _give_verdicts(cluster, names[:50])
    wait_for(
        lambda: _stored_verdicts(redis_server, namespace) >= set(names[:50]),
        timeout=TIMEOUT_S,
        what="the first 50 verdicts in Redis",
        interval=1.0,
    )
    # appendfsync everysec: what Redis acknowledged is in its append-only file; give the fsync its
    # second, so that the test is of ajan and not of a machine crash Redis does not promise to survive.
    time.sleep(1.5)
    redis_server.stop(signal.SIGKILL)
    before = _stamps(cluster)
    _give_verdicts(cluster, names[50:])
    _survived(cluster, "Redis killed, 50 verdicts given meanwhile", plans, incidents, before)
    redis_server.start()
    started = time.monotonic()
    wait_for(
        lambda: _stored_verdicts(redis_server, namespace) == set(names),
        timeout=TIMEOUT_S,
        what="all 100 verdicts in Redis",
        interval=1.0,
    )
    _timed("Redis restarted -> the 50 verdicts given while it was down stored, none lost", started)

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
