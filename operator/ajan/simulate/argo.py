"""A real Argo Rollouts controller, and simulated nodes for its pods, beside a local control plane.

`ajan.simulate.stack.ControlPlane` runs only etcd, kube-apiserver and a kube-controller-manager
with a few bookkeeping controllers: a Rollout there is stored but nothing acts on it. This module
adds what makes one progress for real, every piece a real upstream binary built by
``hack/kube-build.sh`` (see hack/kube/README.md):

* `Workloads`: pods that run without a kubelet.

  - a second kube-controller-manager (`WorkloadControllers`) running only the ReplicaSet controller
    (the control plane's own leaves workload controllers out, and other tests rely on ReplicaSets
    staying inert there), so Argo's ReplicaSets get pods, and the node lifecycle controller, which
    lifts the ``node.kubernetes.io/not-ready`` taint the API server puts on every new Node once
    the node is Ready, as it does for a kubelet's;
  - kube-scheduler (`Scheduler`) with its default profile: it places those pods on the nodes;
  - kwok with its default stages (kwokctl's: ``node-initialize``, ``node-heartbeat-with-lease``,
    ``pod-ready``, ``pod-complete``, ``pod-delete``, read from the kwok module of the version
    built), managing a few Node objects made here: their pods become Running and Ready whatever
    their image, and deleted ones go away.

* `RolloutsController`: Argo's ``rollouts-controller`` on the admin kubeconfig, cluster-wide or
  ``--namespaced`` to one namespace, with its built-in metric providers (Prometheus among them: an
  AnalysisTemplate names its Prometheus's address).
* `apply_argo_crds`: Argo's five CRDs from the module of the version built (``hack/rollouts-crd.sh
  --all``).

Nothing here builds: the binaries must be in ``hack/kube-build.sh``'s cache (`binaries`), or a
`StackError` names the command that builds them, so a test session never stalls on a build of
minutes. Every process runs in a session of its own and is stopped with `stack.stop_process`,
which checks that nothing of it is left; a failed start stops what it started before raising
`StackError`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx

from ajan.simulate.stack import (
    REPO_ROOT,
    START_DEADLINE_S,
    ControlPlane,
    StackError,
    free_port,
    hack_script,
    ready_or_stopped,
    server_side_apply,
    stop_process,
    wait_for,
    wait_served,
)

ARGO_COMPONENT: Final = "argo-rollouts"
KWOK_COMPONENT: Final = "kwok"
KCM_COMPONENT: Final = "kube-controller-manager"
SCHEDULER_COMPONENT: Final = "kube-scheduler"
#: Every binary `Workloads` and `RolloutsController` run (``hack/test.sh`` builds them before pytest).
BINARIES: Final = (KCM_COMPONENT, KWOK_COMPONENT, SCHEDULER_COMPONENT, ARGO_COMPONENT)
#: The second controller-manager's controllers (`WorkloadControllers`).
WORKLOAD_CONTROLLERS: Final = ("replicaset-controller", "node-lifecycle-controller")
#: Taint effects that keep the scheduler from placing a pod that does not tolerate them.
BLOCKING_EFFECTS: Final = frozenset({"NoSchedule", "NoExecute"})
#: The label (value: one `Workloads`' id) by which a kwok process finds the nodes it manages.
NODE_LABEL: Final = "ajan.dev/kwok"
#: kwok's default stages, as kwokctl configures them (pkg/kwokctl/runtime/cluster.go), in the module.
KWOK_STAGES: Final = (
    "kustomize/stage/node/fast/node-initialize.yaml",
    "kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "kustomize/stage/pod/fast/pod-ready.yaml",
    "kustomize/stage/pod/fast/pod-complete.yaml",
    "kustomize/stage/pod/fast/pod-delete.yaml",
)
#: kwokctl's node lease duration: kwok renews each node's Lease, as a kubelet does, and the
#: heartbeat-with-lease stage refreshes node status only every 10 minutes.
NODE_LEASE_S: Final = 40
#: Pod IPs kwok hands out: kind's pod range, apart from the control plane's services (10.0.0.0/24).
POD_CIDR: Final = "10.244.0.0/16"
#: Argo logs this once its informers have synced and its workers run (controller/controller.go).
ARGO_STARTED: Final = "Started controller"
LOG_TAIL: Final = 5000


def binary_version(component: str, binary: Path) -> str:
    """The version in a ``hack/kube-build.sh`` binary's name (``<component>-<version>``)."""
    version = binary.name.removeprefix(f"{component}-")
    if version == binary.name:
        raise StackError(f"{binary} is not named {component}-<version>")
    return version


