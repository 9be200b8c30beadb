"""ajan and Argo Rollouts' own analysis guarding one canary: what the tests and the lead-time
benchmark beside Argo's analysis share (the `guard` fixture is in this package's conftest)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Final, Protocol

from ajan.simulate.stack import (
    CANARY_METRICS,
    DEFAULT_PHASE,
    JOB,
    OperatorProcess,
    canary_policy,
    slo_metrics,
)
from support.operator import Cluster
from support.prometheus import HistoryStack, StartWithHistory

from .kit import IMAGE_2, ArgoKit, Object, deploy_first_revision

SLO_P99_S: Final = 0.5
SLO_ERROR_RATIO: Final = 0.05
#: Argo's interval, compressed twelvefold with everything else (a 3-minute window at 1 s steps).
ANALYSIS_INTERVAL: Final = "5s"
#: Healthy history the generator backfills: ajan's 3-minute window and its baseline are there at once.
HISTORY_S: Final = 300.0


def slo_template(prometheus_url: str) -> Object:
    """The AnalysisTemplate a team writes for a canary: p99 and the error ratio under their SLOs."""
    queries = {m["name"]: m["query"] for m in CANARY_METRICS}

    def metric(name: str, query: str, bound: float) -> Object:
        return {
            "name": name,
            "interval": ANALYSIS_INTERVAL,
            "failureLimit": 2,
            # An empty answer (no traffic yet) is inconclusive, not a pass: Argo's own idiom.
            "successCondition": f"len(result) == 0 || result[0] < {bound}",
            "provider": {"prometheus": {"address": prometheus_url, "query": query}},
        }

    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": "slo"},
        "spec": {
            "metrics": [
                metric("latency-p99", queries["latency-p99"], SLO_P99_S),
                metric("error-ratio", queries["error-ratio"], SLO_ERROR_RATIO),
            ]
        },
    }


def guarded_policy(
    name: str, mode: str, ladder: list[Object] | None = None, *, stable: bool = False
) -> Object:
    """ajan's policy on the same Rollout: the same SLO on p99, breaches predicted 20 s ahead count;
    the default ladder unless one is given; with ``stable``, the SLO metrics (a quantile and a ratio
    of requests, comparable across tracks) name their stable track's query, so ajan judges the
    canary's against it; the queue and memory are sums over a track, which differ by its traffic
    share, and stay judged on their own."""
    metrics = slo_metrics(SLO_P99_S)
    if stable:
        slo = [m["name"] for m in metrics if m.get("role") == "slo"]
        metrics = [{**m, "stableQuery": stable_query(m["query"])} if m["name"] in slo else m for m in metrics]
    remediation: Object = {"mode": mode, "horizon": "20s"}
    if ladder is not None:
        remediation["ladder"] = ladder
    return canary_policy(name, metrics=metrics, remediation=remediation)


def stable_query(canary_query: str) -> str:
    """The same query on the generator's stable track."""
    stable = canary_query.replace('track="canary"', 'track="stable"')
    assert stable != canary_query, canary_query
    return stable


def epoch(stamp: str) -> float:
    """Seconds since the epoch of a Kubernetes timestamp."""
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


Guarded = tuple[ArgoKit, HistoryStack, Cluster, str]
#: The canary waits at 25 % until someone (or a guard) decides.
PAUSED_AT_25: Final[list[Object]] = [{"setWeight": 25}, {"pause": {}}]


class Guard(Protocol):
    """The `guard` fixture's signature (`start_guarded` without the test's servers)."""

    def __call__(
        self,
        mode: str,
        steps: list[Object] = ...,
        *,
        analysis: bool = ...,
        ladder: list[Object] | None = ...,
        stable: bool = ...,
        seed: int = ...,
        phase: float | None = ...,
    ) -> Guarded: ...


def start_guarded(
    argo: ArgoKit,
    prometheus_with_history: StartWithHistory,
    ajan_operator: Callable[..., OperatorProcess],
    mode: str,
    steps: list[Object] = PAUSED_AT_25,
    *,
    analysis: bool = True,
    ladder: list[Object] | None = None,
    stable: bool = False,
    seed: int = 11,
    phase: float | None = DEFAULT_PHASE,
) -> Guarded:
    """Start a Rollout's canary with these ``steps`` under ajan's policy in ``mode`` (`guarded_policy`)
    and, with ``analysis``, Argo's background analysis (`slo_template`) from step 1 on. The generator
    (``seed``) backfills five minutes of healthy history and follows a real day's load, starting at
    ``phase`` of the day (`DEFAULT_PHASE`: midnight). Returns the stable ReplicaSet's hash too."""
    stack = prometheus_with_history(HISTORY_S, seed=seed, day_seconds=86400, phase=phase)
    ajan_operator(stack.url)
    stable_hash = deploy_first_revision(argo, JOB, steps)
    if analysis:
        argo.create("analysistemplates", slo_template(stack.url))
        # From the canary's first pause on, Argo's analysis runs in the background, as teams write it.
        background = {"templates": [{"templateName": "slo"}], "startingStep": 1}
        argo.custom.patch_namespaced_custom_object(
            "argoproj.io", "v1alpha1", argo.namespace, "rollouts", JOB,
            {"spec": {"strategy": {"canary": {"steps": steps, "analysis": background}}}},
        )  # fmt: skip
    argo.set_image(JOB, IMAGE_2)
    cluster = Cluster(argo.api, argo.namespace)
    cluster.apply(guarded_policy("guard", mode, ladder, stable=stable))
    stack.wait_for_scrapes(3)
    return argo, stack, cluster, stable_hash


def running_analysis(argo: ArgoKit) -> Object | None:
    """The Rollout's AnalysisRun, once it runs."""
    runs = argo.analysis_runs()
    return runs[0] if runs and (runs[0].get("status") or {}).get("phase") == "Running" else None


def first_action(cluster: Cluster) -> tuple[float, str] | None:
    """When ajan first decided to pause or abort the Rollout (the plan's ``proposedAt``), and which."""
    acted = sorted(
        (epoch(p["status"]["proposedAt"]), p["spec"]["action"])
        for p in cluster.plans()
        if p["spec"]["action"] in ("pause", "abort") and (p.get("status") or {}).get("proposedAt")
    )
    return acted[0] if acted else None
