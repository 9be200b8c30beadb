"""manifests/' role grants exactly what ajan uses: read from the API servers' audit logs.

Every control plane of the session logs each request of the restricted identity (hack/kube-up.sh's
audit policy), and the end-to-end tests run the operator under that identity bound only to
manifests/rbac.yaml's ClusterRole. At the end of the session the logs hold everything ajan did:
its own calls (user agent ``ajan/``) and kopf's (``kopf/``). The tests' own requests as that
identity (user agent of the Kubernetes client) are not ajan's and are left out.

The verdict never depends on what else the session ran, nor in which order. When every test of
`EXERCISING` passed earlier in the session (``pytest tests/e2e``, the whole suite: these tests are
marked to run last for that), the session's own logs are read. Otherwise (run alone, after another
file, with ``-k``, or after one of them failed) `EXERCISING` runs in a child pytest session of its
own, which takes some minutes, and its logs are read.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Final, NamedTuple

import pytest
import yaml

from support.kube import AUDIT_DIR_ENV

REPO: Final = Path(__file__).resolve().parents[2]
#: The tests whose operators, together, exercise every permission ajan has.
EXERCISING: Final = ("tests/e2e/test_actions.py", "tests/e2e/test_peering.py")
AJAN_AGENTS: Final = ("ajan/", "kopf/")
#: For the child session: `EXERCISING` takes some 5-10 minutes on a loaded 2-core machine.
CHILD_TIMEOUT_S: Final = 3600.0

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


def pytest_args(*args: str) -> list[str]:
    """A pytest of this repository's tests, without a cache (a child must not change ``--lf``)."""
    return [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args]


def exercised_here(session: pytest.Session) -> bool:
    """Every test that `EXERCISING` holds passed earlier in this session (so its logs are complete)."""
    collected = subprocess.run(
        pytest_args("--collect-only", "-q", *EXERCISING),
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert collected.returncode == 0, collected.stdout + collected.stderr
    expected = {line for line in collected.stdout.splitlines() if "::" in line}
    passed = {
        item.nodeid
        for item in session.items
        if (report := getattr(item, "rep_call", None)) is not None and report.passed
    }
    return bool(expected) and expected <= passed


@pytest.fixture(scope="module")
def used(
    audit_logs: Path, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[Permission, set[int]]:
    """ajan's requests while `EXERCISING` ran: in this session if it all passed here, else in a child
    session of its own (whose failure fails these tests: the role is then unproven)."""
    if exercised_here(request.session):
        return requests(audit_logs)
    logs = tmp_path_factory.mktemp("rbac-audit")
    child = subprocess.run(
        pytest_args("-q", *EXERCISING),
        cwd=REPO, env={**os.environ, AUDIT_DIR_ENV: str(logs)},
        capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, check=False,
    )  # fmt: skip
    if child.returncode != 0:
        pytest.fail(
            f"the tests that exercise the role ({' '.join(EXERCISING)}) failed in a child session:\n"
            + child.stdout[-10000:]
            + child.stderr[-3000:],
            pytrace=False,
        )
    return requests(logs)


def test_the_role_grants_no_verb_ajan_never_uses(used: dict[Permission, set[int]]) -> None:
    succeeded = {permission for permission, codes in used.items() if any(200 <= c < 300 for c in codes)}
    unused = sorted(str(p) for p in granted() - succeeded)
    assert not unused, f"manifests/rbac.yaml grants what ajan never did in the whole session: {unused}"


def test_ajan_is_never_refused_what_it_asks(used: dict[Permission, set[int]]) -> None:
    refused = sorted(str(p) for p, codes in used.items() if 403 in codes)
    assert not refused, f"ajan was forbidden (its role lacks them): {refused}"
    assert used, "no request of ajan's in the audit logs: is the audit policy in hack/kube-up.sh on?"
