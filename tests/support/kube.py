"""Fixtures for tests against a real kube-apiserver: the control plane, ajan's CRDs, a namespace.

The control plane is ``hack/kube-up.sh`` (etcd + kube-apiserver on loopback, RBAC on), started
once per session after ``hack/kube-build.sh`` made sure the binaries exist
(`ajan.simulate.stack.ControlPlane`). A test that needs the controller manager (namespace deletion,
garbage collection) is marked ``@pytest.mark.kube_controller_manager``; the session then starts it
too. Stopping checks that nothing of the control plane is left.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

import pytest
from kubernetes import client

from ajan.simulate import stack
from ajan.simulate.stack import ESTABLISHED_TIMEOUT_S, STOP_TIMEOUT_S, UP_TIMEOUT_S, StackError

__all__ = [
    "AUDIT_DIR_ENV",
    "ESTABLISHED_TIMEOUT_S",
    "FIELD_MANAGER",
    "STOP_TIMEOUT_S",
    "UP_TIMEOUT_S",
    "Kube",
]

FIELD_MANAGER: Final = "ajan-tests"
#: The environment variable that, when set, names the session's audit log directory (`audit_logs`).
AUDIT_DIR_ENV: Final = "AJAN_TEST_AUDIT_DIR"
#: A running control plane: ``dir``, ``admin_kubeconfig``, ``restricted_kubeconfig``, ``api_client()``.
Kube = stack.ControlPlane


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "kube_controller_manager: the test needs kube-controller-manager in the control plane"
    )
    config.addinivalue_line(
        "markers", "after_everything: the test reads what the rest of the session did, so it runs last"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move the ``after_everything`` tests to the end of the session, in their collected order."""
    last = [item for item in items if item.get_closest_marker("after_everything")]
    if last:
        items[:] = [item for item in items if item not in last] + last


def wait_until(what: str, probe: Callable[[], Any], timeout: float, interval: float = 0.1) -> Any:
    """Poll ``probe`` until it returns something truthy, and return that; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() >= deadline:
            pytest.fail(f"{what}: not true after {timeout:g} s")
        time.sleep(interval)


@pytest.fixture(scope="session")
def audit_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where every control plane of the session writes its audit log of the restricted identity's
    requests, kept after the control plane stops (tests/e2e/test_rbac.py reads them all).

    `AUDIT_DIR_ENV` names the directory instead: how test_rbac, when its session did not run the
    tests it needs, runs them in a child session and finds their logs.
    """
    if named := os.environ.get(AUDIT_DIR_ENV):
        path = Path(named)
        path.mkdir(parents=True, exist_ok=True)
        return path
    return tmp_path_factory.mktemp("audit")


@pytest.fixture(scope="session")
def kube(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, audit_logs: Path
) -> Iterator[Kube]:
    """A control plane for the whole session: built if needed, started, stopped with nothing left."""
    with_kcm = any(item.get_closest_marker("kube_controller_manager") for item in request.session.items)
    try:
        plane = stack.ControlPlane.start(
            tmp_path_factory.mktemp("kube-up"),
            controller_manager=with_kcm,
            audit_log=audit_logs / "session.log",
        )
    except StackError as error:
        pytest.fail(str(error), pytrace=False)
    try:
        yield plane
    finally:
        plane.stop()  # raises StackError if anything of it is left: the session's teardown fails


@pytest.fixture(scope="session")
def admin_api(kube: Kube) -> Iterator[client.ApiClient]:
    """An API client as ``ajan-admin`` (system:masters)."""
    with kube.api_client() as api:
        yield api


@pytest.fixture(scope="session")
def restricted_api(kube: Kube) -> Iterator[client.ApiClient]:
    """An API client as ``ajan-restricted`` (authenticated, no role)."""
    with kube.api_client(kube.restricted_kubeconfig) as api:
        yield api


def server_side_apply(api: client.ApiClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """``kubectl apply --server-side --force-conflicts`` of ``body`` at ``path``."""
    return stack.server_side_apply(api, path, body, field_manager=FIELD_MANAGER)


@pytest.fixture(scope="session")
def crds(admin_api: client.ApiClient) -> dict[str, dict[str, Any]]:
    """ajan's CRDs, server-side applied once, Established, and their resources answering.

    Returns the served CRDs by kind.
    """
    try:
        return stack.apply_crds(admin_api, field_manager=FIELD_MANAGER, timeout=ESTABLISHED_TIMEOUT_S)
    except StackError as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture
def namespace(admin_api: client.ApiClient, crds: dict[str, dict[str, Any]]) -> Iterator[str]:
    """A fresh namespace for one test, with the CRDs installed; deleted afterwards."""
    core = client.CoreV1Api(admin_api)
    name = f"ajan-test-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name, "labels": {"ajan.dev/test": "true"}}})
    yield name
    # Without the controller manager the namespace stays Terminating; the control plane is
    # thrown away at the end of the session anyway.
    core.delete_namespace(name)
