"""Fixtures for the tests against a real Prometheus scraping the metrics generator.

Session-wide: Prometheus installed from Debian's package (``hack/prometheus-install.sh``), one
generator (``python -m ajan.simulate.generator``) and one Prometheus scraping it every second, both
on loopback. Tests that stop a Prometheus get their own (`own_prometheus`). Tests that need minutes
of history at once call `prometheus_with_history`: a generator and a Prometheus of their own, the
Prometheus backfilled (``promtool tsdb create-blocks-from openmetrics``) with the generator's past
before it starts. Every wait polls a condition with a deadline; teardown asserts that no process is
left behind.
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
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol, TypeVar

import httpx
import pytest

ROOT: Final = Path(__file__).resolve().parents[2]
SCRAPE_INTERVAL_S: Final = 1
#: The scrape job, hence the ``job`` label of every series (and of the generator's history).
JOB: Final = "checkout"
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


def start_generator(*args: str) -> Generator:
    """Start ``python -m ajan.simulate.generator --port 0 ARGS...`` and wait until it serves.

    The caller stops it (`stop`); on a failed start it is stopped here.
    """
    cmd = [sys.executable, "-m", "ajan.simulate.generator", "--port", "0", *args]
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
    except BaseException:
        stop(proc)
        raise
    return Generator(proc, url)


@pytest.fixture(scope="session")
def generator() -> Iterator[Generator]:
    """The metrics generator on a free loopback port (it picks one and prints it)."""
    started = start_generator("--seed", "7", "--day-seconds", "600")
    try:
        yield started
    finally:
        stop(started.proc)


class BackfillError(AssertionError):
    """``promtool tsdb create-blocks-from openmetrics`` refused a history file."""


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
    """A real Prometheus on loopback with its own data dir, scraping the generator every second.

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
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, wait_for_scrape: bool = True) -> None:
        """Start (or restart, on the same port and data dir) and wait until it is ready.

        The first start backfills the history, if any; a `BackfillError` leaves no process behind.
        With ``wait_for_scrape``, also wait until a live scrape is queryable: Prometheus 2.42 hands
        its first targets to the scrape loop only after a fixed 5 s, so that costs 5-6 s.
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
            assert proc.poll() is None, (
                f"prometheus exited with {proc.returncode}; see {self.workdir}/prometheus.log"
            )
            return httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200

        def scraped() -> bool:
            response = httpx.get(
                f"{self.url}/api/v1/query", params={"query": f'up{{job="{JOB}"}} == 1'}, timeout=2
            )
            return bool(response.json()["data"]["result"])

        wait_for(ready, timeout=START_DEADLINE_S, what="prometheus /-/ready")
        if wait_for_scrape:
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


@dataclass
class HistoryStack:
    """A generator of a test's own and a Prometheus backfilled with its past, scraping it live.

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
        assert response.status_code == 201, response.text
        fault: dict[str, object] = response.json()
        return fault

    def clear_faults(self) -> int:
        """``DELETE /faults``; returns how many faults were active."""
        response = httpx.delete(f"{self.generator.url}/faults", timeout=10)
        assert response.status_code == 200, response.text
        cleared: int = response.json()["cleared"]
        return cleared

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

    def faults(self) -> list[dict[str, object]]:
        """``GET /faults``: the active faults."""
        response = httpx.get(f"{self.generator.url}/faults", timeout=10)
        assert response.status_code == 200, response.text
        active: list[dict[str, object]] = response.json()["faults"]
        return active


class StartWithHistory(Protocol):
    """The `prometheus_with_history` factory's signature."""

    def __call__(
        self, history_seconds: float = 900.0, *, seed: int = 11, day_seconds: float = 600.0
    ) -> HistoryStack: ...


def _history_span(history: Path) -> tuple[float, float]:
    # Every series has a point at every scrape time, and the file is ordered by series, then time:
    # its first sample line has the first time and its last one the last time.
    samples = [line for line in history.read_text().splitlines() if line and not line.startswith("#")]
    assert samples, f"{history} holds no sample"
    return float(samples[0].rsplit(" ", 1)[1]), float(samples[-1].rsplit(" ", 1)[1])


@pytest.fixture
def prometheus_with_history(prometheus_installed: str, tmp_path: Path) -> Iterator[StartWithHistory]:
    """A factory: ``start(history_seconds=900, seed=11, day_seconds=600)`` -> `HistoryStack`.

    Each call starts a dedicated generator that has been "running" for ``history_seconds`` and
    writes that past, then a Prometheus backfilled with it and scraping the generator every
    `SCRAPE_INTERVAL_S`, and returns as soon as Prometheus is ready, in 2-3 s: the history is
    queryable then. Live scrapes begin some 5 s later (Prometheus 2.42 holds its first targets
    back that long), which leaves a gap of about 6 s between the history's end and the first live
    sample; `HistoryStack.wait_for_scrapes` waits for live samples. Everything started is stopped,
    and checked gone, after the test.
    """
    with ExitStack() as cleanup:

        def start(
            history_seconds: float = 900.0, *, seed: int = 11, day_seconds: float = 600.0
        ) -> HistoryStack:
            workdir = tmp_path / f"history-{seed}-{time.monotonic_ns()}"
            workdir.mkdir()
            history = workdir / "history.om"
            generator = start_generator(
                *("--seed", str(seed), "--day-seconds", str(day_seconds), "--job", JOB),
                *("--history-seconds", str(history_seconds), "--history-file", str(history)),
                *("--scrape-interval", str(SCRAPE_INTERVAL_S)),
            )
            cleanup.callback(stop, generator.proc)
            target = generator.url.removeprefix("http://")
            server = PrometheusServer(prometheus_installed, workdir, target, history=history)
            cleanup.callback(server.stop)
            server.start(wait_for_scrape=False)
            first, last = _history_span(history)
            return HistoryStack(
                prometheus=server,
                generator=generator,
                history_file=history,
                history_seconds=history_seconds,
                seed=seed,
                day_seconds=day_seconds,
                history_start=first,
                history_end=last,
            )

        yield start
