"""Fixtures for tests against a real kube-apiserver: the control plane, ajan's CRDs, a namespace.

The control plane is ``hack/kube-up.sh`` (etcd + kube-apiserver on loopback, RBAC on), started
once per session after ``hack/kube-build.sh`` made sure the binaries exist. A test that needs the
controller manager (namespace deletion, garbage collection) is marked
``@pytest.mark.kube_controller_manager``; the session then starts it too.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from ajan.models.crd import RESOURCES, crd_manifest

ROOT: Final = Path(__file__).resolve().parents[2]
UP_TIMEOUT_S: Final = 120.0  # kube-up.sh's own readiness deadline is 120 s; ready in ~5 s here
STOP_TIMEOUT_S: Final = 30.0  # kube-up.sh sends TERM, then KILL after 10 s, to each component
ESTABLISHED_TIMEOUT_S: Final = 30.0
FIELD_MANAGER: Final = "ajan-tests"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "kube_controller_manager: the test needs kube-controller-manager in the control plane"
    )


@dataclass(frozen=True)
class Kube:
    """A running control plane: where its kubeconfigs are, and clients for its two identities."""

    dir: Path
    admin_kubeconfig: Path
    restricted_kubeconfig: Path

    def api_client(self, kubeconfig: Path | None = None) -> client.ApiClient:
        """A client for ``kubeconfig`` (default: admin); the global client config is not touched."""
        return config.new_client_from_config(
            config_file=str(kubeconfig or self.admin_kubeconfig), persist_config=False
        )


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


def _build_binaries(components: list[str]) -> None:
    # Idempotent: < 0.1 s when the binaries are cached; a first build takes ~13 min on 2 cores.
    build = subprocess.run(
        [str(ROOT / "hack" / "kube-build.sh"), *components],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if build.returncode != 0:
        pytest.fail(
            f"hack/kube-build.sh failed (exit {build.returncode}):\n{build.stdout}\n{build.stderr}",
            pytrace=False,
        )


def _read_env_lines(proc: subprocess.Popen[bytes], stderr_log: Path) -> dict[str, str]:
    """Read kube-up.sh's ``export K=V`` lines until ``AJAN_KUBE_DIR``, with a deadline.

    Fails early, with kube-up.sh's stderr, if the script exits first.
    """
    assert proc.stdout is not None
    env: dict[str, str] = {}
    buffer = b""
    deadline = time.monotonic() + UP_TIMEOUT_S + 10  # a little beyond kube-up.sh's own deadline
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while "AJAN_KUBE_DIR" not in env:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(
                    f"hack/kube-up.sh not ready after {UP_TIMEOUT_S:g} s:\n{stderr_log.read_text()}",
                    pytrace=False,
                )
            if not selector.select(timeout=min(remaining, 1.0)):
                if proc.poll() is not None:
                    pytest.fail(
                        f"hack/kube-up.sh exited ({proc.returncode}):\n{stderr_log.read_text()}",
                        pytrace=False,
                    )
                continue
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                proc.wait(timeout=STOP_TIMEOUT_S)
                pytest.fail(
                    f"hack/kube-up.sh exited ({proc.returncode}):\n{stderr_log.read_text()}", pytrace=False
                )
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                text = line.decode().strip()
                if text.startswith("export ") and "=" in text:
                    key, value = text.removeprefix("export ").split("=", 1)
                    env[key] = value
    return env


def _processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes whose arguments contain ``text``."""
    found = []
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit():
            continue
        try:
            cmdline = (proc_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if text in cmdline:
            found.append(f"{proc_dir.name}: {cmdline.strip()}")
    return found


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _stop(proc: subprocess.Popen[bytes], kube_dir: Path | None) -> None:
    """SIGTERM the whole process group, wait, and assert nothing of it is left (SIGKILL last)."""
    pgid = proc.pid  # start_new_session: the script leads its own group, its components are in it
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):  # checked below, group and all
        proc.wait(timeout=STOP_TIMEOUT_S)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    leftovers = _processes_mentioning(str(kube_dir)) if kube_dir else []
    group_left = _group_alive(pgid)
    if group_left or proc.poll() is None or leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        for line in leftovers:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(line.split(":", 1)[0]), signal.SIGKILL)
        proc.wait(timeout=STOP_TIMEOUT_S)
    assert not group_left, "kube-up.sh's process group outlived SIGTERM (killed with SIGKILL)"
    assert not leftovers, f"processes of the control plane outlived it: {leftovers}"
    assert proc.returncode is not None
    if kube_dir is not None:
        assert not kube_dir.exists(), f"kube-up.sh left {kube_dir} behind"


