"""ajan's CRDs against a real kube-apiserver: generated from the models, enforced the same way.

Invalid inputs are data: each case changes the example policy in one way and says which field
both the API server and the models must name, and what each must say.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException
from pydantic import ValidationError

from ajan.models import (
    Action,
    Anomaly,
    Condition,
    ConditionStatus,
    Correlation,
    CorrelationPolicy,
    CorrelationPolicySpec,
    CorrelationPolicyStatus,
    Drift,
    Evidence,
    PlanPhase,
    PolicyRef,
    PredictedImpact,
    RemediationPlan,
    RemediationPlanSpec,
    RemediationPlanStatus,
    Severity,
    TargetRef,
)
from ajan.models.crd import CORRELATION_POLICY, REMEDIATION_PLAN, RESOURCES, main, stale_files, write_files

ROOT: Final = Path(__file__).resolve().parents[2]
GROUP: Final = "aiops.ajan.dev"
VERSION: Final = "v1alpha1"
EXAMPLE: Final = ROOT / "examples" / "correlationpolicy-latency-canary.yaml"
TABLE: Final = "application/json;as=Table;g=meta.k8s.io;v=v1"
DELETE: Final = object()
NOW: Final = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def example_policy() -> dict[str, Any]:
    """The example CorrelationPolicy, as a dict."""
    loaded: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    return loaded


def changed(spec: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``spec`` with each dotted path (list indices as numbers) set, or removed if DELETE."""
    out = copy.deepcopy(spec)
    for path, value in changes.items():
        *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
        node: Any = out  # dicts and lists along the path
        for part in parents:
            node = node[part]
        if value is DELETE:
            del node[last]
        else:
            node[last] = value
    return out


def custom(api: client.ApiClient) -> client.CustomObjectsApi:
    """The custom-objects API over ``api``."""
    return client.CustomObjectsApi(api)


def create(api: client.ApiClient, namespace: str, plural: str, body: dict[str, Any]) -> dict[str, Any]:
    body = {**body, "metadata": {**body.get("metadata", {}), "namespace": namespace}}
    created: dict[str, Any] = custom(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, plural, body
    )
    return created


def rejection(call: Any) -> tuple[int, str]:
    """Run ``call``; it must fail: return the HTTP status and the API server's message."""
    with pytest.raises(ApiException) as raised:
        call()
    return raised.value.status, json.loads(raised.value.body)["message"]


def k8s_path(loc: tuple[str | int, ...]) -> str:
    """A pydantic error location as the API server writes a field path: spec.metrics[0].weight."""
    out = "spec"
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


_FIELD_ERROR: Final = re.compile(
    r"\b((?:spec|status)(?:\.\w+|\[\d+\])*): "
    r"(?:Invalid value|Unsupported value|Required value|Too many|Duplicate value|Forbidden)"
)


def reported_paths(message: str) -> set[str]:
    """The field paths an API server's validation message names (one error each)."""
    return set(_FIELD_ERROR.findall(message))


def table(api: client.ApiClient, path: str) -> dict[str, Any]:
    """GET ``path`` as a meta.k8s.io/v1 Table: what ``kubectl get`` prints."""
    result: dict[str, Any] = api.call_api(
        path,
        "GET",
        header_params={"Accept": TABLE},
        response_type="object",
        auth_settings=["BearerToken"],
        _return_http_data_only=True,
    )
    return result


def _metrics(n: int) -> list[dict[str, Any]]:
    return [{"name": f"m{i}", "query": "up", "role": "slo" if i == 0 else "signal"} for i in range(n)]


# --- (a) the models and crds/ agree ----------------------------------------------------------------------


def test_crds_and_docs_are_what_the_models_generate() -> None:
    assert stale_files(ROOT) == {}, "run `python -m ajan.models.crd --write`"
    assert main(["--check", "--root", str(ROOT)]) == 0


