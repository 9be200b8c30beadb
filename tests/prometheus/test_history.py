"""The generator's history backfilled into a real Prometheus: there at once, continuous with the live
scrapes, equal to what the simulator computes; and the history file itself, without Prometheus."""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections import defaultdict
from pathlib import Path
from typing import Final

import httpx
import numpy as np
import pytest

from ajan.clients import PrometheusSource
from ajan.simulate.generator import GeneratorConfig, Simulator, main
from ajan.simulate.history import openmetrics_history, scrape_times_ms
from support.prometheus import (
    JOB,
    BackfillError,
    PrometheusServer,
    StartWithHistory,
)

H: Final = 900
DAY: Final = 600.0
COUNTER: Final = 'http_requests_total{track="stable",code="200"}'
GAUGE: Final = 'queue_depth{track="canary"}'
BUCKET: Final = 'http_request_duration_seconds_bucket{track="canary",le="0.1"}'

_LINE: Final = re.compile(r"^(?P<series>\S+\{[^}]*\}) (?P<value>\S+) (?P<ts>\d+\.\d{3})$")


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def query(url: str, promql: str, at: float | None = None) -> list[dict[str, object]]:
    """An instant query's result list (vector or matrix)."""
    params = {"query": promql} | ({} if at is None else {"time": str(at)})
    response = httpx.get(f"{url}/api/v1/query", params=params, timeout=10)
    body = response.json()
    assert response.status_code == 200 and body["status"] == "success", body
    result: list[dict[str, object]] = body["data"]["result"]
    return result


def scalar(url: str, promql: str) -> float:
    """The single value of an instant query that must answer one series."""
    result = query(url, promql)
    assert len(result) == 1, (promql, result)
    value = result[0]["value"]
    assert isinstance(value, list)
    return float(value[1])


def raw_samples(url: str, selector: str, seconds: int) -> dict[float, float]:
    """The stored samples of one series over the last ``seconds``: timestamp (s) -> value."""
    result = query(url, f"{selector}[{seconds}s]")
    assert len(result) == 1, (selector, result)
    values = result[0]["values"]
    assert isinstance(values, list)
    return {float(ts): float(v) for ts, v in values}


def query_range(url: str, promql: str, start: float, end: float) -> list[tuple[float, float]]:
    """A range query's single series, step 1 s: (timestamp, value) pairs."""
    response = httpx.get(
        f"{url}/api/v1/query_range",
        params={"query": promql, "start": start, "end": end, "step": 1},
        timeout=10,
    )
    body = response.json()
    assert response.status_code == 200 and body["status"] == "success", body
    (series,) = body["data"]["result"]
    return [(float(t), float(v)) for t, v in series["values"]]


# --- the history file, no Prometheus -------------------------------------------------------------


def test_scrape_times_are_whole_interval_multiples_before_the_end() -> None:
    assert scrape_times_ms(1000.5, 3, 1) == [998_000, 999_000, 1_000_000]
    assert scrape_times_ms(1000.0, 3, 1) == [997_000, 998_000, 999_000]
    assert scrape_times_ms(10.0, 1, 0.25) == [9_000, 9_250, 9_500, 9_750]
    assert scrape_times_ms(10.0, 0, 1) == []
    with pytest.raises(ValueError, match="at least 1 ms"):
        scrape_times_ms(10.0, 5, 0)
    with pytest.raises(ValueError, match=">= 0"):
        scrape_times_ms(10.0, -1, 1)


def test_history_needs_a_file() -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--port", "0", "--history-seconds", "60"])
    assert exited.value.code == 2


def parse_history(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], list[tuple[int, float]]]:
    """The file's samples by (name, labels): (timestamp in ms, value) in file order."""
    series: dict[tuple[str, frozenset[tuple[str, str]]], list[tuple[int, float]]] = defaultdict(list)
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = _LINE.match(line)
        assert match, line
        name, _, labels = match["series"].partition("{")
        key = (name, frozenset(re.findall(r'(\w+)="([^"]*)"', labels)))
        series[key].append((round(float(match["ts"]) * 1000), float(match["value"])))
    return series


def make_history(seconds: float, end: float = 6_000_000.5) -> tuple[Simulator, FakeClock, list[int], str]:
    clock = FakeClock(end)
    times = scrape_times_ms(end, seconds, 1)
    simulator = Simulator(GeneratorConfig(seed=3, day_seconds=DAY), clock, origin=times[0] / 1000)
    text = openmetrics_history(simulator, times, job="checkout", instance="127.0.0.1:1234").decode()
    return simulator, clock, times, text