def binaries(*components: str) -> dict[str, Path]:
    """The cached binaries of ``components`` (``hack/kube-build.sh --no-build``); never builds.

    A first build takes minutes per binary (2.5 min for the Argo controller on 2 cores): started
    from here, a test would seem to hang. So a missing one is a `StackError` naming the command
    that builds it (``hack/test.sh`` runs it before pytest).
    """
    script = hack_script("kube-build.sh")
    done = subprocess.run(
        [str(script), "--no-build", *components],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,  # reads go.mod and the module cache only
        check=False,
    )
    lines = (line.partition("=") for line in done.stdout.splitlines())
    paths = {name: Path(path) for name, _, path in lines if path}
    missing = [name for name in components if name not in paths]
    if missing:
        # The script's own "not built" line says the same; anything else it said is why it failed.
        said = [line for line in done.stderr.splitlines() if not line.startswith("kube-build: not built:")]
        raise StackError(
            f"not built: {', '.join(missing)}. Build with `hack/kube-build.sh {' '.join(missing)}` in "
            f"{REPO_ROOT} (minutes per binary the first time, cached after; hack/test.sh does it)"
            + "".join(f"\n{line}" for line in said)
        )
    if done.returncode != 0:
        raise StackError(
            f"hack/kube-build.sh --no-build failed (exit {done.returncode}): {done.stderr.strip()}"
        )
    return paths


def _script_paths(script: str, *args: str) -> list[Path]:
    result = subprocess.run(
        ["bash", str(hack_script(script)), *args], capture_output=True, text=True, timeout=300, check=False
    )
    if result.returncode != 0:
        raise StackError(f"hack/{script} {' '.join(args)} failed: {result.stderr.strip()}")
    return [Path(line) for line in result.stdout.splitlines() if line]


def argo_crd_paths(version: str) -> list[Path]:
    """Argo's five CRD manifests of ``version``, from its Go module (``hack/rollouts-crd.sh --all``)."""
    return _script_paths("rollouts-crd.sh", "--all", version)


def kwok_stage_paths(version: str) -> list[Path]:
    """kwok's default stages (`KWOK_STAGES`) of ``version``, from its Go module."""
    return _script_paths("module-files.sh", f"sigs.k8s.io/kwok@{version}", *KWOK_STAGES)


def apply_argo_crds(
    api: Any, *, version: str | None = None, field_manager: str = "ajan"
) -> dict[str, dict[str, Any]]:
    """Server-side apply Argo's five CRDs and wait until each is served; return them by kind.

    ``version`` defaults to the controller's (which must be built: `binaries`), so the schema is the
    one it was built with.
    """
    import yaml

    if version is None:
        version = binary_version(ARGO_COMPONENT, binaries(ARGO_COMPONENT)[ARGO_COMPONENT])
    served = {}
    for path in argo_crd_paths(version):
        crd = yaml.safe_load(path.read_text())
        name = crd["metadata"]["name"]
        server_side_apply(
            api,
            f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}",
            crd,
            field_manager=field_manager,
        )
        storage = next(v["name"] for v in crd["spec"]["versions"] if v.get("storage"))
        served[crd["spec"]["names"]["kind"]] = wait_served(
            api, name, crd["spec"]["group"], storage, crd["spec"]["names"]["plural"]
        )
    return served


# --- processes ------------------------------------------------------------------------------------


@dataclass
class _Process:
    """One binary in a session of its own, its output appended to ``log_path``."""

    name: str
    log_path: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self, cmd: Sequence[str], env: dict[str, str] | None = None) -> None:
        with self.log_path.open("ab") as log:
            log.write(f"--- {' '.join(cmd)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                list(cmd),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                start_new_session=True,  # a Ctrl-C at the terminal reaches only the caller
            )

    def running(self) -> bool:
        """True while it runs; a `StackError` with its log once it has exited (never ready then)."""
        if self.proc is None or self.proc.poll() is not None:
            code = None if self.proc is None else self.proc.returncode
            raise StackError(f"{self.name} exited with {code}:\n{self.log()[-LOG_TAIL:]}")
        return True

    def log(self) -> str:
        """Everything it printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Signal its group, reap it, check nothing is left (SIGKILL after 15 s). Idempotent."""
        if self.proc is not None:
            proc, self.proc = self.proc, None
            stop_process(proc, sig=sig)


def _https_ok(port: int, path: str) -> bool:
    # Kubernetes components serve a self-signed certificate on loopback: nothing to verify. Their
    # /healthz, /readyz and /livez answer anonymous requests (--authorization-always-allow-paths).
    return httpx.get(f"https://127.0.0.1:{port}{path}", verify=False, timeout=2).status_code == 200