def test_check_reports_a_stale_crd(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_files(tmp_path)
    assert main(["--check", "--root", str(tmp_path)]) == 0
    crd = tmp_path / CORRELATION_POLICY.path
    crd.write_text(crd.read_text().replace("maxItems: 50", "maxItems: 51"))
    (tmp_path / "docs" / "crds.md").unlink()
    assert set(stale_files(tmp_path)) == {CORRELATION_POLICY.path, Path("docs/crds.md")}
    assert main(["--check", "--root", str(tmp_path)]) == 1
    assert "-                maxItems: 51\n+                maxItems: 50" in capsys.readouterr().out


def test_crds_are_structural_and_named(crds: dict[str, dict[str, Any]]) -> None:
    for resource in RESOURCES:
        crd = crds[resource.kind]
        conditions = {c["type"]: c for c in crd["status"]["conditions"]}
        # A non-structural schema is served but flagged with this condition (and no pruning).
        assert "NonStructuralSchema" not in conditions
        assert conditions["Established"]["status"] == "True"
        assert conditions["NamesAccepted"]["status"] == "True"
        names = crd["status"]["acceptedNames"]
        assert names["shortNames"] == [resource.short_name]
        assert names["categories"] == ["ajan"]
        version = crd["spec"]["versions"][0]
        assert version["subresources"] == {"status": {}}
        # Descriptions survive to the server, for `kubectl explain`.
        assert version["schema"]["openAPIV3Schema"]["properties"]["spec"]["description"]
    assert crds["CorrelationPolicy"]["status"]["acceptedNames"]["shortNames"] == ["cpol"]
    assert crds["RemediationPlan"]["status"]["acceptedNames"]["shortNames"] == ["rplan"]


# --- (b) the example policy --------------------------------------------------------------------------------


def test_example_policy_is_accepted_defaulted_like_the_model_and_round_trips(
    admin_api: client.ApiClient, namespace: str
) -> None:
    example = example_policy()
    created = create(admin_api, namespace, "correlationpolicies", example)
    # The server's defaults are the model's: the stored spec is exactly what the model builds.
    assert created["spec"] == CorrelationPolicySpec.model_validate(example["spec"]).to_kube()
    assert created["spec"]["anomaly"]["threshold"] == 0.5  # a default the example leaves out

    policy = CorrelationPolicy.model_validate(created)
    assert policy.spec.target_ref.name == "checkout"
    names = [m.name for m in policy.spec.metrics]
    assert names == ["request-rate", "latency-p99", "error-ratio", "cpu", "memory"]

    status = CorrelationPolicyStatus(
        conditions=[
            Condition(
                type="Ready",
                status=ConditionStatus.TRUE,
                reason="Evaluated",
                message="5 metrics",
                last_transition_time=NOW,
                observed_generation=1,
            ),
            Condition(
                type="Degraded", status=ConditionStatus.FALSE, reason="AsExpected", last_transition_time=NOW
            ),
        ],
        observed_generation=1,
        last_evaluation_time=NOW,
        anomaly_score=0.42,
        top_correlations=[Correlation(leader="memory", follower="latency-p99", r=0.93, lag_seconds=420.0)],
        last_plan="checkout-latency-1",
    )
    patched = custom(admin_api).patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, "correlationpolicies", "checkout-latency", {"status": status.to_kube()}
    )
    assert CorrelationPolicy.model_validate(patched).status == status


def test_defaults_fill_an_omitted_section(admin_api: client.ApiClient, namespace: str) -> None:
    minimal = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "CorrelationPolicy",
        "metadata": {"name": "minimal"},
        "spec": {
            "targetRef": {"name": "checkout"},
            "metrics": [{"name": "p99", "query": "up", "role": "slo"}],
        },
    }
    created = create(admin_api, namespace, "correlationpolicies", minimal)
    assert created["spec"] == CorrelationPolicySpec.model_validate(minimal["spec"]).to_kube()
    assert created["spec"]["remediation"]["mode"] == "dry-run"
    assert [s["action"] for s in created["spec"]["remediation"]["ladder"]] == ["abort", "pause", "annotate"]
    assert created["spec"]["targetRef"]["kind"] == "Rollout"


