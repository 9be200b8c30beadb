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
from typing import Final

import pytest

from ajan.simulate.stack import JOB, first_p99_at_or_above
from support.operator import Cluster

from .guard import SLO_P99_S, Guard, Guarded, first_action, running_analysis
from .kit import ArgoKit, Object, aborted, at_step, healthy, scaled

pytestmark = pytest.mark.kube_controller_manager  # namespaces' `default` service account, GC

#: Deadline for the fault to play out. The generator's latency follows its daily load on the wall
#: clock (``day_seconds=86400``): p99 reaches the SLO about 3 minutes into the creep at mid-day and
#: about 5 at midnight's low load; Argo needs three failed measurements more.
FAULT_TIMEOUT_S: Final = 420.0


@pytest.fixture(params=["dry-run"])
def guarded(request: pytest.FixtureRequest, guard: Guard) -> Guarded:
    """A Rollout paused at 25 % under Argo's analysis and ajan's policy (in the mode the test
    parametrizes, dry-run by default)."""
    return guard(request.param)


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
    crossed = first_p99_at_or_above(stack.url, fault_at, SLO_P99_S)
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


def test_a_healthy_canary_under_both_guards_is_promoted_to_full_weight(guard: Guard) -> None:
    """Neither guard stands in a healthy canary's way: through a timed pause under Argo's analysis
    and ajan in auto mode, the new revision becomes stable and ajan wrote no plan."""
    steps: list[Object] = [{"setWeight": 25}, {"pause": {"duration": "40s"}}]
    argo, _, cluster, stable = guard("auto", steps)
    rollout = argo.wait(JOB, "the timed pause (step 1)", lambda: at_step(argo, JOB, 1))
    canary: str = rollout["status"]["currentPodHash"]
    assert canary != stable
    during = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    # ajan evaluated the canary while it was at 25 %, not only before or after.
    cluster.evaluations_after("guard", during, 5, timeout=60)
    assert argo.rollout(JOB)["status"]["currentStepIndex"] == 1
    rollout = argo.wait(JOB, "Healthy on the new revision", lambda: healthy(argo, JOB), timeout=120)
    assert rollout["status"]["stableRS"] == canary
    argo.wait(JOB, "4 new pods, the old ReplicaSet at 0", lambda: scaled(argo, JOB, canary, 4))
    [run] = argo.analysis_runs()
    assert run["status"]["phase"] == "Successful", run["status"]
    assert cluster.plans() == []
    assert cluster.policy("guard")["status"].get("incident") is None


#: A ladder that goes no further than a pause.
PAUSE_AT_MOST: Final[list[Object]] = [
    {"minConfidence": 0.75, "severity": "warning", "action": "pause"},
    {"minConfidence": 0.5, "severity": "info", "action": "annotate"},
]


def test_ajans_pause_holds_the_rollout_past_its_timed_step(guard: Guard) -> None:
    """ajan pauses a canary during a timed pause step: when the step's time is up Argo's controller
    does not move on to the next weight, as with `kubectl argo rollouts pause`."""
    hold_s = 60.0
    steps: list[Object] = [{"setWeight": 25}, {"pause": {"duration": f"{hold_s:g}s"}}, {"setWeight": 50}]
    # Argo's own analysis would abort the Rollout on the fault: only ajan guards it here.
    argo, stack, cluster, stable = guard("auto", steps, analysis=False, ladder=PAUSE_AT_MOST)
    rollout = argo.wait(JOB, "the timed pause (step 1)", lambda: at_step(argo, JOB, 1, paused=True))
    step_began = time.monotonic()
    canary: str = rollout["status"]["currentPodHash"]
    stack.post_fault(kind="latency_creep", rate=0.02, duration_s=900)

    def paused_by_ajan() -> Object | None:
        pause = next((p for p in cluster.plans() if p["spec"]["action"] == "pause"), None)
        return pause if pause and (pause.get("status") or {}).get("phase") == "Executed" else None

    pause = argo.wait(JOB, "ajan's pause executed", paused_by_ajan, timeout=hold_s)
    assert time.monotonic() - step_began < hold_s, "ajan paused after the timed step had ended"
    # Until well past the step's end (its start is stored in whole seconds), the canary stays put.
    while time.monotonic() - step_began < hold_s + 15.0:
        rollout = argo.rollout(JOB)
        assert rollout["spec"].get("paused") is True, pause["status"]
        assert rollout["status"]["currentStepIndex"] == 1, rollout["status"]
        time.sleep(1.0)
    assert rollout["status"]["stableRS"] == stable
    assert scaled(argo, JOB, canary, 1) and scaled(argo, JOB, stable, 3)
    assert not [p for p in cluster.plans() if p["spec"]["action"] in ("abort", "rollback")]