def _serving_flags(kubeconfig: Path, port: int, cert_dir: Path) -> list[str]:
    """A Kubernetes component's secure port on loopback, checking tokens against the API server as
    kube-up.sh's controller-manager does (self-signed certificate in ``cert_dir``)."""
    return [
        *("--authentication-kubeconfig", str(kubeconfig)),
        *("--authorization-kubeconfig", str(kubeconfig)),
        "--authentication-skip-lookup",
        *("--bind-address", "127.0.0.1", "--secure-port", str(port)),
        *("--cert-dir", str(cert_dir)),
    ]


def _stop_all(pieces: Iterable[Any]) -> None:
    """Stop each piece (``.stop()``), even when an earlier one fails; then raise the first error."""
    first: BaseException | None = None
    for piece in pieces:
        try:
            piece.stop()
        except BaseException as err:  # the others must still be stopped
            first = first or err
    if first is not None:
        raise first


class WorkloadControllers:
    """A kube-controller-manager running only `WORKLOAD_CONTROLLERS`.

    The ReplicaSet controller gives ReplicaSets pods. The node lifecycle controller lifts the
    ``node.kubernetes.io/not-ready:NoSchedule`` taint that the API server's TaintNodesByCondition
    admission puts on every new Node, once the node reports Ready; without it kube-scheduler places
    nothing. The control plane's own controller-manager leaves both out on purpose; this one runs
    beside it with ``--leader-elect=false`` (their controllers are disjoint).
    """

    def __init__(self, kubeconfig: Path, workdir: Path, *, binary: Path | None = None) -> None:
        self.kubeconfig = kubeconfig
        self.workdir = workdir
        self.binary = binary
        self.process = _Process("kube-controller-manager (workloads)", workdir / "workload-controllers.log")

    def start(self, timeout: float = START_DEADLINE_S) -> None:
        """Start it and wait until its ``/healthz`` answers; a failed start stops it."""
        binary = self.binary or binaries(KCM_COMPONENT)[KCM_COMPONENT]
        port = free_port()
        self.process.start(
            [
                str(binary),
                *("--kubeconfig", str(self.kubeconfig)),
                *_serving_flags(self.kubeconfig, port, self.workdir / "workload-controllers-certs"),
                *("--controllers", ",".join(WORKLOAD_CONTROLLERS)),
                "--leader-elect=false",
                "--profiling=false",
                *("--v", "1"),
            ]
        )
        ready_or_stopped(
            self.stop,
            (self.process.running, f"{self.process.name} running"),
            (lambda: self.process.running() and _https_ok(port, "/healthz"), "its /healthz"),
            timeout=timeout,
        )

    def stop(self) -> None:
        """Stop it and check it is gone."""
        self.process.stop()


class Scheduler:
    """kube-scheduler with its default profile (``default-scheduler``), leader election off.

    Configured by a ``KubeSchedulerConfiguration`` file (the flags it replaces are deprecated), on
    the admin kubeconfig; its secure port is a free loopback one, for ``/readyz``, which answers once
    its informers have synced and its event handlers are in place (``sched-handler-sync``). Output
    (``-v 2``: one ``Successfully bound pod to node`` line per pod) goes to ``kube-scheduler.log``.
    """

    def __init__(self, kubeconfig: Path, workdir: Path, *, binary: Path | None = None) -> None:
        self.kubeconfig = kubeconfig
        self.workdir = workdir
        self.binary = binary
        self.process = _Process("kube-scheduler", workdir / "kube-scheduler.log")

    def start(self, timeout: float = START_DEADLINE_S) -> None:
        """Start it and wait until ``/readyz`` answers; a failed start stops it."""
        binary = self.binary or binaries(SCHEDULER_COMPONENT)[SCHEDULER_COMPONENT]
        config = self.workdir / "kube-scheduler.yaml"
        config.write_text(  # JSON is YAML
            json.dumps(
                {
                    "apiVersion": "kubescheduler.config.k8s.io/v1",
                    "kind": "KubeSchedulerConfiguration",
                    "clientConnection": {"kubeconfig": str(self.kubeconfig)},
                    "leaderElection": {"leaderElect": False},
                    "enableProfiling": False,
                },
                indent=1,
            )
        )
        port = free_port()
        self.process.start(
            [
                str(binary),
                *("--config", str(config)),
                *_serving_flags(self.kubeconfig, port, self.workdir / "kube-scheduler-certs"),
                *("--v", "2"),
            ]
        )
        ready_or_stopped(
            self.stop,
            (self.process.running, "kube-scheduler running"),
            (lambda: self.process.running() and _https_ok(port, "/readyz"), "kube-scheduler's /readyz"),
            timeout=timeout,
        )

    def stop(self) -> None:
        """Stop it and check it is gone."""
        self.process.stop()

    def log(self) -> str:
        """Everything it printed so far."""
        return self.process.log()