@pytest.fixture(scope="session")
def kube(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kube]:
    """A control plane for the whole session: built if needed, started, stopped with nothing left."""
    with_kcm = any(item.get_closest_marker("kube_controller_manager") for item in request.session.items)
    _build_binaries(["etcd", "kube-apiserver", *(["kube-controller-manager"] if with_kcm else [])])
    stderr_log = tmp_path_factory.mktemp("kube-up") / "stderr.log"
    env = {**os.environ, "KUBE_CONTROLLER_MANAGER": "0"}
    args = [
        str(ROOT / "hack" / "kube-up.sh"),
        "--controller-manager" if with_kcm else "--no-controller-manager",
    ]
    with stderr_log.open("wb") as stderr:
        proc = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,  # its own process group: one signal reaches every component
        )
    kube_dir: Path | None = None
    try:
        exports = _read_env_lines(proc, stderr_log)
        kube_dir = Path(exports["AJAN_KUBE_DIR"])
        yield Kube(
            dir=kube_dir,
            admin_kubeconfig=Path(exports["KUBECONFIG"]),
            restricted_kubeconfig=Path(exports["AJAN_RESTRICTED_KUBECONFIG"]),
        )
    finally:
        _stop(proc, kube_dir)
        assert proc.stdout is not None
        proc.stdout.close()


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
    result: dict[str, Any] = api.call_api(
        path,
        "PATCH",
        query_params=[("fieldManager", FIELD_MANAGER), ("force", "true")],
        header_params={"Content-Type": "application/apply-patch+yaml", "Accept": "application/json"},
        body=body,  # JSON is YAML
        response_type="object",
        auth_settings=["BearerToken"],
        _return_http_data_only=True,
    )
    return result


@pytest.fixture(scope="session")
def crds(admin_api: client.ApiClient) -> dict[str, dict[str, Any]]:
    """ajan's CRDs, server-side applied once, Established, and their resources answering.

    Returns the served CRDs by kind.
    """
    extensions = client.ApiextensionsV1Api(admin_api)
    custom = client.CustomObjectsApi(admin_api)
    served = {}
    for resource in RESOURCES:
        manifest = crd_manifest(resource)
        server_side_apply(
            admin_api,
            f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{resource.crd_name}",
            manifest,
        )

        def established(name: str = resource.crd_name) -> dict[str, Any] | None:
            crd = admin_api.sanitize_for_serialization(extensions.read_custom_resource_definition(name))
            conditions = {c["type"]: c["status"] for c in crd.get("status", {}).get("conditions", [])}
            return crd if conditions.get("Established") == "True" else None

        served[resource.kind] = wait_until(
            f"CRD {resource.crd_name} Established", established, ESTABLISHED_TIMEOUT_S
        )

        # Established can precede the first successful list by a moment: wait for the endpoint too.
        def answering(plural: str = resource.plural) -> bool:
            try:
                custom.list_cluster_custom_object("aiops.ajan.dev", "v1alpha1", plural)
            except ApiException as error:
                if error.status == 404:
                    return False
                raise
            return True

        wait_until(f"{resource.plural} served", answering, ESTABLISHED_TIMEOUT_S)
    return served


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
