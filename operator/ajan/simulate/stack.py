"""ajan's world on one machine: a local control plane, a metrics generator, Prometheus, ``ajan run``.

What the end-to-end tests, the demo (``hack/demo.py``) and the operator benchmark start, without
pytest: every piece starts with a deadline, raises a `StackError` that says what failed (with the
piece's log where there is one), and stops with a check that nothing of it is left.

* `ControlPlane`: ``hack/kube-up.sh`` (etcd + kube-apiserver, optionally kube-controller-manager,
  built by ``hack/kube-build.sh`` if needed) and its kubeconfigs; `apply_crds` installs ajan's CRDs.
* `start_generator`, `PrometheusServer`, `backfill`: the metrics generator
  (``python -m ajan.simulate.generator``) and a real Prometheus scraping it every second;
  `MetricsStack` is both, the Prometheus backfilled with the generator's past, with fault injection.
* `RedisServer`: Debian's ``redis-server`` configured as ajan ships it (append-only file, no eviction).
* `OperatorProcess`: ``ajan run`` as a subprocess, ready once kopf's liveness endpoint answers.
* `canary_policy`: a CorrelationPolicy on the generator's canary (`CANARY_METRICS`).

Every process runs in a session of its own, so that a Ctrl-C at the terminal reaches only the
caller, which then stops the pieces in order. The control plane and ``debian-install.sh`` need a
checkout of the repository (the ``hack/`` scripts); outside one they fail with a `StackError`.
"""

from __future__ import annotations

import contextlib
import os
import select
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

import httpx
import numpy as np

from ajan.models import GROUP, VERSION

#: The repository checkout this module sits in, if it sits in one (operator/ajan/simulate/stack.py).
REPO_ROOT: Final = Path(__file__).resolve().parents[3]
#: The directory holding the ``ajan`` package: subprocesses import the same code as this process.
PACKAGE_PARENT: Final = Path(__file__).resolve().parents[2]
SCRAPE_INTERVAL_S: Final = 1
#: The generator's simulated time of day when a `MetricsStack` starts: midnight, where the load is
#: at its lowest and steady, and the canary's p99 sits inside one histogram bucket. Pinned, so that
#: a test or the demo sees the same traffic whenever it runs: at the clock's own phase, a run near
#: 06:00 UTC found p99 straddling the 0.25 s bucket bound, where histogram_quantile jumps.
DEFAULT_PHASE: Final = 0.0
#: The scrape job, hence the ``job`` label of every series (and of the generator's history).
JOB: Final = "checkout"
#: Generous deadlines: a loaded 2-core machine is slow, and polling returns as soon as it can.
START_DEADLINE_S: Final = 60.0
UP_TIMEOUT_S: Final = 120.0  # kube-up.sh's own readiness deadline is 120 s; ready in ~5 s here
STOP_TIMEOUT_S: Final = 30.0  # kube-up.sh sends TERM, then KILL after 10 s, to each component
ESTABLISHED_TIMEOUT_S: Final = 30.0

T = TypeVar("T")


class StackError(RuntimeError):
    """A piece of the stack failed to start, answer or stop; the message says which and why."""


class StackTimeoutError(StackError):
    """A condition waited for did not come true before its deadline."""


class BackfillError(StackError):
    """``promtool tsdb create-blocks-from openmetrics`` refused a history file."""


# --- waiting and processes ------------------------------------------------------------------------


