"""The Argo CD health check of RemediationPlans (manifests/argocd/health.lua), run by Debian's Lua 5.1
(the dialect of Argo CD's gopher-lua) on plans in every phase, as Argo CD runs it: the object as a
Lua table in the global ``obj``, the script's returned table read for ``status`` and ``message``."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any, Final

import pytest
import yaml

from ajan.models.plan import PlanPhase, RemediationPlan
from ajan.simulate import stack
from monitoring.sources import MANIFESTS

HEALTH_LUA: Final = MANIFESTS / "argocd" / "health.lua"
CM_PATCH: Final = MANIFESTS / "argocd" / "argocd-cm-patch.yaml"
CM_KEY: Final = "resource.customizations.health.aiops.ajan.dev_RemediationPlan"
#: Argo CD's health statuses (pkg/health): anything else would be shown as Unknown.
ARGO_HEALTH: Final = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}


@pytest.fixture(scope="module")
def lua() -> str:
    """Debian's ``lua5.1`` (``hack/debian-install.sh`` installs it when missing)."""
    return stack.debian_binary("lua5.1")


def lua_literal(value: Any) -> str:
    """A JSON value as a Lua table constructor (JSON arrays become 1-based Lua sequences)."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        # A JSON string literal is a valid Lua string literal for the characters used here, except
        # \u escapes (Lua 5.1 has none): ensure_ascii=False keeps text as UTF-8 bytes.
        return json.dumps(value, ensure_ascii=False).replace("\\/", "/")
    if isinstance(value, list):
        return "{" + ", ".join(lua_literal(v) for v in value) + "}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"[{lua_literal(str(k))}] = {lua_literal(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no Lua literal for {type(value).__name__}")


def health(lua: str, obj: dict[str, Any], tmp_path: Path) -> dict[str, str]:
    """Run health.lua on ``obj``; returns the table it returns (status, message)."""
    # The script's top level is a chunk that returns hs: run it as a function, as Argo CD does.
    program = (
        f"obj = {lua_literal(obj)}\n"
        f"local hs = (function()\n{HEALTH_LUA.read_text()}\nend)()\n"
        'io.write(hs.status, "\\n", hs.message or "")\n'
    )
    script = tmp_path / "run.lua"
    script.write_text(program)
    done = subprocess.run([lua, str(script)], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    status, _, message = done.stdout.partition("\n")
    return {"status": status, "message": message}


def condition(type_: str, reason: str, message: str) -> dict[str, Any]:
    return {
        "type": type_,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2026-11-24T01:00:00Z",
    }


def plan(phase: str | None, *conditions: dict[str, Any], mode: str = "auto") -> dict[str, Any]:
    """A RemediationPlan as the API server returns it, checked against ajan's model."""
    status: dict[str, Any] = {"proposedAt": "2026-11-24T01:00:00Z", "conditions": list(conditions)}
    if phase is not None:
        status["phase"] = phase
    obj = {
        "apiVersion": "aiops.ajan.dev/v1alpha1",
        "kind": "RemediationPlan",
        "metadata": {"name": "checkout-tk4c9z-pause", "namespace": "shop"},
        "spec": {
            "policyRef": {"name": "checkout"},
            "targetRef": {"kind": "Rollout", "name": "checkout"},
            "action": "pause",
            "severity": "warning",
            "confidence": 0.81,
            "mode": mode,
            "evidence": {
                "anomalies": [{"metric": "error-ratio", "value": 0.3, "baseline": 0.01, "zScore": 9.3}]
            },
        },
        "status": status,
    }
    RemediationPlan.model_validate(obj)  # a plan ajan could have written
    return obj


AWAITING: Final = condition(
    "AwaitingApproval", "AwaitingApproval", "approve or reject before 2026-11-24T01:15:00Z: kubectl ..."
)
#: (plan, expected status, a substring of the expected message), one per phase and more.
CASES: Final = {
    "no phase yet": (plan(None), "Progressing", "Waiting for the operator"),
    "Proposed, auto": (plan("Proposed"), "Progressing", "pause waits"),
    "Proposed, awaiting approval": (
        plan("Proposed", AWAITING, mode="approve"),
        "Progressing",
        "approve or reject",
    ),
    "Proposed, throttled": (
        plan("Proposed", condition("Throttled", "CoolingDown", "cooling down until 01:10")),
        "Progressing",
        "cooling down",
    ),
    "Approved": (
        plan("Approved", condition("Approved", "Approved", "approved by alice")),
        "Progressing",
        "alice",
    ),
    "Executing": (
        plan("Executing", condition("Executing", "Sending", "PATCH rollouts/checkout")),
        "Progressing",
        "PATCH",
    ),
    "Executed": (
        plan("Executed", condition("Executed", "Applied", "pause applied to rollout checkout")),
        "Healthy",
        "pause applied",
    ),
    "DryRun": (
        plan(
            "DryRun",
            condition("DryRun", "DryRun", "not sent (dry-run mode): see dryRunPatch"),
            mode="dry-run",
        ),
        "Healthy",
        "dry-run",
    ),
    "Resolved": (plan("Resolved"), "Healthy", "anomaly ended"),
    "Superseded": (
        plan("Superseded", condition("Superseded", "Escalated", "superseded by checkout-tk4c9z-abort")),
        "Healthy",
        "checkout-tk4c9z-abort",
    ),
    "Rejected": (plan("Rejected", condition("Rejected", "Rejected", "rejected by bob")), "Healthy", "bob"),
    "Expired": (
        plan("Expired", AWAITING, condition("Expired", "ApprovalTimeout", "no approval within 15m")),
        "Degraded",
        "no approval within 15m",
    ),
    "Failed": (
        plan("Failed", condition("Failed", "Forbidden", "rollouts.argoproj.io is forbidden")),
        "Degraded",
        "forbidden",
    ),
    "Failed, no condition": (plan("Failed"), "Degraded", "could not be applied"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_health_of_a_plan(lua: str, case: str, tmp_path: Path) -> None:
    obj, status, message = CASES[case]
    got = health(lua, obj, tmp_path)
    assert got["status"] == status, got
    assert message in got["message"], got


def test_every_phase_has_a_case_and_a_known_health(lua: str, tmp_path: Path) -> None:
    covered = {obj["status"].get("phase") for obj, _, _ in CASES.values()}
    assert {phase.value for phase in PlanPhase} <= covered
    for phase in PlanPhase:
        assert health(lua, plan(phase.value), tmp_path)["status"] in ARGO_HEALTH - {"Unknown"}, phase


def test_an_unknown_phase_is_unknown(lua: str, tmp_path: Path) -> None:
    obj = plan("Executed")
    obj["status"]["phase"] = "Teleported"  # a future phase this script does not know
    assert health(lua, obj, tmp_path) == {"status": "Unknown", "message": "Unknown phase Teleported"}


def test_the_argocd_cm_patch_holds_this_script() -> None:
    patch = yaml.safe_load(CM_PATCH.read_text())
    assert patch["metadata"] == {"name": "argocd-cm", "namespace": "argocd"}
    assert patch["data"] == {CM_KEY: HEALTH_LUA.read_text()}