def test_history_file_is_grouped_by_series_timestamped_and_ends_with_eof() -> None:
    _, _, times, text = make_history(30)
    lines = text.splitlines()
    assert lines[-1] == "# EOF"
    types = [line.split()[2:] for line in lines if line.startswith("# TYPE ")]
    assert types == [
        ["http_requests", "counter"],
        ["http_request_duration_seconds", "histogram"],
        ["process_cpu_seconds", "counter"],
        ["process_resident_memory_bytes", "gauge"],
        ["queue_depth", "gauge"],
    ]
    series = parse_history(text)
    # 44 series (a histogram has 17 per track), each at every scrape time, in time order.
    assert len(series) == 2 * 2 + 2 * 17 + 2 + 2 + 2
    for (name, labels), points in series.items():
        assert {("job", "checkout"), ("instance", "127.0.0.1:1234"), ("service", "checkout")} <= labels
        assert [ms for ms, _ in points] == times, name
        if name.endswith(("_total", "_bucket", "_count", "_sum")):
            values = [v for _, v in points]
            # A process started at the first scrape: counters count from zero, never down.
            assert values[0] == 0.0 and values == sorted(values) and values[-1] > 0, name
    assert {name for name, _ in series if name.startswith("http_requests")} == {"http_requests_total"}
    # Each series' lines are contiguous, a histogram's buckets, count and sum together by time.
    keys: list[tuple[str, str]] = []
    for line in lines:
        if match := _LINE.match(line):
            family, _, rendered = match["series"].partition("{")
            keys.append((re.sub(r"_(bucket|count|sum)$", "", family), re.sub(r',?le="[^"]*"', "", rendered)))
    runs = sum(1 for i, key in enumerate(keys) if i == 0 or keys[i - 1] != key)
    assert runs == len(set(keys)) == 2 * 2 + 2 + 2 + 2 + 2


def test_live_scrapes_continue_the_history_without_reset() -> None:
    simulator, clock, times, text = make_history(60)
    last = {
        (name, labels - {("job", "checkout"), ("instance", "127.0.0.1:1234")}): points[-1][1]
        for (name, labels), points in parse_history(text).items()
    }
    clock.now += 2
    # A twin that never replayed the past, scraped only now: the same counters, up to summation order.
    twin = Simulator(simulator.config, clock, origin=times[0] / 1000)
    fresh = {(s.name, frozenset(s.labels.items())): s.value for f in twin.collect() for s in f.samples}
    live = {(s.name, frozenset(s.labels.items())): s.value for f in simulator.collect() for s in f.samples}
    assert live.keys() == fresh.keys() == last.keys()
    for key, value in live.items():
        assert value == pytest.approx(fresh[key], rel=1e-12)
        if key[0].endswith(("_total", "_bucket", "_count", "_sum")):
            assert value > last[key], key


# --- against a real Prometheus -------------------------------------------------------------------


def test_history_is_there_at_once(prometheus_with_history: StartWithHistory) -> None:
    started = time.monotonic()
    stack = prometheus_with_history(H, seed=11, day_seconds=DAY)
    startup = time.monotonic() - started
    # Every series is sampled every second of the history: only the seconds between the history's
    # end and now, a few at most, hold fewer (the live scrapes have just begun).
    for selector in (COUNTER, GAUGE, BUCKET):
        count = scalar(stack.url, f"count_over_time({selector}[{H}s])")
        assert H - startup - 5 <= count <= H + 1, (selector, count)
    assert len(query(stack.url, f"http_request_duration_seconds_bucket[{H}s]")) == 2 * 15
    # A range query over the last H seconds sees a value at (nearly) every step.
    end = math.floor(time.time())

    async def range_query() -> int:
        async with httpx.AsyncClient() as http:
            source = PrometheusSource(http, stack.url, timeout_s=10)
            result = await source.query_range(f"sum({COUNTER})", end - H + 1, end, 1)
            return result.finite_points

    assert asyncio.run(range_query()) >= H - 5