def wait_for(check: Callable[[], T | None], *, timeout: float, what: str, interval: float = 0.2) -> T:
    """Poll ``check`` until it returns something other than None or a false boolean (numpy's too),
    and return that.

    Exceptions from ``check`` count as "not yet" (the thing polled may not be up), except a
    `StackError`, which means it never will be (a process exited): that one propagates at once.

    Raises
    ------
    StackTimeoutError
        After ``timeout`` seconds, naming ``what`` and the last exception seen.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = check()
            # numpy's False (a comparison of arrays) is no answer either: it is not the False singleton.
            if value is not None and not (isinstance(value, bool | np.bool_) and not value):
                return value
        except StackError:
            raise
        except Exception as err:  # kept for the timeout's message
            last_error = err
        if time.monotonic() > deadline:
            raise StackTimeoutError(
                f"timed out after {timeout:g}s waiting for {what} (last error: {last_error!r})"
            )
        time.sleep(interval)


def ready_or_stopped(
    stop: Callable[[], object], *waits: tuple[Callable[[], object], str], timeout: float = START_DEADLINE_S
) -> None:
    """Wait for each ``(check, what)`` in turn; if one fails (or Ctrl-C), ``stop`` the piece first.

    A piece that failed to start must leave no process behind.
    """
    try:
        for check, what in waits:
            wait_for(check, timeout=timeout, what=what)
    except BaseException:
        stop()
        raise


def free_port() -> int:
    """A loopback port free right now (a small race with other processes, acceptable here)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def group_alive(pgid: int) -> bool:
    """Whether any process of the process group ``pgid`` is still alive."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of another user took the id: not ours, not alive for us
        return False
    return True


def processes_mentioning(text: str) -> list[str]:
    """``"PID: command line"`` of the live processes whose arguments contain ``text``."""
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


def assert_gone(proc: subprocess.Popen[bytes]) -> None:
    """Raise `StackError` unless the process has exited and been reaped."""
    if proc.poll() is None:
        raise StackError(f"process {proc.pid} still running")
    if _leads_own_group(proc.pid):
        raise StackError(f"process {proc.pid} left in the process table")


def _leads_own_group(pid: int) -> bool:
    # After a reap the id may be reused by an unrelated process: only one that leads its own process
    # group, as ours did, counts as left behind.
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = text[text.rindex(")") + 2 :].split()  # fields from the 3rd (state) on
    return int(fields[2]) == pid


def stop_process(proc: subprocess.Popen[bytes], *, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
    """Signal the process's group (it was started in a session of its own) and reap it.

    SIGKILL the group if the process or another member outlives ``timeout``. Closes its stdout
    pipe, if any.

    Raises
    ------
    StackError
        If something of it is left even so.
    """
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)
    deadline = time.monotonic() + timeout
    while group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if group_alive(proc.pid):  # children of the process that outlived it
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    if proc.stdout is not None:
        proc.stdout.close()
    assert_gone(proc)


# --- the repository checkout ----------------------------------------------------------------------


def hack_script(name: str) -> Path:
    """``hack/<name>`` of the repository checkout this package runs from.

    Raises
    ------
    StackError
        When the package does not run from a checkout (installed from a wheel, say).
    """
    path = REPO_ROOT / "hack" / name
    if not path.is_file():
        raise StackError(
            f"hack/{name} not found under {REPO_ROOT}: this needs a checkout of the ajan repository "
            f"(git clone it and run from there; ajan is imported from {PACKAGE_PARENT})"
        )
    return path


#: What ``hack/debian-install.sh`` puts on PATH.
DEBIAN_BINARIES: Final = (
    "prometheus", "promtool", "redis-server", "redis-cli", "chromium", "lua5.1", "shellcheck",
)  # fmt: skip


def install_servers(*, always: bool = False) -> None:
    """Make sure Debian's packages of `DEBIAN_BINARIES` (Prometheus, Redis and the test tools) are
    installed.

    Runs ``hack/debian-install.sh`` (needs root) when a binary is missing, or ``always`` (the script
    itself is a no-op when everything is installed).
    """
    if always or any(shutil.which(binary) is None for binary in DEBIAN_BINARIES):
        script = hack_script("debian-install.sh")
        done = subprocess.run(["bash", str(script)], timeout=900, check=False)
        if done.returncode != 0:
            raise StackError(f"hack/debian-install.sh failed (exit {done.returncode})")


def debian_binary(name: str) -> str:
    """The path of one of `DEBIAN_BINARIES`, installed by ``hack/debian-install.sh`` when missing."""
    install_servers()
    found = shutil.which(name)
    if found is None:
        raise StackError(f"{name} is not on PATH after hack/debian-install.sh")
    return found


def install_prometheus(*, always: bool = False) -> str:
    """Make sure ``prometheus`` and ``promtool`` are installed; return the ``prometheus`` binary."""
    install_servers(always=always)
    return "prometheus"


# --- the control plane ----------------------------------------------------------------------------


def build_binaries(components: Sequence[str], *, show_progress: bool = False) -> dict[str, Path]:
    """Build the control plane's binaries with ``hack/kube-build.sh`` unless cached; return their paths.

    Idempotent: < 0.1 s when the binaries are cached; a first build takes ~13 min on 2 cores.
    With ``show_progress`` the script's progress goes to this process's stderr.
    """
    script = hack_script("kube-build.sh")
    build = subprocess.run(
        [str(script), *components],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=None if show_progress else subprocess.PIPE,
        text=True,
        check=False,
    )
    if build.returncode != 0:
        raise StackError(
            f"hack/kube-build.sh failed (exit {build.returncode}):\n{build.stdout}\n{build.stderr or ''}"
        )
    lines = (line.partition("=") for line in build.stdout.splitlines())
    return {name: Path(path) for name, _, path in lines if path}  # the script's NAME=PATH lines


def read_exports(
    proc: subprocess.Popen[bytes], stderr_log: Path, timeout: float = UP_TIMEOUT_S + 10
) -> dict[str, str]:
    """Read kube-up.sh's ``export K=V`` lines until ``AJAN_KUBE_DIR`` (it prints that one last),
    with a deadline.

    Raises `StackError`, with kube-up.sh's stderr, if the script exits first or the deadline passes.
    """
    assert proc.stdout is not None
    env: dict[str, str] = {}
    buffer = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while "AJAN_KUBE_DIR" not in env:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StackTimeoutError(
                    f"hack/kube-up.sh not ready after {timeout:g} s:\n{stderr_log.read_text()}"
                )
            if not selector.select(timeout=min(remaining, 1.0)):
                if proc.poll() is not None:
                    raise StackError(f"hack/kube-up.sh exited ({proc.returncode}):\n{stderr_log.read_text()}")
                continue
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                proc.wait(timeout=STOP_TIMEOUT_S)
                raise StackError(f"hack/kube-up.sh exited ({proc.returncode}):\n{stderr_log.read_text()}")
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                text = line.decode().strip()
                if text.startswith("export ") and "=" in text:
                    key, value = text.removeprefix("export ").split("=", 1)
                    env[key] = value
    return env


@dataclass
class ControlPlane:
    """A running ``hack/kube-up.sh``: its directory, kubeconfigs for its two identities, its process.

    The script leads its own process group and its components run in it, so one signal reaches
    them all; `stop` sends it and checks that nothing is left, the directory included.
    """

    dir: Path
    admin_kubeconfig: Path
    restricted_kubeconfig: Path
    #: The API server's audit log of every request by the restricted identity (Metadata level).
    audit_log: Path
    proc: subprocess.Popen[bytes] = field(repr=False)

    @classmethod
    def start(
        cls,
        log_dir: Path,
        *,
        controller_manager: bool = False,
        show_build_progress: bool = False,
        audit_log: Path | None = None,
    ) -> ControlPlane:
        """Build the binaries if needed, start kube-up.sh, and return once the API server is ready.

        kube-up.sh's stderr goes to ``log_dir/kube-up.stderr.log``. The audit log goes to
        ``audit_log`` (default: inside the control plane's directory, removed with it). On a failed
        start, whatever was started is stopped before the `StackError` propagates.
        """
        components = ["etcd", "kube-apiserver", *(["kube-controller-manager"] if controller_manager else [])]
        script = hack_script("kube-up.sh")
        build_binaries(components, show_progress=show_build_progress)
        log_dir.mkdir(parents=True, exist_ok=True)
        stderr_log = log_dir / "kube-up.stderr.log"
        with stderr_log.open("wb") as stderr:
            proc = subprocess.Popen(
                [str(script), "--controller-manager" if controller_manager else "--no-controller-manager"],
                cwd=REPO_ROOT,
                env={
                    **os.environ,
                    "KUBE_CONTROLLER_MANAGER": "0",
                    **({"KUBE_AUDIT_LOG": str(audit_log)} if audit_log is not None else {}),
                },
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                start_new_session=True,  # its own process group: one signal reaches every component
            )
        try:
            exports = read_exports(proc, stderr_log)
        except BaseException:
            _stop_control_plane(proc, None)
            raise
        return cls(
            dir=Path(exports["AJAN_KUBE_DIR"]),
            admin_kubeconfig=Path(exports["KUBECONFIG"]),
            restricted_kubeconfig=Path(exports["AJAN_RESTRICTED_KUBECONFIG"]),
            audit_log=Path(exports["AJAN_KUBE_AUDIT_LOG"]),
            proc=proc,
        )

    def api_client(self, kubeconfig: Path | None = None) -> Any:
        """A ``kubernetes.client.ApiClient`` for ``kubeconfig`` (default: admin); global config untouched."""
        from kubernetes import config  # the client is heavy to import; only users of a cluster need it

        return config.new_client_from_config(
            config_file=str(kubeconfig or self.admin_kubeconfig), persist_config=False
        )

    def pid(self, component: str) -> int:
        """The current pid of ``component`` (``etcd``, ``kube-apiserver``): it changes at each restart.

        kube-up.sh runs every component under hack/supervise.sh, which restarts it when it exits
        once the control plane was ready, and writes the pid of each start to ``<dir>/<name>.pid``.
        """
        return int((self.dir / f"{component}.pid").read_text())

    def stop(self) -> None:
        """SIGTERM the script's group, wait, and check nothing is left (SIGKILL last). Idempotent."""
        _stop_control_plane(self.proc, self.dir)


def _stop_control_plane(proc: subprocess.Popen[bytes], kube_dir: Path | None) -> None:
    pgid = proc.pid  # start_new_session: the script leads its own group, its components are in it
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):  # checked below, group and all
        proc.wait(timeout=STOP_TIMEOUT_S)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    leftovers = processes_mentioning(str(kube_dir)) if kube_dir else []
    group_left = group_alive(pgid)
    if group_left or proc.poll() is None or leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        for line in leftovers:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(line.split(":", 1)[0]), signal.SIGKILL)
        proc.wait(timeout=STOP_TIMEOUT_S)
    if proc.stdout is not None:
        proc.stdout.close()
    if group_left:
        raise StackError("kube-up.sh's process group outlived SIGTERM (killed with SIGKILL)")
    if leftovers:
        raise StackError(f"processes of the control plane outlived it (killed with SIGKILL): {leftovers}")
    if kube_dir is not None and kube_dir.exists():
        raise StackError(f"kube-up.sh left {kube_dir} behind")


