"""Fixtures shared by every test tier, registered as plugins so any directory can use them.

The real servers (kube-apiserver + etcd, Prometheus + the metrics generator) are session fixtures in
`support.kube` and `support.prometheus`; a session starts only those its tests request. Redis, which
tests stop and kill, is one per test (`support.redis`). The operator itself, as a subprocess, is
`support.operator`.

Every test gets one tier marker, from the fixtures it uses (`pytest_collection_modifyitems`), so
``pytest -m unit`` is a quick loop that starts no server:

- ``unit``: no real server;
- ``servers``: a real kube-apiserver + etcd, Prometheus, the metrics generator or Redis, but not
  the operator;
- ``e2e``: runs the operator (``ajan run``) or the Argo Rollouts controller.

A test that starts servers without these fixtures (a subprocess that brings up a stack of its own)
says so with an explicit tier marker, which the fixtures never override.
"""

from __future__ import annotations

from typing import Final

import pytest

pytest_plugins = [
    "support.kube",
    "support.prometheus",
    "support.redis",
    "support.operator",
    "support.rollouts",
]

TIERS: Final = ("unit", "servers", "e2e")
#: Fixtures that run the operator or the Argo Rollouts controller (tests/argo/conftest.py).
E2E_FIXTURES: Final = frozenset({"ajan_operator", "argo"})
#: Fixtures that start (or install, to start) a real server. Every fixture built on them (`admin_api`,
#: `namespace`, `rollout_kit`, `prometheus`, `redis_server`, ...) has them in its closure too; the
#: list names those as well so a reader finds the one their test uses.
SERVER_FIXTURES: Final = frozenset(
    {
        # support.kube, support.rollouts, tests/argo/conftest.py
        "kube", "admin_api", "restricted_api", "crds", "namespace", "rollout_crd", "rollout_kit",
        "argo_crds", "workloads",
        # support.prometheus
        "prometheus_installed", "generator", "prometheus", "own_prometheus", "prometheus_with_history",
        # support.redis
        "redis_installed", "redis_server",
    }
)  # fmt: skip


def tier(item: pytest.Item) -> str:
    """The test's tier: its own marker if it has one, else the heaviest its fixtures imply."""
    marked = [name for name in TIERS if item.get_closest_marker(name)]
    if marked:
        return marked[-1]
    fixtures = set(getattr(item, "fixturenames", ()))
    if fixtures & E2E_FIXTURES:
        return "e2e"
    if fixtures & SERVER_FIXTURES:
        return "servers"
    return "unit"


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by the markers set here
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test with its tier (see the module's docstring); the markers are in pyproject.toml."""
    for item in items:
        item.add_marker(tier(item))
