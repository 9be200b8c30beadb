"""ajan beside Argo Rollouts' own analysis, on a canary Argo's controller really moves.

The Rollout runs a typical background AnalysisTemplate: p99 and the error ratio against the SLO
from Prometheus, three failures end the analysis (``failureLimit: 2``), Argo's usual one-minute
interval compressed to 5 s as every duration here is. ajan runs on the same Rollout with a
CorrelationPolicy whose p99 carries the same SLO, in dry-run: were it in auto mode its abort would
end Argo's analysis (Argo stops a background analysis on abort), and there would be nothing to
compare with. The canary's metrics come from the generator (the pods kwok runs serve nothing), so
the fault is injected there.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Final

import httpx
import pytest

from ajan.simulate.stack import CANARY_METRICS, JOB, OperatorProcess, canary_policy
from support.operator import Cluster
from support.prometheus import HistoryStack, StartWithHistory

from .kit import IMAGE_2, ArgoKit, Object, aborted, deploy_first_revision

pytestmark = pytest.mark.kube_controller_manager  # namespaces' `default` service account, GC

SLO_P99_S: Final = 0.5
SLO_ERROR_RATIO: Final = 0.05
#: Argo's interval, compressed twelvefold with everything else (a 3-minute window at 1 s steps).
ANALYSIS_INTERVAL: Final = "5s"
#: Healthy history the generator backfills: ajan's 3-minute window and its baseline are there at once.
HISTORY_S: Final = 300.0
#: Deadline for the fault to play out: the creep reaches the SLO after about a minute.
FAULT_TIMEOUT_S: Final = 240.0


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


def guarded_policy(name: str, mode: str) -> Object:
    """ajan's policy on the same Rollout: the same SLO on p99, breaches predicted 20 s ahead count."""
    metrics = [
        {**m, "objective": "max", "threshold": SLO_P99_S} if m["name"] == "latency-p99" else dict(m)
        for m in CANARY_METRICS
    ]
    return canary_policy(name, metrics=metrics, remediation={"mode": mode, "horizon": "20s"})


def epoch(stamp: str) -> float:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def first_at_or_above(prometheus_url: str, query: str, since: float, bound: float) -> float | None:
    """When ``query`` first reached ``bound`` after ``since``, at one-second resolution."""
    response = httpx.get(
        f"{prometheus_url}/api/v1/query_range",
        params={"query": query, "start": since, "end": time.time(), "step": "1s"},
        timeout=10,
    )
    result = response.json()["data"]["result"]
    values = result[0]["values"] if result else []
    return next((float(t) for t, v in values if float(v) >= bound), None)


Guarded = tuple[ArgoKit, HistoryStack, Cluster, str]


@pytest.fixture(params=["dry-run"])
def guarded(
    request: pytest.FixtureRequest,
    argo: ArgoKit,
    prometheus_with_history: StartWithHistory,
    ajan_operator: Callable[..., OperatorProcess],
) -> Guarded:
    """A Rollout at its canary step under Argo's analysis and ajan's policy (in the mode the test
    parametrizes, dry-run by default); returns the stable ReplicaSet's hash too."""
    stack = prometheus_with_history(HISTORY_S, day_seconds=86400)
    ajan_operator(stack.url)
    argo.create("analysistemplates", slo_template(stack.url))
    steps: list[Object] = [{"setWeight": 25}, {"pause": {}}]
    stable = deploy_first_revision(argo, JOB, steps)
    # From the canary's pause on, Argo's analysis runs in the background, as teams write it.
    analysis = {"templates": [{"templateName": "slo"}], "startingStep": 1}
    argo.custom.patch_namespaced_custom_object(
        "argoproj.io", "v1alpha1", argo.namespace, "rollouts", JOB,
        {"spec": {"strategy": {"canary": {"steps": steps, "analysis": analysis}}}},
    )  # fmt: skip
    argo.set_image(JOB, IMAGE_2)
    cluster = Cluster(argo.api, argo.namespace)
    cluster.apply(guarded_policy("guard", request.param))
    stack.wait_for_scrapes(3)
    return argo, stack, cluster, stable


def running_analysis(argo: ArgoKit) -> Object | None:
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