class Kwok:
    """kwok with its default stages, and ``count`` Node objects that it alone manages.

    The nodes are labelled `NODE_LABEL` = a random id, and kwok manages the nodes with that label
    only, so two of these on one control plane do not meet. Their status (Ready, allocatable 1k
    CPUs, 1 TiB, a million pods) is kwok's ``node-initialize`` stage; they carry no taint of their
    own (kwokctl's ``kwok.x-k8s.io/node=fake:NoSchedule`` would keep every pod without a toleration
    off them). Pods bound to them become Running and Ready at once (``pod-ready``), and a deleted pod
    is finalized and removed (``pod-delete``).
    """

    def __init__(
        self, kubeconfig: Path, api: Any, workdir: Path, *, count: int = 2, binary: Path | None = None
    ) -> None:
        self.kubeconfig = kubeconfig
        self.api = api
        self.workdir = workdir
        self.binary = binary
        self.id = uuid.uuid4().hex[:6]
        self.nodes = [f"kwok-{self.id}-{i}" for i in range(count)]
        self.process = _Process("kwok", workdir / "kwok.log")

    def start(self, timeout: float = START_DEADLINE_S) -> None:
        """Create the nodes, start kwok, wait until every node is Ready; a failed start undoes it."""
        binary = self.binary or binaries(KWOK_COMPONENT)[KWOK_COMPONENT]
        stages = kwok_stage_paths(binary_version(KWOK_COMPONENT, binary))
        kwok_home = self.workdir / "kwok-home"
        kwok_home.mkdir(parents=True, exist_ok=True)
        try:
            self._create_nodes()
            self.process.start(
                [
                    str(binary),
                    *("--kubeconfig", str(self.kubeconfig)),
                    *(f"--config={stage}" for stage in stages),
                    "--manage-all-nodes=false",
                    f"--manage-nodes-with-label-selector={NODE_LABEL}={self.id}",
                    f"--node-lease-duration-seconds={NODE_LEASE_S}",
                    f"--cidr={POD_CIDR}",
                ],
                # kwok also reads $KWOK_WORKDIR/kwok.yaml (default ~/.kwok/kwok.yaml) when it exists: an
                # empty work dir of its own keeps a user's kwok configuration out.
                env={"KWOK_WORKDIR": str(kwok_home)},
            )
        except BaseException:
            self.stop()
            raise
        ready_or_stopped(
            self.stop,
            (self.process.running, "kwok running"),
            (lambda: self.process.running() and self.ready_nodes() == set(self.nodes), "kwok's nodes Ready"),
            timeout=timeout,
        )

    def _create_nodes(self) -> None:
        from kubernetes import client

        core = client.CoreV1Api(self.api)
        for name in self.nodes:
            core.create_node(
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": name,
                        # kwok's own mark of a fake node (kwokctl's nodes carry it too).
                        "annotations": {"kwok.x-k8s.io/node": "fake"},
                        "labels": {
                            NODE_LABEL: self.id,
                            "kubernetes.io/hostname": name,
                            "kubernetes.io/os": "linux",
                            "type": "kwok",
                        },
                    },
                }
            )

    def _nodes(self) -> list[Any]:
        from kubernetes import client

        nodes: list[Any] = (
            client.CoreV1Api(self.api).list_node(label_selector=f"{NODE_LABEL}={self.id}").items
        )
        return nodes

    def ready_nodes(self) -> set[str]:
        """The names of this kwok's nodes whose Ready condition is True."""
        return {node.metadata.name for node in self._nodes() if _ready(node)}

    def schedulable_nodes(self) -> set[str]:
        """The names of this kwok's nodes that kube-scheduler may place a pod on: Ready, not
        cordoned, no taint that repels pods (a new node's ``not-ready`` one lasts until the node
        lifecycle controller sees it Ready)."""
        return {
            node.metadata.name
            for node in self._nodes()
            if _ready(node)
            and not node.spec.unschedulable
            and not any(t.effect in BLOCKING_EFFECTS for t in node.spec.taints or [])
        }

    def stop(self) -> None:
        """Stop kwok (checked gone), then delete its nodes. Idempotent."""
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        self.process.stop()
        core = client.CoreV1Api(self.api)
        for name in self.nodes:
            try:
                core.delete_node(name)
            except ApiException as err:
                if err.status != 404:
                    raise


