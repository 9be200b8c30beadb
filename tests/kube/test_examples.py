"""The policies in examples/ (README's first policy and docs/cookbook.md) are ones users can apply.

Each one is valid for ajan's models and accepted by the real kube-apiserver under ajan's CRD
(a server-side dry-run create in the test's namespace: the examples' own `shop` need not exist).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import pytest
import yaml
from kubernetes import client

from ajan.models import GROUP, VERSION
from ajan.models.policy import CorrelationPolicySpec

REPO: Final = Path(__file__).resolve().parents[2]
EXAMPLES: Final = sorted((REPO / "examples").rglob("*.yaml"))


def policies(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") == "CorrelationPolicy"]


def test_the_cookbook_has_its_examples() -> None:
    names = {path.relative_to(REPO).as_posix() for path in EXAMPLES}
    cookbook = (REPO / "docs" / "cookbook.md").read_text()
    for path in names:
        assert path in cookbook or path == "examples/correlationpolicy-latency-canary.yaml", path
    assert all(policies(path) for path in EXAMPLES), "an example without a CorrelationPolicy"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_an_example_is_accepted_by_the_models_and_the_api_server(
    path: Path, admin_api: client.ApiClient, namespace: str
) -> None:
    custom = client.CustomObjectsApi(admin_api)
    for body in policies(path):
        CorrelationPolicySpec.model_validate(body["spec"])
        body["metadata"]["namespace"] = namespace
        created = custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, "correlationpolicies", body, dry_run="All"
        )
        # Defaults filled by the CRD's schema, as a user's kubectl get would show them.
        assert created["spec"]["remediation"]["mode"] in {"auto", "approve", "dry-run"}
        assert [m["name"] for m in created["spec"]["metrics"]] == [m["name"] for m in body["spec"]["metrics"]]
