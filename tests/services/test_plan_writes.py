"""What the operator writes for a new plan is the same JSON the hand-built dicts it replaced wrote.

The plan and its first status are built from the models now; these tests pin the wire shape (keys,
their order, values) to the literal dicts of the code before, so the change is to Python only.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from ajan.models import (
    API_VERSION,
    Action,
    Anomaly,
    CorrelationPolicySpec,
    Evidence,
    GitOps,
    GitOpsManager,
    Incident,
    PlanPhase,
    RemediationPlanStatus,
    Severity,
)
from ajan.models.common import rfc3339
from ajan.models.plan import MAX_PEAK_SHIFTS, peak_shifts_of
from ajan.services.incident import policy_label
from ajan.services.reconcile import LABEL_INCIDENT, LABEL_MANAGED_BY, LABEL_POLICY, _patch, new_plan

EXAMPLE = Path(__file__).parents[2] / "examples" / "correlationpolicy-latency-canary.yaml"
NOW = datetime(2026, 11, 23, 12, 0, 0, 250000, tzinfo=UTC)
EVIDENCE = Evidence(
    anomalies=[Anomaly(metric="latency-p99", value=0.93, baseline=0.21, z_score=6.25, since=NOW)],
)
GITOPS = GitOps(
    manager=GitOpsManager.ARGOCD, source="app.kubernetes.io/instance=shop", note="n", suggestion="s"
)


def _spec() -> CorrelationPolicySpec:
    return CorrelationPolicySpec.model_validate(yaml.safe_load(EXAMPLE.read_text())["spec"])


def _by_hand(
    namespace: str, policy: str, uid: str | None, spec: CorrelationPolicySpec, incident: Incident,
    severity: Severity, confidence: float, evidence: Evidence, gitops: GitOps | None,
) -> dict[str, Any]:  # fmt: skip
    """The body ``PolicyEvaluator._plan_body`` built by hand before the model did."""
    return {
        "apiVersion": API_VERSION,
        "kind": "RemediationPlan",
        "metadata": {
            "name": incident.plan,
            "namespace": namespace,
            "labels": {
                LABEL_POLICY: policy_label(policy),
                LABEL_INCIDENT: incident.id,
                LABEL_MANAGED_BY: "ajan",
            },
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": "CorrelationPolicy",
                    "name": policy,
                    "uid": uid,
                    "controller": True,
                }
            ],
        },
        "spec": {
            "policyRef": {"name": policy},
            "targetRef": spec.target_ref.to_kube(),
            "action": incident.action.value,
            "severity": severity.value,
            "confidence": round(confidence, 4),
            "evidence": evidence.to_kube(),
            "mode": spec.remediation.mode.value,
            **({"gitOps": gitops.to_kube()} if gitops is not None else {}),
        },
    }


@pytest.mark.parametrize(("uid", "gitops"), [("0b5e-uid", None), (None, GITOPS)])
def test_new_plan_writes_the_body_built_by_hand_before(uid: str | None, gitops: GitOps | None) -> None:
    spec = _spec()
    incident = Incident(
        id="abc123", opened_at=NOW, action=Action.PAUSE, plan="checkout-abc123-pause", peak_confidence=0.8
    )
    args = ("shop", "checkout-latency", uid, spec, incident, Severity.WARNING, 0.812345, EVIDENCE, gitops)
    # Serialized as the client sends it: the same text means the same keys, order and values.
    assert json.dumps(new_plan(*args).to_kube()) == json.dumps(_by_hand(*args))


def test_proposed_status_patch_is_the_dict_written_before() -> None:
    peaks = {"latency-p99": 0.72, "error-rate": 0.0123456789123}
    status = RemediationPlanStatus(
        phase=PlanPhase.PROPOSED, proposed_at=NOW, confidence=0.8123, peak_confidence=0.8123,
        last_evaluation_time=NOW, peak_shifts=peak_shifts_of(peaks),
    )  # fmt: skip
    before = {
        "phase": "Proposed",
        "proposedAt": rfc3339(NOW),
        "confidence": 0.8123,
        "peakConfidence": 0.8123,
        "lastEvaluationTime": rfc3339(NOW),
        "peakShifts": [{"metric": m, "shift": round(v, 9)} for m, v in sorted(peaks.items())],
    }
    assert json.dumps(_patch(status)) == json.dumps(before)


def test_peak_shifts_are_sorted_and_cut_to_the_fields_bound() -> None:
    peaks = {f"m{k:03d}": float(k) for k in range(MAX_PEAK_SHIFTS + 7)}
    shifts = peak_shifts_of(peaks)
    assert [s.metric for s in shifts] == sorted(peaks)[:MAX_PEAK_SHIFTS]
    RemediationPlanStatus(peak_shifts=shifts)  # within the bound the model (and the CRD) enforce
