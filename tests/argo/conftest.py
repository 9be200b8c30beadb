"""Fixtures for tests against a real Argo Rollouts controller (`ajan.simulate.argo`).

Session-wide: Argo's five CRDs (of the controller's version). For this package's tests:
`Workloads` (the ReplicaSet and node lifecycle controllers, kube-scheduler and kwok with two
simulated nodes) on the session's control plane, which must run its controller-manager (mark the
tests ``kube_controller_manager``). The binaries must be built beforehand (``hack/test.sh`` does it):
a missing one fails the tests with the ``hack/kube-build.sh`` command that builds it. Per test: a
``rollouts-controller --namespaced`` to the test's fresh namespace, so the session's other tests,
which write a Rollout's status themselves, never meet a controller. `ArgoKit` creates and reads
what the tests need and, when a wait times out, says where the Rollout got stuck (`.kit`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client

from ajan.simulate.argo import (
    ARGO_COMPONENT,
    BINARIES,
    RolloutsController,
    Workloads,
    apply_argo_crds,
    binaries,
    binary_version,
)
from ajan.simulate.stack import OperatorProcess, StackError, wait_for
from support.kube import FIELD_MANAGER, Kube
from support.prometheus import StartWithHistory

from .guard import PAUSED_AT_25, Guard, Guarded, start_guarded
from .kit import STEP_TIMEOUT_S, ArgoKit, Object

T = TypeVar("T")


def or_fail(start: Callable[[], T]) -> T:
    """``start()``; a `StackError` fails the test with its message alone (no traceback, no chain)."""
    try:
        return start()
    except StackError as err:
        message = str(err)
    pytest.fail(message, pytrace=False)  # outside the except: no "during handling of" chain


@pytest.fixture(scope="session")
def argo_binaries() -> dict[str, Path]:
    """The cached binaries this package runs. Nothing here builds (a first build takes minutes): a
    missing one fails at once, before the control plane starts, naming the command that builds it."""
    return or_fail(lambda: binaries(*BINARIES))


@pytest.fixture(scope="session")
def argo_crds(argo_binaries: dict[str, Path], admin_api: client.ApiClient) -> dict[str, Object]:
    """Argo's CRDs (Rollout, Experiment, AnalysisRun, AnalysisTemplate, ClusterAnalysisTemplate)."""
    version = binary_version(ARGO_COMPONENT, argo_binaries[ARGO_COMPONENT])
    return or_fail(lambda: apply_argo_crds(admin_api, version=version, field_manager=FIELD_MANAGER))


@pytest.fixture(scope="package")
def workloads(
    argo_binaries: dict[str, Path], kube: Kube, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Workloads]:
    """Pods that run without a kubelet, for this package's tests only: the rest of the session keeps
    ReplicaSets inert and pods unscheduled, as before. Stopped with nothing left."""
    started = or_fail(lambda: Workloads.start(kube, tmp_path_factory.mktemp("workloads")))
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def argo(
    argo_binaries: dict[str, Path],
    kube: Kube,
    admin_api: client.ApiClient,
    namespace: str,
    argo_crds: dict[str, Object],
    workloads: Workloads,
    tmp_path: Path,
) -> Iterator[ArgoKit]:
    """An `ArgoKit` for the test's namespace, with a ``rollouts-controller`` of its own on it."""
    core = client.CoreV1Api(admin_api)
    # Pods are refused until the service-account controller gave the namespace its `default`.
    wait_for(
        lambda: core.read_namespaced_service_account("default", namespace),
        timeout=STEP_TIMEOUT_S,
        what=f"the default service account of {namespace}",
    )
    controller = RolloutsController(
        kube.admin_kubeconfig, tmp_path, namespace=namespace, binary=argo_binaries[ARGO_COMPONENT]
    )
    or_fail(controller.start)
    try:
        yield ArgoKit(admin_api, namespace, controller, workloads)
    finally:
        controller.stop()


@pytest.fixture
def guard(
    argo: ArgoKit,
    prometheus_with_history: StartWithHistory,
    ajan_operator: Callable[..., OperatorProcess],
) -> Guard:
    """Factory: ``guard(mode, steps, ...)`` starts a canary under ajan's policy and Argo's analysis
    (`start_guarded`) on this test's servers."""

    def start(mode: str, steps: list[Object] = PAUSED_AT_25, **options: Any) -> Guarded:
        return start_guarded(argo, prometheus_with_history, ajan_operator, mode, steps, **options)

    return start
