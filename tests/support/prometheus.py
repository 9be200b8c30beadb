"""Fixtures for the tests against a real Prometheus scraping the metrics generator.

Session-wide: Prometheus installed from Debian's package (``hack/prometheus-install.sh``), one
generator (``python -m ajan.simulate.generator``) and one Prometheus scraping it every second, both
on loopback. Tests that stop a Prometheus get their own (`own_prometheus`). Tests that need minutes
of history at once call `prometheus_with_history`: a generator and a Prometheus of their own, the
Prometheus backfilled (``promtool tsdb create-blocks-from openmetrics``) with the generator's past
before it starts. The pieces themselves are `ajan.simulate.stack`'s; every wait polls a condition
with a deadline; teardown checks that no process is left behind.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Protocol

import pytest

from ajan.simulate import stack
from ajan.simulate.stack import (
    DEFAULT_PHASE,
    JOB,
    SCRAPE_INTERVAL_S,
    START_DEADLINE_S,
    BackfillError,
    Generator,
    PrometheusServer,
    backfill,
    free_port,
    start_generator,
    wait_for,
)
from ajan.simulate.stack import MetricsStack as HistoryStack
from ajan.simulate.stack import stop_process as stop

__all__ = [
    "JOB",
    "SCRAPE_INTERVAL_S",
    "START_DEADLINE_S",
    "BackfillError",
    "Generator",
    "HistoryStack",
    "PrometheusServer",
    "StartWithHistory",
    "assert_gone",
    "backfill",
    "free_port",
    "start_generator",
    "stop",
    "wait_for",
]


def assert_gone(proc: subprocess.Popen[bytes]) -> None:
    """The process has exited and been reaped: nothing of it is left in the process table."""
    stack.assert_gone(proc)


@pytest.fixture(name="wait_for")
def wait_for_fixture() -> Callable[..., object]:
    """`wait_for` as a fixture."""
    return wait_for


@pytest.fixture(scope="session")
def prometheus_installed() -> str:
    """Runs the install script (a no-op when installed) and returns the ``prometheus`` binary."""
    started = time.monotonic()
    binary = stack.install_prometheus(always=True)
    print(f"\nprometheus-install.sh took {time.monotonic() - started:.1f}s", file=sys.stderr)
    return binary


@pytest.fixture(scope="session")
def generator() -> Iterator[Generator]:
    """The metrics generator on a free loopback port (it picks one and prints it)."""
    started = start_generator("--seed", "7", "--day-seconds", "600")
    try:
        yield started
    finally:
        started.stop()


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


class StartWithHistory(Protocol):
    """The `prometheus_with_history` factory's signature."""

    def __call__(
        self,
        history_seconds: float = 900.0,
        *,
        seed: int = 11,
        day_seconds: float = 600.0,
        phase: float | None = DEFAULT_PHASE,
    ) -> HistoryStack: ...


@pytest.fixture
def prometheus_with_history(prometheus_installed: str, tmp_path: Path) -> Iterator[StartWithHistory]:
    """A factory: ``start(history_seconds=900, seed=11, day_seconds=600, phase=0)`` -> `HistoryStack`.

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
            history_seconds: float = 900.0,
            *,
            seed: int = 11,
            day_seconds: float = 600.0,
            phase: float | None = DEFAULT_PHASE,
        ) -> HistoryStack:
            workdir = tmp_path / f"history-{seed}-{time.monotonic_ns()}"
            workdir.mkdir()
            started = HistoryStack.start(
                workdir,
                history_seconds,
                seed=seed,
                day_seconds=day_seconds,
                phase=phase,
                binary=prometheus_installed,
            )
            cleanup.callback(started.stop)
            return started

        yield start