def healthy_canary(argo: ArgoKit, cluster: Cluster, stable: str) -> tuple[Object, str]:
    """Wait for Argo's analysis to run on the canary and for ten quiet evaluations of ajan's policy:
    neither guard acts on the canary as it is. Returns the AnalysisRun and the canary's hash."""
    run = argo.wait(JOB, "the background AnalysisRun running", lambda: running_analysis(argo))
    canary: str = argo.rollout(JOB)["status"]["currentPodHash"]
    assert canary != stable
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    cluster.evaluations_after("guard", now, 10, timeout=120)
    assert first_action(cluster) is None, [p["spec"] for p in cluster.plans()]
    assert (cluster.policy("guard")["status"].get("confidence") or 0.0) < 0.75
    return run, canary


def test_ajan_decides_on_a_latency_creep_before_argos_analysis_fails(guarded: Guarded) -> None:
    """Dry-run: ajan records when it would have acted, and Argo's analysis plays out beside it."""
    argo, stack, cluster, stable = guarded
    run, canary = healthy_canary(argo, cluster, stable)
    fault_at = time.time()
    stack.post_fault(kind="latency_creep", rate=0.005, duration_s=900)

    def analysis_failed() -> Object | None:
        current = next(r for r in argo.analysis_runs() if r["metadata"]["name"] == run["metadata"]["name"])
        return current if (current.get("status") or {}).get("phase") == "Failed" else None

    failed = argo.wait(JOB, "Argo's AnalysisRun failed", analysis_failed, timeout=FAULT_TIMEOUT_S)
    argo_failed_at = time.time()
    rollout = argo.wait(JOB, "Argo's abort: the canary at 0", lambda: aborted(argo, JOB, stable, canary))
    acted = first_action(cluster)
    assert acted is not None, "ajan never decided to pause or abort the Rollout"
    ajan_at, action = acted
    crossed = first_at_or_above(
        stack.url, next(m["query"] for m in CANARY_METRICS if m["name"] == "latency-p99"), fault_at, SLO_P99_S
    )
    assert crossed is not None
    print(
        f"\nfault at 0 s; ajan's {action} at {ajan_at - fault_at:.0f} s; p99 >= {SLO_P99_S} s at "
        f"{crossed - fault_at:.0f} s; Argo's analysis failed by {argo_failed_at - fault_at:.0f} s"
    )
    # ajan decided no later than Argo's analysis failed, and Argo's own abort did what it does.
    assert ajan_at <= argo_failed_at, (ajan_at - fault_at, argo_failed_at - fault_at)
    assert [r["phase"] for r in failed["status"]["metricResults"] if r["name"] == "latency-p99"] == ["Failed"]
    assert rollout["status"]["abort"] is True
    # What ajan would have sent goes to this Rollout; in dry-run it sent nothing.
    plan = next(p for p in cluster.plans() if p["spec"]["action"] == action)
    assert plan["status"]["phase"] == "DryRun"
    assert f"/namespaces/{argo.namespace}/rollouts/{JOB}" in plan["status"]["patchRequest"]


@pytest.mark.parametrize("guarded", ["auto"], indirect=True)
def test_ajans_abort_makes_argo_scale_the_canary_down_and_end_its_analysis(guarded: Guarded) -> None:
    argo, stack, cluster, stable = guarded
    run, canary = healthy_canary(argo, cluster, stable)
    stack.post_fault(kind="latency_creep", rate=0.005, duration_s=900)
    rollout = argo.wait(
        JOB,
        "ajan's abort: the canary at 0",
        lambda: aborted(argo, JOB, stable, canary),
        timeout=FAULT_TIMEOUT_S,
    )
    abort = next(p for p in cluster.plans() if p["spec"]["action"] == "abort")
    assert abort["status"]["phase"] == "Executed", abort["status"]
    assert rollout["status"]["message"].startswith("RolloutAborted"), rollout["status"]

    def ended() -> Object | None:
        current = next(r for r in argo.analysis_runs() if r["metadata"]["name"] == run["metadata"]["name"])
        phase = (current.get("status") or {}).get("phase")
        return current if phase in ("Successful", "Failed", "Error") else None

    # Argo stops its own background analysis when the Rollout is aborted: it never had to fail.
    assert argo.wait(JOB, "the AnalysisRun ended", ended)["status"]["phase"] == "Successful"
