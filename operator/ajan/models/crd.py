"""The CRDs of ajan's resources, generated from the pydantic models, and their reference doc.

``python -m ajan.models.crd`` prints both CRD manifests; ``--write`` writes them to ``crds/`` (and a
copy to ``manifests/crds/``) and the reference to ``docs/crds.md``; ``--check`` exits 1, with a
diff, when any of those files differs from what the models give (``hack/verify-crds.sh``, and a
test); ``--docs`` writes only the doc.

Pydantic's JSON schema is not a Kubernetes *structural* schema, so :func:`structural_schema`
rewrites it: ``$ref``/``$defs`` are inlined, ``anyOf [X, null]`` of an optional field becomes X (an
absent field, not a null one: ``nullable`` only where a field is required yet may be null),
``const`` becomes a one-value ``enum``, draft 2020 numeric ``exclusiveMinimum: 0`` becomes
OpenAPI 3.0's ``minimum: 0, exclusiveMinimum: true``, and ``title`` and ``additionalProperties:
false`` go (structural schemas forbid the latter; the API server prunes unknown fields instead).
Anything else it does not know is an error, so a model change that Kubernetes cannot express fails
here rather than at ``kubectl apply``.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml
from pydantic import BaseModel

from ajan.models.common import GROUP, VALIDATIONS_KEY, VERSION
from ajan.models.plan import RemediationPlanSpec, RemediationPlanStatus
from ajan.models.policy import CorrelationPolicySpec, CorrelationPolicyStatus


class CrdError(ValueError):
    """A model's JSON schema has something a structural schema cannot say."""


