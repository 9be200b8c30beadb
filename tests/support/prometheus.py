"""Fixtures for the tests against a real Prometheus scraping the metrics generator.

Session-wide: Prometheus installed from Debian's package (``hack/prometheus-install.sh``), one
generator (``python -m ajan.simulate.generator``) and one Prometheus scraping it every second, both
on loopback. Tests that stop a Prometheus get their own (`own_prometheus`). Every wait polls a
condition with a deadline; teardown asserts that no process is left behind.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar

import httpx
import pytest

ROOT: Final = Path(__file__).resolve().parents[2]
SCRAPE_INTERVAL_S: Final = 1
#: Generous deadlines: a loaded 2-core CI machine is slow, and polling returns as soon as it can.
START_DEADLINE_S: Final = 60.0

T = TypeVar("T")


def wait_for(check: Callable[[], T | None], *, timeout: float, what: str, interval: float = 0.2) -> T:
    """Poll ``check`` until it returns something other than None/False; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = check()
            if value is not None and value is not False:
                return value
        except (
            Exception
        ) as err:  # the thing polled is not up yet: keep the last reason for the failure message
            last_error = err
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what} (last error: {last_error!r})"
            )
        time.sleep(interval)


@pytest.fixture(name="wait_for")
def wait_for_fixture() -> Callable[..., object]:
    """`wait_for` as a fixture."""
    return wait_for


def free_port() -> int:
    """A loopback port free right now (a small race with other processes, acceptable in tests)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def assert_gone(proc: subprocess.Popen[bytes]) -> None:
    """The process has exited and been reaped: nothing of it is left in the process table."""
    assert proc.poll() is not None, f"process {proc.pid} still running"
    assert not Path(f"/proc/{proc.pid}").exists(), f"process {proc.pid} left in the process table"


def stop(proc: subprocess.Popen[bytes], *, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
    """Signal the process (its own session, so its whole group) and reap it; SIGKILL if it lingers."""
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)
    if proc.stdout is not None:
        proc.stdout.close()
    assert_gone(proc)


@pytest.fixture(scope="session")
def prometheus_installed() -> str:
    """Runs the install script (a no-op when installed) and returns the ``prometheus`` binary."""
    started = time.monotonic()
    subprocess.run(["bash", str(ROOT / "hack" / "prometheus-install.sh")], check=True, timeout=900)
    print(f"\nprometheus-install.sh took {time.monotonic() - started:.1f}s", file=sys.stderr)
    return "prometheus"


@dataclass
class Generator:
    """A running metrics generator."""

    proc: subprocess.Popen[bytes]
    url: str


@pytest.fixture(scope="session")
def generator() -> Iterator[Generator]:
    """The metrics generator on a free loopback port (it picks one and prints it)."""
    cmd = [
        sys.executable,
        "-m",
        "ajan.simulate.generator",
        "--port",
        "0",
        "--seed",
        "7",
        "--day-seconds",
        "600",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "operator")}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, start_new_session=True)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], START_DEADLINE_S)
        line = proc.stdout.readline().decode() if ready else ""
        assert line.startswith("listening on "), f"generator did not start: {line!r}, exit {proc.poll()}"
        url = "http://" + line.removeprefix("listening on ").strip()
        wait_for(
            lambda: httpx.get(f"{url}/metrics").status_code == 200, timeout=10, what="generator /metrics"
        )
        yield Generator(proc, url)
    finally:
        stop(proc)


class PrometheusServer:
    """A real Prometheus on loopback with its own data dir, scraping the generator every second."""

    def __init__(self, binary: str, workdir: Path, target: str) -> None:
        self.binary = binary
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.config = workdir / "prometheus.yml"
        self.config.write_text(
            f"""global:
  scrape_interval: {SCRAPE_INTERVAL_S}s
  scrape_timeout: {SCRAPE_INTERVAL_S}s
  evaluation_interval: {SCRAPE_INTERVAL_S}s
scrape_configs:
  - job_name: checkout
    static_configs:
      - targets: ["{target}"]
"""
        )
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start (or restart, on the same port and data dir) and wait until a scrape is queryable."""
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
            assert proc.poll() is None, (
                f"prometheus exited with {proc.returncode}; see {self.workdir}/prometheus.log"
            )
            return httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200

        def scraped() -> bool:
            response = httpx.get(
                f"{self.url}/api/v1/query", params={"query": 'up{job="checkout"} == 1'}, timeout=2
            )
            return bool(response.json()["data"]["result"])

        wait_for(ready, timeout=START_DEADLINE_S, what="prometheus /-/ready")
        wait_for(scraped, timeout=START_DEADLINE_S, what="a first scrape of the generator")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop and reap the process; the data dir stays for a restart."""
        if self.proc is not None:
            stop(self.proc, sig=sig)


@pytest.fixture(scope="session")
def prometheus(
    prometheus_installed: str, generator: Generator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusServer]:
    """The session's Prometheus, scraping the session's generator."""
    server = PrometheusServer(
        prometheus_installed, tmp_path_factory.mktemp("prometheus"), generator.url.removeprefix("http://")
    )
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_prometheus(
    prometheus_installed: str, generator: Generator, tmp_path: Path
) -> Iterator[PrometheusServer]:
    """A Prometheus of the test's own, which the test may kill and restart."""
    server = PrometheusServer(prometheus_installed, tmp_path, generator.url.removeprefix("http://"))
    try:
        server.start()
        yield server
    finally:
        server.stop()
