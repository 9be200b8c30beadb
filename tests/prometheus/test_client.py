"""The Prometheus client against a real Prometheus, and against tiny local servers for the faults a
real server cannot show on demand (hanging, answering garbage, flooding)."""

from __future__ import annotations

import asyncio
import math
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Final, TypeVar

import httpx
import numpy as np
import pytest

from ajan.clients import (
    AmbiguousResult,
    MalformedResponse,
    MetricSource,
    MetricSourceError,
    PrometheusSource,
    PrometheusUnavailable,
    QueryFailed,
    RangeResult,
)
from ajan.clients.prometheus import MAX_ANSWER_BYTES, ThrottledSource
from ajan.errors import DataError, InsufficientData
from support.prometheus import Generator, PrometheusServer

Poll = Callable[..., Any]

T = TypeVar("T")

CANARY_RATE: Final = 'sum(rate(http_requests_total{service="checkout",track="canary"}[5s]))'
CANARY_P90: Final = (
    "histogram_quantile(0.9, sum by (le) "
    '(rate(http_request_duration_seconds_bucket{service="checkout",track="canary"}[3s])))'
)
STABLE_P90: Final = CANARY_P90.replace('track="canary"', 'track="stable"')


def run(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine on a fresh event loop (the tests are sync; the client is async)."""

    async def main() -> T:
        return await make()

    return asyncio.run(main())


async def range_query(
    url: str, query: str, seconds: float = 20, step: float = 1, **kwargs: int
) -> RangeResult:
    async with httpx.AsyncClient() as http:
        end = math.floor(time.time())
        return await PrometheusSource(http, url, timeout_s=10).query_range(
            query, end - seconds, end, step, **kwargs
        )


def query_error(url: str, query: str, **kwargs: int) -> DataError:
    with pytest.raises(DataError) as caught:
        run(lambda: range_query(url, query, **kwargs))
    return caught.value


def latest(url: str, query: str, min_points: int = 1) -> float:
    result = run(lambda: range_query(url, query, seconds=10, min_points=min_points))
    finite = result.values[np.isfinite(result.values)]
    return float(finite[-1])


def test_prometheus_source_is_a_metric_source() -> None:
    async def check() -> bool:
        async with httpx.AsyncClient() as http:
            return isinstance(PrometheusSource(http, "http://127.0.0.1:1"), MetricSource)

    assert run(check)


def test_canary_request_rate_is_aligned_and_finite(prometheus: PrometheusServer, wait_for: Poll) -> None:
    # Wait (with a deadline) until Prometheus holds 10 s of rates, then check a range query's shape.
    wait_for(
        lambda: run(lambda: range_query(prometheus.url, CANARY_RATE, seconds=10, min_points=10)),
        timeout=60,
        what="10 s of canary request rates",
    )
    end = math.floor(time.time())
    start = end - 10.0

    async def query() -> RangeResult:
        async with httpx.AsyncClient() as http:
            return await PrometheusSource(http, prometheus.url).query_range(CANARY_RATE, start, end, 0.5)

    result = run(query)
    np.testing.assert_array_equal(result.timestamps, start + 0.5 * np.arange(21))
    assert result.values.shape == (21,)
    finite = result.values[np.isfinite(result.values)]
    assert len(finite) >= 19  # the last point may precede the scrape that covers it
    # The canary gets 5 rps at the daily mean; the generator's day is 600 s: 2 (midnight) .. 8 (noon).
    # Not "> 1": in the first minute of a series rate() extrapolates from few samples and reads low
    # (0.7 seen at simulated midnight), and when the test runs depends on the wall clock.
    assert np.all((finite > 0) & (finite < 10))
    assert result.labels == {}
    assert result.non_finite == 0


def test_fractional_start_and_step_stay_on_the_grid(prometheus: PrometheusServer, wait_for: Poll) -> None:
    # Prometheus keeps millisecond timestamps; a start like 1763925000.123456 must still map point k
    # to start + k * step.
    wait_for(
        lambda: run(lambda: range_query(prometheus.url, CANARY_RATE, seconds=5, min_points=5)),
        timeout=60,
        what="data",
    )
    start = time.time() - 6.123456

    async def query() -> RangeResult:
        async with httpx.AsyncClient() as http:
            return await PrometheusSource(http, prometheus.url).query_range(
                CANARY_RATE, start, start + 5, 0.25
            )

    result = run(query)
    np.testing.assert_array_equal(result.timestamps, start + 0.25 * np.arange(21))
    assert result.finite_points == 21


def test_is_online(prometheus: PrometheusServer) -> None:
    async def check() -> tuple[bool, bool]:
        async with httpx.AsyncClient() as http:
            up = await PrometheusSource(http, prometheus.url).is_online()
            down = await PrometheusSource(http, "http://127.0.0.1:1", timeout_s=2).is_online()
            return up, down

    assert run(check) == (True, False)


def test_two_series_are_ambiguous(prometheus: PrometheusServer) -> None:
    error = query_error(prometheus.url, "sum by (track) (rate(http_requests_total[5s]))")
    assert isinstance(error, AmbiguousResult)
    assert error.reason == "QueryFailed"
    assert "2 series" in str(error)
    assert '"track": "canary"' in str(error) and '"track": "stable"' in str(error)


def test_bad_promql_names_prometheus_message(prometheus: PrometheusServer) -> None:
    error = query_error(prometheus.url, "sum(rate(http_requests_total[5s])")
    assert type(error) is QueryFailed
    assert error.reason == "QueryFailed"
    assert (error.status_code, error.error_type) == (400, "bad_data")
    assert "parse error" in str(error)  # Prometheus's own message, passed on


def test_missing_metric_is_insufficient_data(prometheus: PrometheusServer) -> None:
    error = query_error(prometheus.url, 'ajan_no_such_metric{service="checkout"}')
    assert isinstance(error, InsufficientData)
    assert error.reason == "InsufficientData"
    assert "no series" in str(error)


def test_fewer_points_than_asked_is_insufficient_data(prometheus: PrometheusServer) -> None:
    # An hour back: Prometheus has only the last seconds of it, far fewer than every point asked for.
    error = query_error(prometheus.url, CANARY_RATE, seconds=3600, step=10, min_points=361)
    assert isinstance(error, InsufficientData)
    assert "fewer than the 361 required" in str(error)


@pytest.mark.parametrize(
    "query", ["vector(0) / vector(0)", "vector(1) / vector(0)", "-vector(1) / vector(0)"]
)
def test_nan_and_inf_values_are_gaps(prometheus: PrometheusServer, query: str) -> None:
    # Prometheus writes these as the strings "NaN", "+Inf", "-Inf": none is a usable sample.
    error = query_error(prometheus.url, query, seconds=4)
    assert isinstance(error, InsufficientData)
    assert "5 were NaN or infinite" in str(error)


def test_stopped_prometheus_is_unavailable_then_recovers(
    own_prometheus: PrometheusServer, wait_for: Poll
) -> None:
    before_kill = wait_for(
        lambda: run(lambda: range_query(own_prometheus.url, CANARY_RATE, seconds=5, min_points=3)),
        timeout=60,
        what="a few scrapes in the test's own Prometheus",
    )
    own_prometheus.stop(signal.SIGKILL)

    error = query_error(own_prometheus.url, CANARY_RATE)
    assert isinstance(error, PrometheusUnavailable)
    assert error.reason == "PrometheusUnavailable"
    assert "unreachable" in str(error) and "ConnectError" in str(error)

    own_prometheus.start()  # same port, same data dir: the WAL is replayed

    async def query_before_kill() -> RangeResult:
        async with httpx.AsyncClient() as http:
            source = PrometheusSource(http, own_prometheus.url)
            assert await source.is_online()
            start, end = before_kill.timestamps[0], before_kill.timestamps[-1]
            return await source.query_range(CANARY_RATE, start, end, 1.0, min_points=3)

    again = run(query_before_kill)
    # The samples scraped before the kill survived it.
    both = np.isfinite(again.values) & np.isfinite(before_kill.values)
    assert np.count_nonzero(both) >= 3
    np.testing.assert_allclose(again.values[both], before_kill.values[both])


def test_unresolvable_host_is_unavailable() -> None:
    error = query_error("http://ajan-no-such-host.invalid:9090", CANARY_RATE)
    assert isinstance(error, PrometheusUnavailable)


# --- faults a real Prometheus cannot show on demand -----------------------------------------------
# These local TCP servers are the mocks: nothing makes a real Prometheus hang on one query while it
# answers the others, or answer garbage, when a test asks (a whole Prometheus hung by SIGSTOP is in
# tests/e2e/test_faults_under_load.py). They speak just enough HTTP for httpx.


@asynccontextmanager
async def tcp_server(
    handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[str]:
    """Serve ``handle`` on a free loopback port; yields the base URL."""
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Reads the request, then holds the connection open without a byte of answer."""
    await reader.read(65536)
    await hold_open(writer)


async def hold_open(writer: asyncio.StreamWriter) -> None:
    """Hold the connection open without a byte of answer, until the server closes."""
    try:
        await asyncio.Event().wait()
    finally:
        writer.close()


def answer(
    status: str, content_type: str, body: bytes
) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        head = f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        writer.write(head.encode() + b"Connection: close\r\n\r\n" + body)
        await writer.drain()
        writer.close()

    return handle


def test_an_answer_of_many_series_is_refused_before_it_is_all_read() -> None:
    """A query that forgot to aggregate over 10,000 pods: the answer (here 64 MiB, announced and
    sent) is refused once past the cap, as ambiguous, instead of being read and parsed whole."""
    one = b'{"metric": {"pod": "p"}, "values": [[0, "1"]]},'
    total = 64 * 2**20
    sent = 0

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        await reader.read(65536)
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {total}\r\n\r\n"
        writer.write(head.encode())
        block = one * (2**16 // len(one))
        try:
            while sent < total:
                writer.write(block)
                await writer.drain()
                sent += len(block)
        except (ConnectionError, OSError):
            pass  # the client hung up: what the test wants
        finally:
            writer.close()

    async def scenario() -> MetricSourceError:
        async with tcp_server(flood) as url, httpx.AsyncClient() as http:
            with pytest.raises(MetricSourceError) as caught:
                await PrometheusSource(http, url, timeout_s=10).query_range("up", 0, 60, 15)
            return caught.value

    error = run(scenario)
    assert isinstance(error, AmbiguousResult) and error.reason == "QueryFailed"
    assert f"passed {MAX_ANSWER_BYTES // 2**20} MiB" in str(error) and "aggregate it" in str(error)
    assert sent < total / 2, "the client read on after the cap"


def test_hanging_server_times_out_as_unavailable() -> None:
    async def scenario() -> MetricSourceError:
        async with tcp_server(never_answer) as url, httpx.AsyncClient() as http:
            with pytest.raises(MetricSourceError) as caught:
                await PrometheusSource(http, url, timeout_s=0.5).query_range("up", 0, 60, 15)
            return caught.value

    error = run(scenario)
    assert isinstance(error, PrometheusUnavailable)
    assert "timed out after 0.5s" in str(error)


def _counting_server(hang_on: bytes) -> tuple[list[bytes], Callable[..., Awaitable[None]]]:
    """A server that records each request and never answers one containing ``hang_on``; the others
    get a one-point matrix."""
    seen: list[bytes] = []
    body = b'{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[0,"1"]]}]}}'

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.read(65536)
        seen.append(request)
        if hang_on in request:
            await hold_open(writer)
            return
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        writer.write(head.encode() + b"Connection: close\r\n\r\n" + body)
        await writer.drain()
        writer.close()

    return seen, handle


def test_a_hung_prometheus_is_not_asked_again_for_one_timeout() -> None:
    """Queries queued behind a hung Prometheus's slots fail at once with its timeout instead of each
    waiting a whole timeout of their own; after one timeout's length it is asked again."""
    now = [0.0]
    seen, handle = _counting_server(hang_on=b"query=")

    async def scenario() -> list[BaseException | RangeResult]:
        async with tcp_server(handle) as url, httpx.AsyncClient() as http:
            source = ThrottledSource(
                PrometheusSource(http, url, timeout_s=0.5), asyncio.Semaphore(2), clock=lambda: now[0]
            )
            queries = [source.query_range(f"q{i}", 0, 0, 15) for i in range(6)]
            errors = await asyncio.gather(*queries, return_exceptions=True)
            asked_before = len(seen)
            now[0] += 0.6  # one timeout later
            with pytest.raises(PrometheusUnavailable):
                await source.query_range("again", 0, 0, 15)
            assert len(seen) == asked_before + 1  # asked again
            return errors

    errors = run(scenario)
    assert all(isinstance(e, PrometheusUnavailable) and e.reason == "PrometheusUnavailable" for e in errors)
    asked = [e for e in errors if "not asked again" not in str(e)]
    refused = [e for e in errors if "not asked again" in str(e)]
    # The two in the slots were sent and timed out; the four waiting behind them were never sent.
    assert len(asked) == 2 and len(refused) == 4, errors
    assert all("timed out after 0.5s" in str(e) for e in errors)


def test_one_slow_query_on_a_prometheus_that_answers_pauses_nothing() -> None:
    """A heavy query that times out while Prometheus answers the others is that query's problem:
    the next queries are sent as usual."""
    seen, handle = _counting_server(hang_on=b"heavy")

    async def scenario() -> RangeResult:
        async with tcp_server(handle) as url, httpx.AsyncClient() as http:
            source = ThrottledSource(PrometheusSource(http, url, timeout_s=0.5), asyncio.Semaphore(4))
            heavy = asyncio.create_task(source.query_range("heavy", 0, 0, 15))
            await source.query_range("light", 0, 0, 15)  # answered while the heavy one hangs
            with pytest.raises(PrometheusUnavailable):
                await heavy
            return await source.query_range("light", 0, 0, 15)

    result = run(scenario)
    assert result.values.tolist() == [1.0]
    assert len(seen) == 3


@pytest.mark.parametrize(
    ("status", "content_type", "body", "expected", "fragment"),
    [
        ("200 OK", "text/plain", b"not json", MalformedResponse, "is not JSON: 'not json'"),
        ("200 OK", "application/json", b'["a list"]', MalformedResponse, "not an API response"),
        (
            "200 OK",
            "application/json",
            b'{"status": "success", "data": {"resultType": "vector", "result": []}}',
            MalformedResponse,
            "expected a matrix",
        ),
        (
            "200 OK",
            "application/json",
            b'{"status": "success", "data": {"resultType": "matrix", '
            b'"result": [{"metric": {}, "values": [[1]]}]}}',
            MalformedResponse,
            "bad sample",
        ),
        (
            "200 OK",
            "application/json",
            b'{"status": "success", "data": {"resultType": "matrix", '
            b'"result": [{"metric": {}, "values": [[7, "1"]]}]}}',
            MalformedResponse,
            "off the requested step grid",
        ),
        (
            "200 OK",
            "application/json",
            b'{"status": "success", "data": {"resultType": "matrix", '
            b'"result": [{"metric": {}, "values": [[0, "1"], [15, 2.5]]}]}}',
            MalformedResponse,
            "sample value 2.5 is not a string",
        ),
        (
            "200 OK",
            "application/json",
            b'{"status": "success", "data": {"resultType": "matrix", '
            b'"result": [{"metric": {}, "values": [[0, "1"], [15, "fast"]]}]}}',
            MalformedResponse,
            "bad sample [15, 'fast']",
        ),
        ("502 Bad Gateway", "text/html", b"<html>upstream down</html>", PrometheusUnavailable, "HTTP 502"),
        ("500 Internal Server Error", "text/plain", b"boom", QueryFailed, "HTTP 500: boom"),
        (
            "422 Unprocessable Entity",
            "application/json",
            b'{"status": "error", "errorType": "execution", "error": "many-to-many matching not allowed"}',
            QueryFailed,
            "execution): many-to-many",
        ),
    ],
)
def test_bad_answers_are_classified(
    status: str, content_type: str, body: bytes, expected: type[MetricSourceError], fragment: str
) -> None:
    async def scenario() -> MetricSourceError:
        async with tcp_server(answer(status, content_type, body)) as url, httpx.AsyncClient() as http:
            with pytest.raises(MetricSourceError) as caught:
                await PrometheusSource(http, url, timeout_s=5).query_range("up", 0, 60, 15)
            return caught.value

    error = run(scenario)
    assert type(error) is expected
    assert fragment in str(error)
    assert error.reason == ("PrometheusUnavailable" if expected is PrometheusUnavailable else "QueryFailed")


def test_hanging_server_does_not_delay_other_queries(prometheus: PrometheusServer, wait_for: Poll) -> None:
    wait_for(
        lambda: run(lambda: range_query(prometheus.url, CANARY_RATE, seconds=5, min_points=3)),
        timeout=60,
        what="data",
    )
    finished: list[str] = []

    async def scenario() -> list[object]:
        async with tcp_server(never_answer) as hanging_url, httpx.AsyncClient() as http:
            hanging = PrometheusSource(http, hanging_url, timeout_s=5)
            real = PrometheusSource(http, prometheus.url, timeout_s=30)
            end = math.floor(time.time())

            async def one(name: str, source: PrometheusSource) -> RangeResult:
                try:
                    return await source.query_range(CANARY_RATE, end - 5, end, 1)
                finally:
                    finished.append(name)

            # The hanging query is scheduled first, so it holds a connection before the others start.
            tasks = [asyncio.create_task(one("hanging", hanging))]
            await asyncio.sleep(0)
            tasks += [asyncio.create_task(one(f"real-{i}", real)) for i in range(19)]
            return await asyncio.gather(*tasks, return_exceptions=True)

    results = run(scenario)
    assert isinstance(results[0], PrometheusUnavailable) and "timed out" in str(results[0])
    assert all(isinstance(r, RangeResult) for r in results[1:]), results
    # Every real query completed while the hanging one was still waiting for its own deadline.
    assert finished[-1] == "hanging"
    assert sorted(finished[:-1]) == sorted(f"real-{i}" for i in range(19))


def test_injected_latency_creep_reaches_canary_p90(
    prometheus: PrometheusServer, wait_for: Poll, generator: Generator
) -> None:
    baseline = wait_for(
        lambda: latest(prometheus.url, CANARY_P90, min_points=5), timeout=60, what="canary p90"
    )
    stable_baseline = latest(prometheus.url, STABLE_P90)
    fault = {"kind": "latency_creep", "track": "canary", "rate": 0.2, "duration_s": 120}
    response = httpx.post(f"{generator.url}/faults", json=fault)
    assert response.status_code == 201, response.text
    injected = time.monotonic()
    try:
        # Multiplier 1 + 0.2 t: twice as slow after 5 s; allow 30 scrape intervals for scrape + rate lag.
        wait_for(
            lambda: latest(prometheus.url, CANARY_P90) > 2 * baseline,
            timeout=30,
            what=f"canary p90 above twice its baseline {baseline:.3f}s",
            interval=0.5,
        )
        seen_after = time.monotonic() - injected
        assert latest(prometheus.url, STABLE_P90) < 1.5 * stable_baseline
    finally:
        assert httpx.delete(f"{generator.url}/faults").status_code == 200
    print(f"\nlatency_creep visible in canary p90 after {seen_after:.1f}s")