def server_side_apply(
    api: Any, path: str, body: dict[str, Any], *, field_manager: str = "ajan"
) -> dict[str, Any]:
    """``kubectl apply --server-side --force-conflicts`` of ``body`` at ``path`` with ``api``."""
    result: dict[str, Any] = api.call_api(
        path,
        "PATCH",
        query_params=[("fieldManager", field_manager), ("force", "true")],
        header_params={"Content-Type": "application/apply-patch+yaml", "Accept": "application/json"},
        body=body,  # JSON is YAML
        response_type="object",
        auth_settings=["BearerToken"],
        _return_http_data_only=True,
    )
    return result


def wait_served(
    api: Any, crd_name: str, group: str, version: str, plural: str, *, timeout: float = ESTABLISHED_TIMEOUT_S
) -> dict[str, Any]:
    """Wait until the CRD ``crd_name`` is Established and its resource answers a list; return the CRD."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    extensions = client.ApiextensionsV1Api(api)

    def established() -> dict[str, Any] | None:
        crd = api.sanitize_for_serialization(extensions.read_custom_resource_definition(crd_name))
        conditions = {c["type"]: c["status"] for c in crd.get("status", {}).get("conditions", [])}
        return crd if conditions.get("Established") == "True" else None

    served: dict[str, Any] = wait_for(
        established, timeout=timeout, what=f"CRD {crd_name} Established", interval=0.1
    )

    # Established can precede the first successful list by a moment: wait for the endpoint too.
    def answering() -> bool:
        try:
            client.CustomObjectsApi(api).list_cluster_custom_object(group, version, plural)
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        return True

    wait_for(answering, timeout=timeout, what=f"{plural} served", interval=0.1)
    return served


def apply_crds(
    api: Any, *, field_manager: str = "ajan", timeout: float = ESTABLISHED_TIMEOUT_S
) -> dict[str, dict[str, Any]]:
    """Server-side apply ajan's CRDs with ``api`` and wait until each is Established and served.

    Returns the served CRDs by kind.
    """
    from ajan.models.crd import RESOURCES, crd_manifest

    served = {}
    for resource in RESOURCES:
        server_side_apply(
            api,
            f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{resource.crd_name}",
            crd_manifest(resource),
            field_manager=field_manager,
        )
        served[resource.kind] = wait_served(
            api, resource.crd_name, GROUP, VERSION, resource.plural, timeout=timeout
        )
    return served


#: Argo Rollouts' CRD comes from this release's Go module (hack/rollouts-crd.sh); newer ones need a
#: newer Go than Debian's.
ARGO_ROLLOUTS_VERSION: Final = "v1.10.0"


def rollout_crd_path(version: str = ARGO_ROLLOUTS_VERSION) -> Path:
    """Argo Rollouts' own ``rollout-crd.yaml``, from its Go module in the module cache."""
    result = subprocess.run(
        ["bash", str(hack_script("rollouts-crd.sh")), version], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise StackError(f"hack/rollouts-crd.sh {version} failed: {result.stderr.strip()}")
    return Path(result.stdout.strip())


def apply_rollout_crd(api: Any, *, field_manager: str = "ajan") -> dict[str, Any]:
    """Server-side apply Argo Rollouts' Rollout CRD and wait until it is served."""
    import yaml

    crd = yaml.safe_load(rollout_crd_path().read_text())
    name = crd["metadata"]["name"]
    server_side_apply(
        api,
        f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}",
        crd,
        field_manager=field_manager,
    )
    return wait_served(api, name, "argoproj.io", "v1alpha1", "rollouts")