# --- (c) invalid policies: the API server and the models refuse them alike -------------------------------


@dataclass(frozen=True)
class Invalid:
    """One way to break the example policy, and what each side must say about it."""

    id: str
    change: dict[str, Any]
    path: str  # the field named by both, as the API server writes it
    api: tuple[str, ...]  # fragments of the API server's message
    model: str  # fragment of the model's message at ``path``


INVALID_POLICIES: Final = [
    Invalid(
        "missing-targetRef",
        {"targetRef": DELETE},
        "spec.targetRef",
        ("spec.targetRef: Required value",),
        "Field required",
    ),
    Invalid(
        "unknown-mode",
        {"remediation.mode": "yolo"},
        "spec.remediation.mode",
        ('spec.remediation.mode: Unsupported value: "yolo": supported values: "auto", "approve", "dry-run"',),
        "Input should be 'auto', 'approve' or 'dry-run'",
    ),
    Invalid(
        "weight-too-high",
        {"metrics.1.weight": 11},
        "spec.metrics[1].weight",
        (
            "spec.metrics[1].weight: Invalid value: 11: "
            "spec.metrics[1].weight in body should be less than or equal to 10",
        ),
        "Input should be less than or equal to 10",
    ),
    Invalid(
        "weight-zero",
        {"metrics.1.weight": 0},
        "spec.metrics[1].weight",
        (
            "spec.metrics[1].weight: Invalid value: 0: "
            "spec.metrics[1].weight in body should be greater than 0",
        ),
        "Input should be greater than 0",
    ),
    Invalid(
        "bad-duration",
        {"interval": "1 minute"},
        "spec.interval",
        (
            'spec.interval: Invalid value: "1 minute": spec.interval in body should match '
            "'^([0-9]+(ms|s|m|h))+$'",
        ),
        "String should match pattern '^([0-9]+(ms|s|m|h))+$'",
    ),
    Invalid(
        "zero-duration",
        {"step": "0s"},
        "spec.step",
        ('spec.step: Invalid value: "string": must be longer than 0s',),
        "must be longer than 0s",
    ),
    Invalid(
        "empty-query",
        {"metrics.0.query": ""},
        "spec.metrics[0].query",
        (
            'spec.metrics[0].query: Invalid value: "": spec.metrics[0].query in body should be at least 1 '
            "chars long",
        ),
        "String should have at least 1 character",
    ),
    Invalid(
        "duplicate-metric-names",
        {"metrics.2.name": "latency-p99"},
        "spec.metrics",
        (
            'spec.metrics[2]: Duplicate value: {"name":"latency-p99"}',
            'spec.metrics: Invalid value: "array": metric names must be unique',
        ),
        'metric names must be unique: "latency-p99" is used more than once',
    ),
    Invalid(
        "no-slo-metric",
        {
            "metrics.1.role": "signal",
            "metrics.2.role": "signal",
            "metrics.1.threshold": DELETE,
            "metrics.2.threshold": DELETE,
        },
        "spec.metrics",
        ('spec.metrics: Invalid value: "array": at least one metric must have role slo',),
        "at least one metric must have role slo",
    ),
    Invalid(
        "ladder-confidence-above-1",
        {"remediation.ladder.0.minConfidence": 1.5},
        "spec.remediation.ladder[0].minConfidence",
        (
            "spec.remediation.ladder[0].minConfidence: Invalid value: 1.5: "
            "spec.remediation.ladder[0].minConfidence in body should be less than or equal to 1",
        ),
        "Input should be less than or equal to 1",
    ),
    Invalid(
        "too-many-metrics",
        {"metrics": _metrics(51)},
        "spec.metrics",
        ("spec.metrics: Too many: 51: must have at most 50 items",),
        "List should have at most 50 items after validation, not 51",
    ),
    Invalid(
        "ladder-not-sorted",
        {"remediation.ladder.2.minConfidence": 0.95},
        "spec.remediation.ladder",
        (
            'spec.remediation.ladder: Invalid value: "array": ladder steps must be sorted by minConfidence, '
            "highest first",
        ),
        "ladder steps must be sorted by minConfidence, highest first",
    ),
    Invalid(
        "auto-mode-without-ladder",
        {"remediation.mode": "auto", "remediation.ladder": []},
        "spec.remediation",
        ('spec.remediation: Invalid value: "object": mode auto needs at least one ladder step',),
        "mode auto needs at least one ladder step",
    ),
    Invalid(
        "sensitivity-and-zHalf",
        {"anomaly.zHalf": 6.0},
        "spec.anomaly",
        ('spec.anomaly: Invalid value: "object": set either sensitivity or zHalf, not both',),
        "set either sensitivity or zHalf, not both",
    ),
    Invalid(
        "step-not-shorter-than-window",
        {"step": "2h"},
        "spec",
        ('spec: Invalid value: "object": step must be shorter than window',),
        "step must be shorter than window",
    ),
    Invalid(
        "metric-name-not-a-label",
        {"metrics.0.name": "Request_Rate"},
        "spec.metrics[0].name",
        (
            'spec.metrics[0].name: Invalid value: "Request_Rate": '
            "spec.metrics[0].name in body should match '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'",
        ),
        "String should match pattern",
    ),
    Invalid(
        "threshold-on-a-signal",
        {"metrics.0.threshold": 100.0},
        "spec.metrics[0]",
        ('spec.metrics[0]: Invalid value: "object": threshold is an SLO\'s bound: it needs role slo',),
        "threshold is an SLO's bound: it needs role slo",
    ),
    Invalid(
        "threshold-of-a-two-sided-metric",
        {"metrics.1.objective": "both"},
        "spec.metrics[1]",
        (
            'spec.metrics[1]: Invalid value: "object": threshold needs objective max (stay below it) or min '
            "(stay above it), not both",
        ),
        "threshold needs objective max (stay below it) or min (stay above it), not both",
    ),
    Invalid(
        "target-not-a-rollout",
        {"targetRef.kind": "Deployment"},
        "spec.targetRef.kind",
        ('spec.targetRef.kind: Unsupported value: "Deployment": supported values: "Rollout"',),
        "Input should be 'Rollout'",
    ),
]


