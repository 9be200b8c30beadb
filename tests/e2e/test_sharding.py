"""Replicas as a StatefulSet runs them with ``--shards``: each policy has exactly one owner.

The control plane and the first policy are tests/e2e/conftest.py's; more policies join it here. A
replica's name is its pod's (``ajan-0``, ``ajan-1``, ...: POD_ID, from which it takes its shard), and
each serves /metrics, where ``aiops_policy_confidence`` has one series per policy it evaluated.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest
from kubernetes import client

from ajan.models import GROUP, VERSION
from ajan.services.sharding import shard_of
from ajan.simulate import stack
from ajan.simulate.stack import ControlPlane, wait_for
from support.prometheus import StartWithHistory
from support.replicas import EVALUATIONS_TIMEOUT_S, NAMESPACE, POLICY, Replica

#: Policies shared out (the conftest's one and these), at the canary policy's 2 s interval.
MORE: Final = tuple(f"guard-{i:02d}" for i in range(11))
POLICIES: Final = frozenset({POLICY, *MORE})

pytestmark = pytest.mark.e2e


@pytest.fixture
def policies(cluster: client.ApiClient) -> frozenset[str]:
    custom = client.CustomObjectsApi(cluster)
    for name in MORE:
        custom.create_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, "correlationpolicies", stack.canary_policy(name)
        )
    return POLICIES


class Shards:
    """``count`` replicas named as a StatefulSet's pods, each with ``--shards count``."""

    def __init__(self, plane: ControlPlane, prometheus_url: str, workdir: Path) -> None:
        self.plane, self.url, self.workdir = plane, prometheus_url, workdir
        self.running: dict[str, Replica] = {}

    def start(self, name: str, count: int) -> Replica:
        replica = Replica(self.plane, self.url, self.workdir / f"{name}-of-{count}", "--shards", str(count),
                          name=name)  # fmt: skip
        replica.process.start()
        self.running[name] = replica
        return replica

    def stop(self, name: str, sig: signal.Signals = signal.SIGTERM) -> None:
        self.running.pop(name).process.stop(sig)

    def stop_all(self) -> None:
        for name in list(self.running):
            self.stop(name)


@pytest.fixture
def shards(
    plane: ControlPlane, prometheus_with_history: StartWithHistory, tmp_path: Path
) -> Iterator[Shards]:
    """With five minutes of history, so that the first evaluations are good ones: a degraded
    evaluation (too little data yet) sets no ``aiops_policy_confidence`` series."""
    history = prometheus_with_history(300.0, day_seconds=86400)
    started = Shards(plane, history.url, tmp_path)
    try:
        yield started
    finally:
        started.stop_all()


def last_evaluations(api: client.ApiClient) -> dict[str, str]:
    listed = client.CustomObjectsApi(api).list_namespaced_custom_object(
        GROUP, VERSION, NAMESPACE, "correlationpolicies"
    )
    return {
        p["metadata"]["name"]: str((p.get("status") or {}).get("lastEvaluationTime") or "")
        for p in listed["items"]
    }


def owners_once_all_evaluated(shards: Shards, policies: frozenset[str]) -> dict[str, set[str]]:
    """Each running replica's evaluated policies, once together they cover ``policies``."""

    def covered() -> dict[str, set[str]] | None:
        owned = {name: r.policies() for name, r in shards.running.items()}
        return owned if set().union(*owned.values()) >= policies else None

    return wait_for(covered, timeout=EVALUATIONS_TIMEOUT_S, what="every policy evaluated", interval=1.0)


def expected(policies: frozenset[str], count: int) -> dict[str, set[str]]:
    return {f"ajan-{i}": {p for p in policies if shard_of(NAMESPACE, p, count) == i} for i in range(count)}


def test_three_shards_own_each_policy_once_a_dead_one_waits_and_four_rebalance(
    cluster: client.ApiClient, policies: frozenset[str], shards: Shards
) -> None:
    want = expected(policies, 3)
    assert all(want.values()), f"a shard without a policy tests nothing: {want}"
    for i in range(3):
        shards.start(f"ajan-{i}", 3)
    owned = owners_once_all_evaluated(shards, policies)
    assert owned == want  # disjoint, complete, and where the hash says

    # A StatefulSet pod killed: its policies wait for it (nobody else takes them), the rest go on.
    shards.stop("ajan-1", signal.SIGKILL)
    others = policies - want["ajan-1"]

    def others_moved(since: dict[str, str]) -> None:
        wait_for(
            lambda: all(last_evaluations(cluster)[p] != since[p] for p in others),
            timeout=EVALUATIONS_TIMEOUT_S,
            what="the other shards evaluating",
        )

    # One round first: a status write the dead pod had in flight has landed by then.
    others_moved(last_evaluations(cluster))
    before = last_evaluations(cluster)
    others_moved(before)
    others_moved(last_evaluations(cluster))
    after = last_evaluations(cluster)
    assert {p: after[p] for p in want["ajan-1"]} == {p: before[p] for p in want["ajan-1"]}
    assert all(shards.running[r].policies() == want[r] for r in ("ajan-0", "ajan-2"))

    # Restarted under the same name, it takes its own policies back.
    shards.start("ajan-1", 3)
    wait_for(
        lambda: all(last_evaluations(cluster)[p] != after[p] for p in want["ajan-1"]),
        timeout=EVALUATIONS_TIMEOUT_S,
        what="the restarted shard evaluating its policies",
    )

    # Scaled to four: the StatefulSet rolls every pod with the new count.
    shards.stop_all()
    for i in range(4):
        shards.start(f"ajan-{i}", 4)
    assert owners_once_all_evaluated(shards, policies) == expected(policies, 4)