def canary_rollout(name: str, image: str = "registry.example/checkout:2") -> dict[str, Any]:
    """A canary Rollout as a user writes it (nothing runs it here: no controller, no nodes)."""
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
            "strategy": {"canary": {"steps": [{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}]}},
        },
    }


def _python_env(**extra: str) -> dict[str, str]:
    # Subprocesses import the same ajan as this process, installed or from the checkout.
    path = os.pathsep.join(p for p in (str(PACKAGE_PARENT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


@dataclass
class Generator:
    """A running metrics generator."""

    proc: subprocess.Popen[bytes]
    url: str

    def stop(self) -> None:
        """Stop it and check it is gone."""
        stop_process(self.proc)


def start_generator(*args: str) -> Generator:
    """Start ``python -m ajan.simulate.generator --port 0 ARGS...`` and wait until it serves.

    The caller stops it (`Generator.stop`); on a failed start it is stopped here.
    """
    cmd = [sys.executable, "-m", "ajan.simulate.generator", "--port", "0", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=_python_env(), start_new_session=True)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], START_DEADLINE_S)
        line = proc.stdout.readline().decode() if ready else ""
        if not line.startswith("listening on "):
            raise StackError(f"the metrics generator did not start: {line!r}, exit {proc.poll()}")
        url = "http://" + line.removeprefix("listening on ").strip()
        wait_for(
            lambda: httpx.get(f"{url}/metrics").status_code == 200, timeout=10, what="generator /metrics"
        )
    except BaseException:
        stop_process(proc)
        raise
    return Generator(proc, url)


def backfill(history: Path, data_dir: Path, *, promtool: str = "promtool") -> str:
    """Turn an OpenMetrics history into TSDB blocks in ``data_dir``; returns promtool's report.

    Raises
    ------
    BackfillError
        With promtool's exit code and output, if it fails.
    """
    cmd = [promtool, "tsdb", "create-blocks-from", "openmetrics", str(history), str(data_dir)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise BackfillError(
            f"{' '.join(cmd)} exited with {done.returncode}:\n{done.stdout}{done.stderr}".rstrip()
        )
    return done.stdout


class PrometheusServer:
    """A real Prometheus on loopback with its own data dir, scraping one target every second.

    With a ``history`` (an OpenMetrics file, e.g. the generator's ``--history-file``), the data dir is
    backfilled from it before the first start, so the history is queryable as soon as Prometheus is
    ready. Prometheus 2.42 accepts the backfilled blocks even where they overlap others.
    """

    def __init__(
        self,
        binary: str,
        workdir: Path,
        target: str,
        *,
        history: Path | None = None,
        promtool: str = "promtool",
    ) -> None:
        self.binary = binary
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.history = history
        self.promtool = promtool
        self._backfilled = False
        self.config = workdir / "prometheus.yml"
        self.config.write_text(
            f"""global:
  scrape_interval: {SCRAPE_INTERVAL_S}s
  scrape_timeout: {SCRAPE_INTERVAL_S}s
  evaluation_interval: {SCRAPE_INTERVAL_S}s
scrape_configs:
  - job_name: {JOB}
    static_configs:
      - targets: ["{target}"]
"""
        )
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Its base URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, wait_for_scrape: bool = True) -> None:
        """Start (or restart, on the same port and data dir) and wait until it is ready.

        The first start backfills the history, if any; a `BackfillError` leaves no process behind.
        With ``wait_for_scrape``, also wait until a live scrape is queryable: Prometheus 2.42 hands
        its first targets to the scrape loop only after a fixed 5 s, so that costs 5-6 s. A failed
        start stops the process before raising.
        """
        if self.history is not None and not self._backfilled:
            report = backfill(self.history, self.data_dir, promtool=self.promtool)
            (self.workdir / "backfill.log").write_text(report)
            self._backfilled = True
        log = (self.workdir / "prometheus.log").open("ab")
        cmd = [
            self.binary,
            f"--config.file={self.config}",
            f"--storage.tsdb.path={self.data_dir}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=1d",
        ]
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        proc = self.proc

        def ready() -> bool:
            if proc.poll() is not None:
                raise StackError(
                    f"prometheus exited with {proc.returncode}; see {self.workdir}/prometheus.log"
                )
            return httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200

        def scraped() -> bool:
            response = httpx.get(
                f"{self.url}/api/v1/query", params={"query": f'up{{job="{JOB}"}} == 1'}, timeout=2
            )
            return bool(response.json()["data"]["result"])

        waits = [(ready, "prometheus /-/ready")]
        if wait_for_scrape:
            waits.append((scraped, "a first scrape of the generator"))
        ready_or_stopped(self.stop, *waits)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop and reap the process; the data dir stays for a restart."""
        if self.proc is not None:
            stop_process(self.proc, sig=sig)


#: The Redis configuration ajan ships (manifests/ uses the same): feedback must survive a restart
#: (append-only file, fsync every second) and must never be evicted to make room (noeviction: a
#: full Redis refuses writes, which the feedback API reports as 503, rather than dropping verdicts).
REDIS_CONFIG: Final = """appendonly yes
appendfsync everysec
maxmemory 256mb
maxmemory-policy noeviction
save ""
"""


class RedisServer:
    """Debian's ``redis-server`` on loopback with its own data dir and ajan's configuration.

    ``stop`` then ``start`` is a restart on the same port and data: what was acknowledged before a
    clean stop, or more than a second before a SIGKILL (``appendfsync everysec``), is still there.
    """

    def __init__(self, workdir: Path, *, binary: str = "redis-server") -> None:
        self.binary = binary
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.config = workdir / "redis.conf"
        self.config.write_text(
            REDIS_CONFIG
            + f"""bind 127.0.0.1
port {self.port}
dir {self.data_dir}
logfile {workdir / "redis.log"}
daemonize no
"""
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Its ``redis://`` URL."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (or restart) and wait until it answers PING with its data loaded."""
        self.proc = subprocess.Popen(
            [self.binary, str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        proc = self.proc

        def ready() -> bool:
            if proc.poll() is not None:
                raise StackError(f"redis-server exited with {proc.returncode}; see {self.workdir}/redis.log")
            # PING answers LOADING while the append-only file is replayed; a real reply means ready.
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 1) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(64).startswith(b"+PONG")
            return False

        ready_or_stopped(self.stop, (ready, "redis-server PING"))

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop and reap the process (SIGTERM: redis flushes the append-only file); data stays."""
        if self.proc is not None:
            stop_process(self.proc, sig=sig)


def history_span(history: Path) -> tuple[float, float]:
    """The first and last timestamps (epoch seconds) in one of the generator's history files."""
    # Every series has a point at every scrape time, and the file is ordered by series, then time:
    # its first sample line has the first time and its last one the last time.
    samples = [line for line in history.read_text().splitlines() if line and not line.startswith("#")]
    if not samples:
        raise StackError(f"{history} holds no sample")
    return float(samples[0].rsplit(" ", 1)[1]), float(samples[-1].rsplit(" ", 1)[1])


@dataclass
class MetricsStack:
    """A generator and a Prometheus backfilled with its past, scraping it live every second.

    ``history_start`` and ``history_end`` are the first and last timestamps (epoch seconds) in the
    history file; the generator's counters are zero at ``history_start``.
    """

    prometheus: PrometheusServer
    generator: Generator
    history_file: Path
    history_seconds: float
    seed: int
    day_seconds: float
    history_start: float
    history_end: float

    @classmethod
    def start(
        cls,
        workdir: Path,
        history_seconds: float = 900.0,
        *,
        seed: int = 11,
        day_seconds: float = 600.0,
        phase: float | None = DEFAULT_PHASE,
        binary: str = "prometheus",
        promtool: str = "promtool",
    ) -> MetricsStack:
        """Start a generator that has been "running" for ``history_seconds``, and its Prometheus.

        Returns as soon as Prometheus is ready, in 2-3 s: the history is queryable then. Live
        scrapes begin some 5 s later (Prometheus 2.42 holds its first targets back that long), a gap
        of about 6 s after the history's end; `wait_for_scrapes` waits for them. ``day_seconds`` is
        the length of the generator's daily load cycle: 86400 for a real day (a compressed day
        ramps the load like a fault); ``phase`` the simulated time of day at the start (a share of
        the day, 0 is midnight; None follows the clock). On a failed start, whatever was started is
        stopped.
        """
        workdir.mkdir(parents=True, exist_ok=True)
        history = workdir / "history.om"
        generator = start_generator(
            *("--seed", str(seed), "--day-seconds", str(day_seconds), "--job", JOB),
            *(() if phase is None else ("--phase", str(phase))),
            *("--history-seconds", str(history_seconds), "--history-file", str(history)),
            *("--scrape-interval", str(SCRAPE_INTERVAL_S)),
        )
        try:
            target = generator.url.removeprefix("http://")
            server = PrometheusServer(binary, workdir, target, history=history, promtool=promtool)
            server.start(wait_for_scrape=False)
            first, last = history_span(history)
        except BaseException:
            generator.stop()
            raise
        return cls(server, generator, history, history_seconds, seed, day_seconds, first, last)

    def stop(self) -> None:
        """Stop Prometheus, then the generator, and check both are gone."""
        try:
            self.prometheus.stop()
        finally:
            self.generator.stop()

    @property
    def url(self) -> str:
        """Prometheus's base URL."""
        return self.prometheus.url

    @property
    def generator_url(self) -> str:
        """The generator's base URL."""
        return self.generator.url

    def post_fault(self, **spec: object) -> dict[str, object]:
        """``POST /faults`` (fields of `ajan.simulate.generator.FaultSpec`); returns the fault."""
        response = httpx.post(f"{self.generator.url}/faults", json=spec, timeout=10)
        if response.status_code != 201:
            raise StackError(f"POST /faults answered {response.status_code}: {response.text}")
        fault: dict[str, object] = response.json()
        return fault

    def clear_faults(self) -> int:
        """``DELETE /faults``; returns how many faults were active."""
        response = httpx.delete(f"{self.generator.url}/faults", timeout=10)
        if response.status_code != 200:
            raise StackError(f"DELETE /faults answered {response.status_code}: {response.text}")
        cleared: int = response.json()["cleared"]
        return cleared

    def faults(self) -> list[dict[str, object]]:
        """``GET /faults``: the active faults."""
        response = httpx.get(f"{self.generator.url}/faults", timeout=10)
        if response.status_code != 200:
            raise StackError(f"GET /faults answered {response.status_code}: {response.text}")
        active: list[dict[str, object]] = response.json()["faults"]
        return active

    def wait_for_scrapes(self, count: int = 1, *, timeout: float = START_DEADLINE_S) -> None:
        """Wait until ``count`` live scrapes are queryable (the history has no ``up`` samples)."""

        def scraped() -> bool:
            response = httpx.get(
                f"{self.url}/api/v1/query",
                params={"query": f'count_over_time(up{{job="{JOB}"}}[1d]) >= {count}'},
                timeout=2,
            )
            return bool(response.json()["data"]["result"])

        wait_for(scraped, timeout=timeout, what=f"{count} live scrape(s) of the generator")


# --- the operator ---------------------------------------------------------------------------------


class OperatorProcess:
    """One ``ajan run`` subprocess watching one namespace (``None``: all of them, as the Deployment
    does); `start` again after `stop` to restart it.

    Its output (kopf's log) is appended to ``workdir/ajan.log``.
    """

    def __init__(
        self,
        kubeconfig: Path,
        namespace: str | None,
        prometheus_url: str,
        workdir: Path,
        *extra: str,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.env = dict(env or {})
        self.namespace = namespace
        self.prometheus_url = prometheus_url
        self.log_path = workdir / "ajan.log"
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, timeout: float = START_DEADLINE_S) -> None:
        """Start the operator and wait until kopf's liveness endpoint answers.

        Raises `StackError` with the operator's log if it exits first; a failed start stops it.
        """
        port = free_port()
        cmd = [
            sys.executable, "-m", "ajan", "run",
            *(["--namespace", self.namespace] if self.namespace is not None else []),
            "--prometheus-url", self.prometheus_url,
            "--liveness", f"http://127.0.0.1:{port}/healthz",
            *self.extra,
        ]  # fmt: skip
        env = _python_env(KUBECONFIG=str(self.kubeconfig), PYTHONUNBUFFERED="1", **self.env)
        with self.log_path.open("ab") as log:
            log.write(f"--- start {self.starts + 1}: {' '.join(cmd)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        self.starts += 1
        proc = self.proc

        def alive() -> bool:
            if proc.poll() is not None:
                raise StackError(f"ajan run exited with {proc.returncode}:\n{self.log()[-5000:]}")
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200

        ready_or_stopped(self.stop, (alive, "ajan's liveness endpoint"), timeout=timeout)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the operator (SIGTERM: kopf's graceful shutdown; SIGKILL: a crash). Idempotent."""
        if self.proc is not None:
            proc, self.proc = self.proc, None
            stop_process(proc, sig=sig, timeout=30.0)

    def log(self) -> str:
        """Everything the operator printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


# --- an example policy ----------------------------------------------------------------------------

#: Queries on the generator's canary: two SLO metrics and two signals that may lead them.
CANARY_METRICS: Final[tuple[dict[str, str], ...]] = (
    {
        "name": "latency-p99",
        "role": "slo",
        "query": "histogram_quantile(0.99, sum by (le) "
        '(rate(http_request_duration_seconds_bucket{track="canary"}[15s])))',
    },
    {
        "name": "error-ratio",
        "role": "slo",
        "query": 'sum(rate(http_requests_total{track="canary",code="500"}[15s])) '
        '/ sum(rate(http_requests_total{track="canary"}[15s]))',
    },
    {"name": "queue-depth", "query": 'sum(queue_depth{track="canary"})'},
    {"name": "memory", "query": 'sum(process_resident_memory_bytes{track="canary"})'},
)


def slo_metrics(p99_threshold: float) -> list[dict[str, Any]]:
    """`CANARY_METRICS` with p99 carrying its SLO: it must stay under ``p99_threshold`` seconds."""
    return [
        {**m, "objective": "max", "threshold": p99_threshold} if m["name"] == "latency-p99" else dict(m)
        for m in CANARY_METRICS
    ]


def first_at_or_above(prometheus_url: str, query: str, since: float, bound: float) -> float | None:
    """When ``query`` first reached ``bound`` after ``since`` (epoch seconds), at one-second
    resolution; None if it has not, or Prometheus cannot say."""
    try:
        response = httpx.get(
            f"{prometheus_url}/api/v1/query_range",
            params={"query": query, "start": since, "end": time.time(), "step": "1s"},
            timeout=10,
        )
        result = response.json()["data"]["result"]
        values = result[0]["values"] if result else []
        return next((float(t) for t, v in values if float(v) >= bound), None)
    except (httpx.HTTPError, KeyError, ValueError):
        return None


def first_p99_at_or_above(prometheus_url: str, since: float, bound: float) -> float | None:
    """When the canary's p99 first reached ``bound`` seconds after ``since`` (`first_at_or_above`)."""
    query = next(m["query"] for m in CANARY_METRICS if m["name"] == "latency-p99")
    return first_at_or_above(prometheus_url, query, since, bound)


def canary_policy(name: str, *, interval_s: float = 2.0, **overrides: Any) -> dict[str, Any]:
    """A CorrelationPolicy on the generator's canary (`CANARY_METRICS`), as the end-to-end tests use.

    Evaluated every ``interval_s`` over a 3-minute window at 1 s steps, lags up to 20 s, dry-run;
    ``overrides`` replace top-level spec fields (``remediation``, ``metrics``, ``prometheus``...).
    """
    spec: dict[str, Any] = {
        "targetRef": {"name": JOB},
        "interval": f"{interval_s:g}s",
        "window": "3m",
        "step": "1s",
        "metrics": [dict(m) for m in CANARY_METRICS],
        "correlation": {"maxLag": "20s"},
        "remediation": {"mode": "dry-run"},
    }
    spec.update(overrides)
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "CorrelationPolicy",
        "metadata": {"name": name},
        "spec": spec,
    }