@pytest.mark.parametrize("case", INVALID_POLICIES, ids=lambda c: c.id)
def test_api_server_rejects_invalid_policy(
    case: Invalid, admin_api: client.ApiClient, namespace: str
) -> None:
    policy = example_policy()
    policy["spec"] = changed(policy["spec"], case.change)
    status, message = rejection(lambda: create(admin_api, namespace, "correlationpolicies", policy))
    assert status == 422
    assert message.startswith('CorrelationPolicy.aiops.ajan.dev "checkout-latency" is invalid: ')
    for fragment in case.api:
        assert fragment in message
    # Exactly the expected fields are named: one problem, one report (two for a duplicate name: the
    # list-map key and the rule). The server's own note that CEL rules were skipped is not a field.
    assert reported_paths(message) == {fragment.split(":")[0] for fragment in case.api}


@pytest.mark.parametrize("case", INVALID_POLICIES, ids=lambda c: c.id)
def test_models_reject_invalid_policy(case: Invalid) -> None:
    spec = changed(example_policy()["spec"], case.change)
    with pytest.raises(ValidationError) as raised:
        CorrelationPolicySpec.model_validate(spec)
    errors = {k8s_path(e["loc"]): e["msg"] for e in raised.value.errors()}
    assert set(errors) == {case.path}, errors  # the field the API server names, and only it
    assert case.model in errors[case.path]


