"""manifests/' role grants exactly what ajan uses: read from the API servers' audit logs.

Every control plane of the session logs each request of the restricted identity (hack/kube-up.sh's
audit policy), and the end-to-end tests run the operator under that identity bound only to
manifests/rbac.yaml's ClusterRole. At the end of the session the logs hold everything ajan did:
its own calls (user agent ``ajan/``) and kopf's (``kopf/``). The tests' own requests as that
identity (user agent of the Kubernetes client) are not ajan's and are left out.

So these tests run last, and need the end-to-end tests in the same session: run alone they skip,
saying so.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Final, NamedTuple

import pytest
import yaml

REPO: Final = Path(__file__).resolve().parents[2]
#: The tests whose operators, together, exercise every permission ajan has.
EXERCISING: Final = ("tests/e2e/test_actions.py", "tests/e2e/test_peering.py")
AJAN_AGENTS: Final = ("ajan/", "kopf/")

# e2e: it starts nothing itself, but it checks what the operators of the end-to-end tests did.
pytestmark = [pytest.mark.after_everything, pytest.mark.e2e]


class Permission(NamedTuple):
    group: str
    resource: str  # with its subresource: "rollouts/status"
    verb: str

    def __str__(self) -> str:
        return f"{self.verb} {self.resource}{'.' + self.group if self.group else ''}"


def granted() -> set[Permission]:
    """Every (group, resource, verb) the ClusterRole in manifests/rbac.yaml grants."""
    docs = yaml.safe_load_all((REPO / "manifests" / "rbac.yaml").read_text())
    (role,) = [doc for doc in docs if doc and doc["kind"] == "ClusterRole"]
    return {
        Permission(group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def requests(logs: Path) -> dict[Permission, set[int]]:
    """ajan's requests in the audit logs, with the response codes each got."""
    seen: dict[Permission, set[int]] = defaultdict(set)
    for log in sorted(logs.glob("*.log")):
        for line in log.read_text().splitlines():
            event = json.loads(line)
            ref = event.get("objectRef")
            agent = event.get("userAgent", "")
            if ref is None or not agent.startswith(AJAN_AGENTS):
                continue  # discovery and other non-resource URLs; requests the tests made
            resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
            code = int(event.get("responseStatus", {}).get("code", 0))
            seen[Permission(ref.get("apiGroup", ""), resource, event["verb"])].add(code)
    return seen


@pytest.fixture
def used(audit_logs: Path, request: pytest.FixtureRequest) -> dict[Permission, set[int]]:
    ran = {item.nodeid.split("::")[0] for item in request.session.items}
    missing = [path for path in EXERCISING if path not in ran]
    if missing:
        pytest.skip(f"needs the operators of {', '.join(missing)} in the same session (run tests/e2e)")
    return requests(audit_logs)


def test_the_role_grants_no_verb_ajan_never_uses(used: dict[Permission, set[int]]) -> None:
    succeeded = {permission for permission, codes in used.items() if any(200 <= c < 300 for c in codes)}
    unused = sorted(str(p) for p in granted() - succeeded)
    assert not unused, f"manifests/rbac.yaml grants what ajan never did in the whole session: {unused}"


def test_ajan_is_never_refused_what_it_asks(used: dict[Permission, set[int]]) -> None:
    refused = sorted(str(p) for p, codes in used.items() if 403 in codes)
    assert not refused, f"ajan was forbidden (its role lacks them): {refused}"
    assert used, "no request of ajan's in the audit logs: is the audit policy in hack/kube-up.sh on?"
