"""The operator as its users run it: ``ajan run`` in a process of its own, against the test control plane.

`ajan_operator` starts it (watching one namespace, with a default Prometheus) and waits for kopf's
liveness endpoint; the test may restart or stop it; teardown stops it and checks that nothing of it
is left. Its log is kept in the test's temporary directory and printed when a test fails.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

import httpx
import pytest

from support.kube import Kube
from support.prometheus import free_port, stop, wait_for

ROOT: Final = Path(__file__).resolve().parents[2]
START_DEADLINE_S: Final = 60.0


class OperatorProcess:
    """One ``ajan run`` subprocess; `start` again after `stop` to model a restart."""

    def __init__(self, kube: Kube, namespace: str, prometheus_url: str, workdir: Path, *extra: str) -> None:
        self.kube = kube
        self.namespace = namespace
        self.prometheus_url = prometheus_url
        self.log_path = workdir / "ajan.log"
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        """Start the operator and wait until kopf's liveness endpoint answers."""
        port = free_port()
        cmd = [
            sys.executable, "-m", "ajan", "run",
            "--namespace", self.namespace,
            "--prometheus-url", self.prometheus_url,
            "--liveness", f"http://127.0.0.1:{port}/healthz",
            *self.extra,
        ]  # fmt: skip
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kube.admin_kubeconfig),
            "PYTHONPATH": str(ROOT / "operator"),
            "PYTHONUNBUFFERED": "1",
        }
        log = self.log_path.open("ab")
        log.write(f"--- start {self.starts + 1}: {' '.join(cmd)}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        log.close()
        self.starts += 1
        proc = self.proc

        def alive() -> bool:
            assert proc.poll() is None, f"ajan run exited with {proc.returncode}:\n{self.log()}"
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200

        wait_for(alive, timeout=START_DEADLINE_S, what="ajan's liveness endpoint")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the operator (SIGTERM: kopf's graceful shutdown; SIGKILL: a crash)."""
        if self.proc is not None:
            stop(self.proc, sig=sig, timeout=30.0)
            self.proc = None

    def log(self) -> str:
        """Everything the operator printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def ajan_operator(
    kube: Kube, namespace: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., OperatorProcess]]:
    """Factory: ``ajan_operator(prometheus_url, *extra_flags)`` runs ``ajan run`` on the test namespace."""
    started: list[OperatorProcess] = []

    def start(prometheus_url: str, *extra: str) -> OperatorProcess:
        process = OperatorProcess(kube, namespace, prometheus_url, tmp_path, *extra)
        started.append(process)
        process.start()
        return process

    yield start
    failed = getattr(request.node, "rep_call", None)
    for process in started:
        process.stop()
        if failed is not None and failed.failed:
            print(f"\n--- ajan log ({process.log_path}) ---\n{process.log()[-20000:]}")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Keep each phase's report on the test item, so fixtures can tell whether the test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