def test_example_itself_is_valid_for_the_models() -> None:
    # The control case of the two tests above: the unchanged example passes both.
    spec = CorrelationPolicySpec.model_validate(example_policy()["spec"])
    assert spec.remediation.mode == "approve"


# --- (d) RemediationPlan ---------------------------------------------------------------------------------


def plan_spec() -> RemediationPlanSpec:
    return RemediationPlanSpec(
        policy_ref=PolicyRef(name="checkout-latency"),
        target_ref=TargetRef(name="checkout"),
        action=Action.PAUSE,
        severity=Severity.WARNING,
        confidence=0.82,
        evidence=Evidence(
            anomalies=[
                Anomaly(
                    metric="memory",
                    value=1.9e9,
                    baseline=1.1e9,
                    z_score=7.5,
                    p95=1.8e9,
                    p99=1.85e9,
                    since=NOW,
                )
            ],
            correlations=[Correlation(leader="memory", follower="latency-p99", r=0.91, lag_seconds=300.0)],
            predicted_impact=[
                PredictedImpact(
                    metric="latency-p99",
                    expected_z=4.1,
                    low_z=2.5,
                    high_z=5.9,
                    lag_seconds=300.0,
                    breach_probability=0.77,
                )
            ],
            drift=[Drift(metric="memory", psi=0.31, ks_p_value=0.0004)],
            probability_real=0.28,
        ),
    )


def plan_body(name: str = "checkout-latency-1", spec: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RemediationPlan",
        "metadata": {"name": name},
        "spec": spec if spec is not None else plan_spec().to_kube(),
    }


def test_valid_plan_is_accepted_and_round_trips(admin_api: client.ApiClient, namespace: str) -> None:
    created = create(admin_api, namespace, "remediationplans", plan_body())
    assert RemediationPlan.model_validate(created).spec == plan_spec()

    status = RemediationPlanStatus(
        phase=PlanPhase.EXECUTED,
        proposed_at=NOW,
        executed_at=NOW,
        dry_run_patch='{"spec":{"paused":true}}',
        observed_generation=1,
    )
    patched = custom(admin_api).patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, "remediationplans", "checkout-latency-1", {"status": status.to_kube()}
    )
    assert RemediationPlan.model_validate(patched).status == status


def test_invalid_phase_is_rejected_through_the_status_subresource(
    admin_api: client.ApiClient, namespace: str
) -> None:
    create(admin_api, namespace, "remediationplans", plan_body())
    status, message = rejection(
        lambda: custom(admin_api).patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, "remediationplans", "checkout-latency-1", {"status": {"phase": "Done"}}
        )
    )
    assert status == 422
    assert (
        'status.phase: Unsupported value: "Done": supported values: "Proposed", "Approved", "Executing", '
        '"Executed", "DryRun", "Rejected", "Expired", "Failed", "Superseded", "Resolved"'
    ) in message
    with pytest.raises(ValidationError, match="Input should be 'Proposed'"):
        RemediationPlanStatus.model_validate({"phase": "Done"})


@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r.kind)
def test_status_is_a_subresource(resource: Any, admin_api: client.ApiClient, namespace: str) -> None:
    body = plan_body() if resource is REMEDIATION_PLAN else example_policy()
    body["status"] = {"observedGeneration": 7}
    created = create(admin_api, namespace, resource.plural, body)
    # With the status subresource, the main endpoint ignores status: only /status writes it.
    assert "status" not in created


INVALID_PLANS: Final = [
    Invalid(
        "unknown-action",
        {"action": "delete"},
        "spec.action",
        (
            'spec.action: Unsupported value: "delete": '
            'supported values: "none", "annotate", "pause", "abort", "rollback"',
        ),
        "Input should be 'none', 'annotate', 'pause', 'abort' or 'rollback'",
    ),
    Invalid(
        "confidence-above-1",
        {"confidence": 1.2},
        "spec.confidence",
        ("spec.confidence: Invalid value: 1.2: spec.confidence in body should be less than or equal to 1",),
        "Input should be less than or equal to 1",
    ),
    Invalid(
        "expected-outside-interval",
        {"evidence.predictedImpact.0.expectedZ": 9.0},
        "spec.evidence.predictedImpact[0]",
        (
            'spec.evidence.predictedImpact[0]: Invalid value: "object": expectedZ must lie between lowZ and '
            "highZ",
        ),
        "expectedZ must lie between lowZ and highZ",
    ),
    Invalid(
        "approval-without-approver",
        {"approval": {"approved": True}},
        "spec.approval.by",
        ("spec.approval.by: Required value",),
        "Field required",
    ),
]


