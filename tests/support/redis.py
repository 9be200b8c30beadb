"""Fixtures for the tests against a real Redis: Debian's ``redis-server``, configured as ajan ships it.

`redis_server` is one per test (a fresh data dir and port), because the tests stop, kill and restart
it; starting one takes ~50 ms. Teardown checks that no process is left behind.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ajan.simulate import stack
from ajan.simulate.stack import RedisServer


@pytest.fixture(scope="session")
def redis_installed() -> None:
    """Runs the install script when ``redis-server`` is missing (a no-op otherwise)."""
    stack.install_servers()


@pytest.fixture
def redis_server(redis_installed: None, tmp_path: Path) -> Iterator[RedisServer]:
    """A started Redis of the test's own, stopped (and checked gone) afterwards."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()
        if server.proc is not None:
            stack.assert_gone(server.proc)