def _ready(node: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])


@dataclass
class Workloads:
    """Pods that run without a kubelet: the workload controllers, kwok and kube-scheduler together."""

    controllers: WorkloadControllers
    kwok: Kwok
    scheduler: Scheduler

    @classmethod
    def start(
        cls, plane: ControlPlane, workdir: Path, *, nodes: int = 2, timeout: float = START_DEADLINE_S
    ) -> Workloads:
        """Start all three against ``plane``, a running control plane started with its
        controller-manager (which gives namespaces the ``default`` service account pods need), and
        wait until every node is schedulable.

        The binaries must be built (`binaries`). On a failed start, what was started is stopped.
        """
        workdir.mkdir(parents=True, exist_ok=True)
        paths = binaries(KCM_COMPONENT, KWOK_COMPONENT, SCHEDULER_COMPONENT)
        api = plane.api_client()
        kubeconfig = plane.admin_kubeconfig
        controllers = WorkloadControllers(kubeconfig, workdir, binary=paths[KCM_COMPONENT])
        kwok = Kwok(kubeconfig, api, workdir, count=nodes, binary=paths[KWOK_COMPONENT])
        scheduler = Scheduler(kubeconfig, workdir, binary=paths[SCHEDULER_COMPONENT])
        started: list[Any] = []
        try:
            for piece in (controllers, kwok, scheduler):
                piece.start(timeout)
                started.append(piece)
            wait_for(
                lambda: kwok.schedulable_nodes() == set(kwok.nodes),
                timeout=timeout,
                what=f"kwok's nodes {kwok.nodes} schedulable (Ready, the not-ready taint lifted)",
            )
        except BaseException:
            try:
                _stop_all(reversed(started))
            finally:
                api.close()
            raise
        return cls(controllers, kwok, scheduler)

    @property
    def nodes(self) -> list[str]:
        """The simulated nodes' names."""
        return self.kwok.nodes

    def stop(self) -> None:
        """Stop the scheduler, kwok (deleting its nodes) and the controllers; check all gone."""
        try:
            _stop_all((self.scheduler, self.kwok, self.controllers))
        finally:
            self.kwok.api.close()


class RolloutsController:
    """Argo's ``rollouts-controller`` as a subprocess; `start` again after `stop` to restart it.

    ``namespace=None`` runs it cluster-wide, as Argo's install does; a namespace runs it
    ``--namespaced`` to that namespace only, so that Rollouts elsewhere (tests that write a
    Rollout's status themselves) stay untouched. Leader election is off (one instance); its healthz
    and metrics ports are free ones (Argo binds them on all interfaces: it has no address flag).
    Output (logrus text) is appended to ``workdir/argo-rollouts.log``.
    """

    def __init__(
        self, kubeconfig: Path, workdir: Path, *, namespace: str | None = None, binary: Path | None = None
    ) -> None:
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.binary = binary
        self.process = _Process("rollouts-controller", workdir / "argo-rollouts.log")
        self.healthz_port = 0
        self.metrics_port = 0

    def start(self, timeout: float = START_DEADLINE_S) -> None:
        """Start it and wait until its caches have synced and its workers run.

        The binary must be built (`binaries`). Raises `StackError` with its log if it exits first; a failed
        start stops it.
        """
        binary = self.binary or binaries(ARGO_COMPONENT)[ARGO_COMPONENT]
        self.healthz_port, self.metrics_port = free_port(), free_port()
        scope = ["--namespaced", "--namespace", self.namespace] if self.namespace is not None else []
        log_size = self.process.log_path.stat().st_size if self.process.log_path.exists() else 0
        self.process.start(
            [
                str(binary),
                *("--kubeconfig", str(self.kubeconfig)),
                *scope,
                "--leader-elect=false",
                *("--healthzPort", str(self.healthz_port), "--metricsPort", str(self.metrics_port)),
                *("--loglevel", "info"),
            ]
        )

        def healthy() -> bool:
            self.process.running()
            return httpx.get(f"http://127.0.0.1:{self.healthz_port}/healthz", timeout=2).status_code == 200

        def started() -> bool:  # this start's log only: an earlier start said it too
            return self.process.running() and ARGO_STARTED in self.process.log()[log_size:]

        ready_or_stopped(
            self.stop,
            (healthy, "rollouts-controller /healthz"),
            (started, f"rollouts-controller's {ARGO_STARTED!r}"),
            timeout=timeout,
        )

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop it (SIGTERM: Argo drains its work queues) and check it is gone. Idempotent."""
        self.process.stop(sig)

    def log(self) -> str:
        """Everything the controller printed so far."""
        return self.process.log()