@pytest.mark.parametrize("case", INVALID_PLANS, ids=lambda c: c.id)
def test_invalid_plan_is_rejected_by_both(case: Invalid, admin_api: client.ApiClient, namespace: str) -> None:
    spec = changed(plan_spec().to_kube(), case.change)
    body = plan_body(spec=spec)
    status, message = rejection(lambda: create(admin_api, namespace, "remediationplans", body))
    assert status == 422
    for fragment in case.api:
        assert fragment in message
    with pytest.raises(ValidationError) as raised:
        RemediationPlanSpec.model_validate(spec)
    errors = {k8s_path(e["loc"]): e["msg"] for e in raised.value.errors()}
    assert case.model in errors[case.path]


def test_proposal_is_immutable_but_approval_is_not(admin_api: client.ApiClient, namespace: str) -> None:
    create(
        admin_api, namespace, "remediationplans", plan_body(spec={**plan_spec().to_kube(), "mode": "approve"})
    )
    api = custom(admin_api)
    status, message = rejection(
        lambda: api.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            "remediationplans",
            "checkout-latency-1",
            {"spec": {"action": "rollback", "confidence": 0.99}},
        )
    )
    assert status == 422
    assert 'spec.action: Invalid value: "string": action is immutable' in message
    assert 'spec.confidence: Invalid value: "number": confidence is immutable' in message
    approved = api.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "remediationplans",
        "checkout-latency-1",
        {"spec": {"approval": {"approved": True, "by": "oncall@example.com", "at": "2026-01-02T03:05:00Z"}}},
    )
    assert RemediationPlan.model_validate(approved).spec.approval is not None
    assert approved["spec"]["action"] == "pause"


def _approve(api: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any]:
    approved: dict[str, Any] = api.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "remediationplans", name,
        {"spec": {"approval": {"approved": True, "by": "oncall@example.com"}}},
    )  # fmt: skip
    return approved


@pytest.mark.parametrize(
    ("mode", "phase", "accepted"),
    [
        ("approve", None, True),
        ("approve", "Proposed", True),
        ("approve", "Superseded", False),
        ("approve", "Resolved", False),
        ("approve", "Expired", False),
        ("auto", "Proposed", False),
        ("dry-run", "DryRun", False),
    ],
)
def test_an_approval_is_refused_unless_the_plan_waits_for_one(
    mode: str, phase: str | None, accepted: bool, admin_api: client.ApiClient, namespace: str
) -> None:
    """Approving a plan that no longer waits (issue 13: a Superseded plan's approval was accepted
    and ignored) is refused by the API server, saying why; the operator's own status writes on an
    approved plan still pass."""
    api = custom(admin_api)
    create(admin_api, namespace, "remediationplans", plan_body(spec={**plan_spec().to_kube(), "mode": mode}))
    if phase is not None:
        api.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, "remediationplans", "checkout-latency-1", {"status": {"phase": phase}}
        )
    if accepted:
        assert _approve(api, namespace, "checkout-latency-1")["spec"]["approval"]["approved"] is True
        moved = api.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            namespace,
            "remediationplans",
            "checkout-latency-1",
            {"status": {"phase": "Approved"}},
        )
        assert moved["status"]["phase"] == "Approved"
        return
    status, message = rejection(lambda: _approve(api, namespace, "checkout-latency-1"))
    assert status == 422
    assert (
        "spec.approval: Forbidden: spec.approval can be given or changed only while the plan waits" in message
    )
    assert f"this plan is in mode {mode}, phase {phase or '(none yet)'}" in message


