"""The executor's pure decisions: limits, GitOps detection, the history of actions, the summary line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ajan.models import Action, GitOpsManager, RemediationPlan
from ajan.services.conditions import with_condition
from ajan.services.execution import (
    OperatorLimit,
    Taken,
    approval_command,
    gitops_of,
    history_of,
    needs_revert,
    summary_text,
    throttle,
)

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
COOLDOWN = timedelta(minutes=10)


def ago(minutes: float) -> datetime:
    return NOW - timedelta(minutes=minutes)


def test_annotations_are_never_held_back() -> None:
    history = [Taken(ago(k), Action.ABORT) for k in range(10)]
    assert throttle(Action.ANNOTATE, history, COOLDOWN, 1, NOW) is None


def test_cooldown_holds_a_same_or_weaker_action() -> None:
    wait = throttle(Action.PAUSE, [Taken(ago(3), Action.PAUSE)], COOLDOWN, 6, NOW)
    assert wait is not None and wait.reason == "CoolingDown" and wait.until == ago(3) + COOLDOWN
    assert throttle(Action.PAUSE, [Taken(ago(3), Action.ABORT)], COOLDOWN, 6, NOW) is not None
    assert throttle(Action.PAUSE, [Taken(ago(11), Action.PAUSE)], COOLDOWN, 6, NOW) is None


def test_escalation_is_not_held_back_by_the_cooldown() -> None:
    assert throttle(Action.ABORT, [Taken(ago(1), Action.PAUSE)], COOLDOWN, 6, NOW) is None


def test_annotations_do_not_start_a_cooldown() -> None:
    assert throttle(Action.PAUSE, [Taken(ago(1), Action.ANNOTATE)], COOLDOWN, 6, NOW) is None


def test_hourly_limit_counts_the_last_hour_only() -> None:
    history = [Taken(ago(m), Action.PAUSE) for m in (15, 30, 45)] + [Taken(ago(61), Action.PAUSE)]
    wait = throttle(Action.ABORT, history, timedelta(0), 3, NOW)
    assert wait is not None and wait.reason == "RateLimited"
    assert wait.until == ago(45) + timedelta(hours=1)
    assert throttle(Action.ABORT, history, timedelta(0), 4, NOW) is None


def test_zero_per_hour_never_acts_but_annotates() -> None:
    assert throttle(Action.PAUSE, [], COOLDOWN, 0, NOW) is not None
    assert throttle(Action.ANNOTATE, [], COOLDOWN, 0, NOW) is None


def test_operator_limit_is_a_sliding_hour() -> None:
    limit = OperatorLimit(2)
    limit.record(ago(70))
    limit.record(ago(30))
    assert limit.allows(NOW)
    limit.record(ago(10))
    assert not limit.allows(NOW)
    assert limit.allows(NOW + timedelta(minutes=31))


def plan(
    name: str,
    action: str,
    executed: datetime | None,
    mode: str = "auto",
    conditions: list[dict[str, Any]] | None = None,
    **spec: Any,
) -> RemediationPlan:
    """A plan as the store hands it over: validated from the object the API server returns."""
    status: dict[str, Any] = {"executedAt": executed.isoformat().replace("+00:00", "Z")} if executed else {}
    if conditions is not None:
        status["conditions"] = conditions
    return RemediationPlan.model_validate({
        "metadata": {"name": name},
        "spec": {
            "policyRef": {"name": "checkout-latency"}, "targetRef": {"name": "checkout"},
            "action": action, "severity": "warning", "confidence": 0.81, "mode": mode, **spec,
        },
        "status": status,
    })  # fmt: skip


def test_history_counts_actions_taken_not_dry_runs() -> None:
    plans = [
        plan("a", "pause", ago(5)),
        plan("b", "abort", ago(2), mode="dry-run"),
        plan("c", "abort", None),
    ]
    assert history_of(plans) == [Taken(ago(5), Action.PAUSE)]


@pytest.mark.parametrize(
    ("labels", "annotations", "manager"),
    [
        ({"app.kubernetes.io/instance": "shop"}, {}, GitOpsManager.ARGOCD),
        (
            {},
            {"argocd.argoproj.io/tracking-id": "shop:argoproj.io/Rollout:shop/checkout"},
            GitOpsManager.ARGOCD,
        ),
        ({"kustomize.toolkit.fluxcd.io/name": "apps"}, {}, GitOpsManager.FLUX),
        ({"helm.toolkit.fluxcd.io/name": "checkout"}, {}, GitOpsManager.FLUX),
        ({"app": "checkout"}, {}, None),
    ],
)
def test_gitops_detection(
    labels: dict[str, str], annotations: dict[str, str], manager: GitOpsManager | None
) -> None:
    rollout = {"metadata": {"name": "checkout", "labels": labels, "annotations": annotations}}
    found = gitops_of(rollout)
    if manager is None:
        assert found is None
    else:
        assert found is not None and found.manager is manager
        assert "abort" in found.note and "revert" in found.suggestion.lower()
        assert (list(labels.items()) + list(annotations.items()))[0][0] in found.source


def test_with_condition_keeps_the_transition_time_when_the_status_stays() -> None:
    old = [{"type": "Throttled", "status": "True", "reason": "CoolingDown", "lastTransitionTime": "t0"}]
    same = {"type": "Throttled", "status": "True", "reason": "RateLimited", "lastTransitionTime": "t1"}
    assert with_condition(old, same)[0]["lastTransitionTime"] == "t0"
    assert with_condition(old, same)[0]["reason"] == "RateLimited"
    flipped = {**same, "status": "False"}
    assert with_condition(old, flipped)[0]["lastTransitionTime"] == "t1"
    other = {"type": "Executed", "status": "True", "reason": "Applied", "lastTransitionTime": "t2"}
    assert [c["type"] for c in with_condition(old, other)] == ["Throttled", "Executed"]


def test_approval_command_is_a_merge_patch_of_the_approval() -> None:
    command = approval_command("shop", "checkout-abc-pause")
    assert command.startswith("kubectl -n shop patch remediationplan checkout-abc-pause --type merge -p ")
    assert '"approval":{"approved":true' in command


def test_summary_text_names_plan_action_target_and_evidence() -> None:
    anomaly = {"metric": "latency", "value": 0.9, "baseline": 0.2, "zScore": 6.2}
    proposed = plan("checkout-abc-pause", "pause", None, evidence={"anomalies": [anomaly]})
    text = summary_text("shop", proposed, "executed")
    assert text == (
        "ajan: plan shop/checkout-abc-pause executed: pause on rollout checkout (warning, confidence 0.81, "
        "mode auto); anomalous: latency z=+6.2"
    )


def test_needs_revert_only_an_executed_pause_or_abort_marked_false_positive_once() -> None:
    def executed(action: str, **spec: Any) -> RemediationPlan:
        return plan("a", action, ago(5), **spec)

    false_alarm = {"feedback": {"verdict": "false-positive"}}
    assert needs_revert(executed("pause", **false_alarm))
    assert needs_revert(executed("abort", **false_alarm))
    assert not needs_revert(executed("annotate", **false_alarm))
    assert not needs_revert(executed("pause", feedback={"verdict": "true-positive"}))
    assert not needs_revert(executed("pause", mode="dry-run", **false_alarm))
    assert not needs_revert(plan("a", "pause", None, **false_alarm))
    reverted = {
        "type": "Reverted",
        "status": "True",
        "reason": "FalsePositive",
        "lastTransitionTime": ago(1).isoformat(),
    }
    assert not needs_revert(executed("pause", conditions=[reverted], **false_alarm))