# Keys a structural schema node may carry, in the order they are written (for readable YAML).
_KEY_ORDER: Final = (
    "description",
    "type",
    "format",
    "enum",
    "default",
    "nullable",
    "minimum",
    "exclusiveMinimum",
    "maximum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "items",
    "properties",
    "required",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    VALIDATIONS_KEY,
)
_RULE_KEY_ORDER: Final = ("rule", "message", "messageExpression", "reason", "fieldPath")
_DROPPED: Final = ("title", "examples")
_MISSING: Final = object()


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` on top; validation rules of both are kept."""
    out = dict(base)
    for key, value in overrides.items():
        if key == VALIDATIONS_KEY:
            out[key] = [*out.get(key, []), *value]
        else:
            out[key] = value
    return out


def _structural(node: dict[str, Any], defs: dict[str, Any], path: str) -> dict[str, Any]:
    node = {k: v for k, v in node.items() if k not in _DROPPED}
    if node.get("additionalProperties") is False:
        del node["additionalProperties"]

    ref = node.pop("$ref", None)
    if ref is None and len(node.get("allOf", ())) == 1:  # older pydantic wraps a $ref with siblings
        ref = node.pop("allOf")[0]["$ref"]
    if ref is not None:
        name = ref.rsplit("/", 1)[-1]
        node = _merge(_structural(defs[name], defs, path), node)

    options = node.pop("anyOf", None)
    if options is not None:
        non_null = [o for o in options if o.get("type") != "null"]
        if len(non_null) != 1:
            raise CrdError(f"{path}: a union of {len(non_null)} types has no structural schema")
        default = node.get("default", _MISSING)
        node = _merge(_structural(non_null[0], defs, path), node)
        if len(non_null) < len(options):
            if default is None:
                # Optional: the field is left out rather than sent as null (to_kube drops None).
                del node["default"]
            else:
                node["nullable"] = True

    if "const" in node:
        node["enum"] = [node.pop("const")]
    for exclusive, inclusive in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if exclusive in node and not isinstance(node[exclusive], bool):
            node[inclusive] = node.pop(exclusive)
            node[exclusive] = True
    if "description" in node:
        node["description"] = " ".join(node["description"].split())
    if VALIDATIONS_KEY in node:
        node[VALIDATIONS_KEY] = [
            {key: rule[key] for key in _RULE_KEY_ORDER if key in rule} for rule in node[VALIDATIONS_KEY]
        ]
    if "properties" in node:
        node["properties"] = {
            name: _structural(sub, defs, f"{path}.{name}") for name, sub in node["properties"].items()
        }
    if "items" in node:
        node["items"] = _structural(node["items"], defs, f"{path}[]")

    unknown = set(node) - set(_KEY_ORDER)
    if unknown:
        raise CrdError(f"{path}: {sorted(unknown)} not supported in a structural schema")
    if "type" not in node:
        raise CrdError(f"{path}: no type (structural schemas need one on every node)")
    return {key: node[key] for key in _KEY_ORDER if key in node}


def structural_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The Kubernetes structural schema of ``model``: inlined, OpenAPI 3.0, CEL rules kept.

    Parameters
    ----------
    model : type[pydantic.BaseModel]
        A spec or status model.

    Returns
    -------
    dict
        An ``openAPIV3Schema`` node of type object.

    Raises
    ------
    CrdError
        If the model uses something a structural schema cannot express (a union, a tuple).
    """
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    return _structural(raw, defs, model.__name__)


@dataclass(frozen=True)
class PrinterColumn:
    """A ``kubectl get`` column; ``priority=1`` shows only with ``-o wide``."""

    name: str
    type: str
    json_path: str
    description: str
    priority: int = 0

    def manifest(self) -> dict[str, Any]:
        """The ``additionalPrinterColumns`` entry."""
        out: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "jsonPath": self.json_path,
            "description": self.description,
        }
        if self.priority:
            out["priority"] = self.priority
        return out


_AGE: Final = PrinterColumn("Age", "date", ".metadata.creationTimestamp", "Time since creation.")
_DELETING: Final = PrinterColumn(
    "Deleting",
    "date",
    ".metadata.deletionTimestamp",
    "Time since deletion was asked for: the object waits for ajan's finalizer (docs/operator.md).",
    1,
)


@dataclass(frozen=True)
class TransitionRule:
    """A CEL rule on the whole object (``x-kubernetes-validations`` at its root) that compares it
    with its previous version: what a change may do given the object's state, which no model of the
    spec alone can check. The operator never writes what it refuses; a person's ``kubectl patch``
    gets the message, computed by ``message_expression``."""

    cel: str
    message_expression: str
    field_path: str
    doc: str
    """What the rule says, for docs/crds.md."""

    def manifest(self) -> dict[str, str]:
        """The ``x-kubernetes-validations`` entry."""
        return {
            "rule": self.cel,
            "messageExpression": self.message_expression,
            "reason": "FieldValueForbidden",
            "fieldPath": self.field_path,
        }


@dataclass(frozen=True)
class Resource:
    """One of ajan's custom resources: names, models and columns."""

    kind: str
    plural: str
    short_name: str
    description: str
    spec: type[BaseModel]
    status: type[BaseModel]
    columns: tuple[PrinterColumn, ...]
    transition_rules: tuple[TransitionRule, ...] = ()
    """CEL rules on the whole object that compare it with its previous version."""

    @property
    def crd_name(self) -> str:
        """``<plural>.<group>``."""
        return f"{self.plural}.{GROUP}"

    @property
    def path(self) -> Path:
        """Where the CRD is written, relative to the repository root (kubebuilder's naming)."""
        return Path("crds") / f"{GROUP}_{self.plural}.yaml"


CORRELATION_POLICY: Final = Resource(
    kind="CorrelationPolicy",
    plural="correlationpolicies",
    short_name="cpol",
    description=(
        "CorrelationPolicy watches an Argo Rollout's canary metrics in Prometheus, scores anomalies "
        "across them, learns which metrics lead which, and proposes or executes RemediationPlans "
        "before an SLO breaks."
    ),
    spec=CorrelationPolicySpec,
    status=CorrelationPolicyStatus,
    columns=(
        PrinterColumn("Target", "string", ".spec.targetRef.name", "The Argo Rollout watched."),
        PrinterColumn("Mode", "string", ".spec.remediation.mode", "Remediation mode."),
        PrinterColumn("Score", "number", ".status.anomalyScore", "Anomaly score of the last evaluation."),
        PrinterColumn(
            "Ready", "string", '.status.conditions[?(@.type=="Ready")].status', "Whether evaluation works."
        ),
        _AGE,
        PrinterColumn(
            "Reason", "string", '.status.conditions[?(@.type=="Ready")].reason', "Why (not) ready.", 1
        ),
        PrinterColumn("Last Plan", "string", ".status.lastPlan", "The last plan proposed.", 1),
        PrinterColumn(
            "Evaluated", "date", ".status.lastEvaluationTime", "Time since the last evaluation.", 1
        ),
        _DELETING,
    ),
)

REMEDIATION_PLAN: Final = Resource(
    kind="RemediationPlan",
    plural="remediationplans",
    short_name="rplan",
    description=(
        "RemediationPlan is one action ajan proposes on an Argo Rollout, with the evidence for it; "
        "owned by the CorrelationPolicy that proposed it. People approve it (spec.approval) and judge "
        "it (spec.feedback); the operator reports its phase."
    ),
    spec=RemediationPlanSpec,
    status=RemediationPlanStatus,
    columns=(
        PrinterColumn("Target", "string", ".spec.targetRef.name", "The Argo Rollout acted on."),
        PrinterColumn("Action", "string", ".spec.action", "The action proposed."),
        PrinterColumn("Severity", "string", ".spec.severity", "Severity."),
        PrinterColumn("Confidence", "number", ".spec.confidence", "Confidence in the predicted breach."),
        PrinterColumn("Phase", "string", ".status.phase", "Where the plan is in its life cycle."),
        _AGE,
        PrinterColumn("Policy", "string", ".spec.policyRef.name", "The policy that proposed it.", 1),
        PrinterColumn(
            "ProbabilityReal",
            "number",
            ".spec.evidence.probabilityReal",
            "How often an incident opened at this confidence was real in ajan's replays of labelled data.",
            1,
        ),
        PrinterColumn("Mode", "string", ".spec.mode", "auto, approve or dry-run.", 1),
        PrinterColumn("Approved", "boolean", ".spec.approval.approved", "A person's decision.", 1),
        PrinterColumn("Verdict", "string", ".spec.feedback.verdict", "A person's verdict.", 1),
        PrinterColumn("Executed", "date", ".status.executedAt", "Time since the action.", 1),
        _DELETING,
    ),
    transition_rules=(
        # Approving a plan that no longer waits would be accepted and ignored: refuse it. An
        # unchanged approval passes, so the operator's own writes (status, finalizers) do too.
        TransitionRule(
            cel="(has(oldSelf.spec.approval) && has(self.spec.approval) "
            "&& oldSelf.spec.approval == self.spec.approval) || !has(self.spec.approval) "
            "|| (self.spec.mode == 'approve' && (!has(self.status) || !has(self.status.phase) "
            "|| self.status.phase == 'Proposed'))",
            message_expression="'spec.approval can be given or changed only while the plan waits for "
            "it (mode approve, phase Proposed); this plan is in mode ' + self.spec.mode + ', phase ' "
            "+ (has(self.status) && has(self.status.phase) ? self.status.phase : '(none yet)')",
            field_path=".spec.approval",
            doc="can be given or changed only while the plan waits for it (mode approve, phase "
            "Proposed): approving a Superseded, Resolved, Rejected or Expired plan is refused",
        ),
    ),
)

RESOURCES: Final = (CORRELATION_POLICY, REMEDIATION_PLAN)
DOCS_PATH: Final = Path("docs") / "crds.md"
_HEADER: Final = "# Generated by `python -m ajan.models.crd --write` from ajan.models: do not edit.\n"


def crd_manifest(resource: Resource) -> dict[str, Any]:
    """The ``CustomResourceDefinition`` of ``resource``, as a dict ready for YAML or the API."""
    schema: dict[str, Any] = {
        "description": resource.description,
        "type": "object",
        "properties": {
            "apiVersion": {"description": "Versioned schema of this object.", "type": "string"},
            "kind": {"description": "Kind of this object.", "type": "string"},
            "metadata": {"type": "object"},
            "spec": structural_schema(resource.spec),
            "status": structural_schema(resource.status),
        },
        "required": ["spec"],
    }
    if resource.transition_rules:
        schema[VALIDATIONS_KEY] = [rule.manifest() for rule in resource.transition_rules]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": resource.crd_name},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": resource.kind,
                "listKind": f"{resource.kind}List",
                "plural": resource.plural,
                "singular": resource.kind.lower(),
                "shortNames": [resource.short_name],
                "categories": ["ajan"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [c.manifest() for c in resource.columns],
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def crd_yaml(resource: Resource) -> str:
    """The CRD of ``resource`` as the YAML file in ``crds/``."""
    return _HEADER + yaml.safe_dump(crd_manifest(resource), sort_keys=False, width=100, allow_unicode=True)


# --- the reference doc --------------------------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _code(value: Any) -> str:
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if value == "":
        return '`""`'
    if isinstance(value, (dict, list)):
        return f"`{yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()}`"
    return f"`{value}`"


def _span(low: Any, high: Any, unit: str) -> str:
    if low:
        return f"{low}..{high} {unit}" if high is not None else f"≥ {low} {unit}"
    return f"≤ {high} {unit}"


def _type_name(node: dict[str, Any]) -> str:
    if node["type"] == "array":
        return f"[]{_type_name(node['items'])}"
    return str(node.get("format") or node["type"])


def _constraints(node: dict[str, Any], required: bool) -> str:
    parts = ["required"] if required else []
    if "enum" in node:
        parts.append(" | ".join(_code(v) for v in node["enum"]))
    low, high = node.get("minimum"), node.get("maximum")
    if low is not None or high is not None:
        left = "-∞" if low is None else f"{low:g}"
        right = "∞" if high is None else f"{high:g}"
        opening = "(" if low is None or node.get("exclusiveMinimum") else "["
        closing = ")" if high is None or node.get("exclusiveMaximum") else "]"
        parts.append(f"{opening}{left}, {right}{closing}")
    if "minLength" in node or "maxLength" in node:
        parts.append(_span(node.get("minLength"), node.get("maxLength"), "chars"))
    if "pattern" in node:
        parts.append(f"`{node['pattern']}`")
    if "minItems" in node or "maxItems" in node:
        parts.append(_span(node.get("minItems"), node.get("maxItems"), "items"))
    if node.get("x-kubernetes-list-type") == "map":
        parts.append(f"keyed by {', '.join(node['x-kubernetes-list-map-keys'])}")
    if any(rule["rule"] == "self == oldSelf" for rule in node.get(VALIDATIONS_KEY, ())):
        parts.append("immutable")
    return "; ".join(_cell(p) for p in parts)


def _fields(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any], bool]]:
    """(path, node, required) of every field under ``node``, depth first, in declaration order."""
    required = set(node.get("required", ()))
    for name, sub in node.get("properties", {}).items():
        sub_path = f"{path}.{name}"
        yield sub_path, sub, name in required
        target = sub["items"] if sub["type"] == "array" else sub
        yield from _fields(target, f"{sub_path}[]" if sub["type"] == "array" else sub_path)


def _rules(node: dict[str, Any], path: str) -> Iterator[tuple[str, str]]:
    for rule in node.get(VALIDATIONS_KEY, ()):
        if rule["rule"] != "self == oldSelf":
            yield path, rule["message"]
    for name, sub in node.get("properties", {}).items():
        yield from _rules(sub, f"{path}.{name}")
    if "items" in node:
        yield from _rules(node["items"], f"{path}[]")


def docs_markdown() -> str:
    """``docs/crds.md``: every field of both resources with type, constraints, default, description."""
    out = [
        "# ajan's resources",
        "",
        "<!-- Generated by `python -m ajan.models.crd --docs` from ajan.models: do not edit. -->",
        "",
        f"API group `{GROUP}`, version `{VERSION}`, both namespaced, category `ajan` "
        "(`kubectl get ajan`). The CRDs are in `crds/`; the same rules are enforced by the API server "
        "and by the operator's models (`ajan.models`). Durations are written like `30s`, `5m`, `1h30m` "
        "or `250ms`.",
    ]
    for resource in RESOURCES:
        manifest = crd_manifest(resource)
        version = manifest["spec"]["versions"][0]
        schema = version["schema"]["openAPIV3Schema"]
        out += [
            "",
            f"## {resource.kind}",
            "",
            f"`{resource.crd_name}`, short name `{resource.short_name}`. {resource.description}",
        ]
        for part in ("spec", "status"):
            out += [
                "",
                f"### {part}",
                "",
                "| field | type | constraints | default | description |",
                "|---|---|---|---|---|",
            ]
            for path, node, required in _fields(schema["properties"][part], part):
                default = _code(node["default"]) if "default" in node else ""
                out.append(
                    f"| `{path}` | {_cell(_type_name(node))} | {_constraints(node, required)} "
                    f"| {_cell(default)} | {_cell(node.get('description', ''))} |"
                )
        rules = list(_rules(schema["properties"]["spec"], "spec"))
        rules += [(rule.field_path.lstrip("."), rule.doc) for rule in resource.transition_rules]
        if rules:
            out += ["", "Rules (CEL, checked by the API server and by the models):", ""]
            out += [f"- `{path}`: {message}" for path, message in rules]
        out += ["", "`kubectl get` columns (priority 1: only with `-o wide`):", ""]
        out += ["| column | priority | from |", "|---|---|---|"]
        out += [f"| {c.name} | {c.priority} | `{_cell(c.json_path)}` |" for c in resource.columns]
    return "\n".join(out) + "\n"


# --- files ---------------------------------------------------------------------------------------------


MANIFESTS_CRDS: Final = Path("manifests") / "crds"


def generated_files() -> dict[Path, str]:
    """Every generated file (path relative to the repository root) and its expected content."""
    files = {resource.path: crd_yaml(resource) for resource in RESOURCES}
    # A copy inside manifests/: kustomize loads no file from outside its directory.
    files.update({MANIFESTS_CRDS / resource.path.name: crd_yaml(resource) for resource in RESOURCES})
    files[DOCS_PATH] = docs_markdown()
    return files


def stale_files(root: Path) -> dict[Path, str]:
    """The generated files under ``root`` that differ from the models, each with a unified diff."""
    stale = {}
    for path, want in generated_files().items():
        file = root / path
        have = file.read_text() if file.exists() else ""
        if have != want:
            diff = difflib.unified_diff(
                have.splitlines(keepends=True),
                want.splitlines(keepends=True),
                f"{path} (on disk)",
                f"{path} (from the models)",
            )
            stale[path] = "".join(diff)
    return stale


def write_files(root: Path, paths: Sequence[Path] | None = None) -> list[Path]:
    """Write the generated files (all, or those in ``paths``) under ``root``; return what changed."""
    written = []
    for path, text in generated_files().items():
        if paths is not None and path not in paths:
            continue
        file = root / path
        if not file.exists() or file.read_text() != text:
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_text(text)
            written.append(path)
    return written


def _default_root() -> Path:
    # The source checkout this module lives in (operator/ajan/models/crd.py), else the current dir.
    checkout = Path(__file__).resolve().parents[3]
    return checkout if (checkout / "pyproject.toml").exists() else Path.cwd()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m ajan.models.crd``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m ajan.models.crd", description=__doc__.split("\n\n")[0])
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", action="store_true", help="write crds/ and docs/crds.md")
    action.add_argument("--check", action="store_true", help="exit 1 if crds/ or docs/crds.md is stale")
    action.add_argument("--docs", action="store_true", help="write docs/crds.md only")
    parser.add_argument("--root", type=Path, default=None, help="repository root (default: this checkout)")
    args = parser.parse_args(argv)
    root = args.root or _default_root()

    if args.check:
        stale = stale_files(root)
        for diff in stale.values():
            sys.stdout.write(diff)
        if stale:
            names = ", ".join(str(p) for p in stale)
            print(f"stale: {names}; run `python -m ajan.models.crd --write`", file=sys.stderr)
            return 1
        return 0
    if args.write or args.docs:
        for path in write_files(root, [DOCS_PATH] if args.docs else None):
            print(f"wrote {path}", file=sys.stderr)
        return 0
    sys.stdout.write("---\n".join(crd_yaml(resource) for resource in RESOURCES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