def test_rate_is_smooth_across_the_history_live_boundary(prometheus_with_history: StartWithHistory) -> None:
    # A real day's length: the load is then flat within 5 % over the history, so the rate's spread is
    # noise, and a reset's spike (the counter's total over 30 s: some 30 times the rate) stands out.
    stack = prometheus_with_history(H, seed=12, day_seconds=86400)
    stack.wait_for_scrapes(2)
    # A counter reset anywhere (the boundary included) would show here...
    for series in query(stack.url, f"resets(http_requests_total[{H + 60}s]) > 0"):
        pytest.fail(f"counter reset in {series}")
    # ... and as a spike of about (total so far) / 30 s in the rate: 30 times the typical rate.
    end = math.floor(time.time())
    result = query_range(stack.url, f"sum(rate({COUNTER}[30s]))", stack.history_start + 30, end)
    rates = np.array([v for _, v in result])
    assert np.all(rates > 0)
    assert rates.max() < 1.5 * float(np.median(rates)), (rates.max(), np.median(rates))
    # Around the boundary the rate dips at most (windows ending in the gap between the history and
    # the first live scrape extrapolate less), and never jumps.
    boundary = [v for t, v in result if stack.history_end - 2 <= t <= stack.history_end + 15]
    assert max(boundary) < 2 * min(boundary), boundary


def test_history_values_are_the_simulators(prometheus_with_history: StartWithHistory) -> None:
    # The clock's own day (no pinned phase): the replay below then needs no origin of the day.
    stack = prometheus_with_history(120, seed=13, day_seconds=DAY, phase=None)
    times = list(range(round(stack.history_start * 1000), round(stack.history_end * 1000) + 1, 1000))
    replay = Simulator(
        GeneratorConfig(seed=13, day_seconds=DAY), FakeClock(stack.history_end), origin=stack.history_start
    )
    expected: dict[tuple[str, float], float] = {}
    selectors = {
        COUNTER: ("http_requests_total", {"track": "stable", "code": "200"}),
        GAUGE: ("queue_depth", {"track": "canary"}),
        BUCKET: ("http_request_duration_seconds_bucket", {"track": "canary", "le": "0.1"}),
        'http_request_duration_seconds_sum{track="stable"}': (
            "http_request_duration_seconds_sum",
            {"track": "stable"},
        ),
        'process_resident_memory_bytes{track="stable"}': (
            "process_resident_memory_bytes",
            {"track": "stable"},
        ),
    }
    for ms in times:
        for family in replay.collect(at=ms / 1000):
            for sample in family.samples:
                for selector, (name, labels) in selectors.items():
                    if sample.name == name and labels.items() <= sample.labels.items():
                        expected[(selector, ms / 1000)] = sample.value
    instance = stack.generator_url.removeprefix("http://")
    for selector in selectors:
        stored = raw_samples(stack.url, selector.replace("}", f',instance="{instance}",job="{JOB}"}}'), 300)
        history = {ts: v for ts, v in stored.items() if ts <= stack.history_end}
        assert sorted(history) == [ms / 1000 for ms in times], selector
        # Exactly: the file writes round-trip floats and Prometheus stores them losslessly.
        assert history == {ts: expected[(selector, ts)] for ts in history}, selector


def test_faults_go_to_the_tests_own_generator(prometheus_with_history: StartWithHistory) -> None:
    stack = prometheus_with_history(30, seed=14, day_seconds=DAY)
    fault = stack.post_fault(kind="error_burst", track="canary", rate=0.5, duration_s=60)
    assert fault["kind"] == "error_burst"
    assert [f["kind"] for f in stack.faults()] == ["error_burst"]
    assert stack.clear_faults() == 1
    assert stack.faults() == []


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("# TYPE bar gauge\nbar 1\n# EOF\n", "expected timestamp"),
        ("# TYPE bar gauge\nbar 1 1700000000\n", "does not end with # EOF"),
        ("bar one two\n# EOF\n", "invalid syntax"),
    ],
)
def test_a_bad_history_fails_before_prometheus_starts(
    prometheus_installed: str, tmp_path: Path, content: str, fragment: str
) -> None:
    history = tmp_path / "history.om"
    history.write_text(content)
    server = PrometheusServer(prometheus_installed, tmp_path, "127.0.0.1:1", history=history)
    with pytest.raises(BackfillError, match="create-blocks-from openmetrics") as failed:
        server.start()
    assert fragment in str(failed.value)
    assert "exited with 1" in str(failed.value)
    assert server.proc is None