# --- printer columns -------------------------------------------------------------------------------------


def _columns(result: dict[str, Any]) -> list[tuple[str, int]]:
    return [(c["name"], c.get("priority", 0)) for c in result["columnDefinitions"]]


def test_plan_columns(admin_api: client.ApiClient, namespace: str) -> None:
    create(admin_api, namespace, "remediationplans", plan_body())
    custom(admin_api).patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, "remediationplans", "checkout-latency-1", {"status": {"phase": "Proposed"}}
    )
    result = table(admin_api, f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/remediationplans")
    assert result["kind"] == "Table"
    assert _columns(result) == [
        ("Name", 0),
        ("Target", 0),
        ("Action", 0),
        ("Severity", 0),
        ("Confidence", 0),
        ("Phase", 0),
        ("Age", 0),
        ("Policy", 1),
        ("ProbabilityReal", 1),
        ("Mode", 1),
        ("Approved", 1),
        ("Verdict", 1),
        ("Executed", 1),
        ("Deleting", 1),
    ]
    [row] = result["rows"]
    name, target, action, severity, confidence, phase, age, *wide = row["cells"]
    assert (name, target, action, severity, confidence, phase) == (
        "checkout-latency-1",
        "checkout",
        "pause",
        "warning",
        0.82,
        "Proposed",
    )
    assert re.fullmatch(r"\d+s", age)
    assert wide[:-1] == ["checkout-latency", 0.28, "dry-run", None, None, None]


def test_policy_columns(admin_api: client.ApiClient, namespace: str) -> None:
    create(admin_api, namespace, "correlationpolicies", example_policy())
    status = CorrelationPolicyStatus(
        conditions=[
            Condition(type="Ready", status=ConditionStatus.TRUE, reason="Evaluated", last_transition_time=NOW)
        ],
        anomaly_score=0.42,
        last_evaluation_time=datetime.now(UTC),
        last_plan="checkout-latency-1",
    )
    custom(admin_api).patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, "correlationpolicies", "checkout-latency", {"status": status.to_kube()}
    )
    result = table(admin_api, f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/correlationpolicies")
    assert _columns(result) == [
        ("Name", 0),
        ("Target", 0),
        ("Mode", 0),
        ("Score", 0),
        ("Ready", 0),
        ("Age", 0),
        ("Reason", 1),
        ("Last Plan", 1),
        ("Evaluated", 1),
        ("Deleting", 1),
    ]
    [row] = result["rows"]
    name, target, mode, score, ready, age, reason, last_plan, evaluated, deleting = row["cells"]
    assert deleting is None  # set once deletion is asked for: the policy waits for ajan's finalizer
    assert (name, target, mode, score, ready, reason, last_plan) == (
        "checkout-latency",
        "checkout",
        "approve",
        0.42,
        "True",
        "Evaluated",
        "checkout-latency-1",
    )
    assert re.fullmatch(r"\d+s", age) and re.fullmatch(r"\d+s", evaluated)


# --- (e) RBAC --------------------------------------------------------------------------------------------


def test_restricted_identity_cannot_create_a_policy(
    restricted_api: client.ApiClient, admin_api: client.ApiClient, namespace: str
) -> None:
    policy = example_policy()
    status, message = rejection(lambda: create(restricted_api, namespace, "correlationpolicies", policy))
    assert status == 403
    assert (
        f'correlationpolicies.aiops.ajan.dev is forbidden: User "ajan-restricted" cannot create resource '
        f'"correlationpolicies" in API group "aiops.ajan.dev" in the namespace "{namespace}"'
    ) in message
    # The same body is fine for the admin: the refusal is about who, not what.
    assert create(admin_api, namespace, "correlationpolicies", example_policy())["metadata"]["uid"]
