"""Unit tests of the metrics generator, driven by an injected clock (no sockets but one test)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Final

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ajan.simulate.generator import (
    FaultSpec,
    GeneratorApp,
    GeneratorConfig,
    Simulator,
    make_server,
)

DAY: Final = 600.0
#: A clock time at midnight of a simulated day (phase 0).
MIDNIGHT: Final = DAY * 10_000


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make(seed: int = 7, start: float = MIDNIGHT) -> tuple[GeneratorApp, FakeClock]:
    clock = FakeClock(start)
    return GeneratorApp(Simulator(GeneratorConfig(seed=seed, day_seconds=DAY), clock=clock)), clock


Sample = tuple[str, frozenset[tuple[str, str]]]


def scrape(app: GeneratorApp) -> dict[Sample, float]:
    """The /metrics answer parsed back, keyed by (sample name, labels)."""
    response = app.handle("GET", "/metrics")
    assert response.status == 200
    samples: dict[Sample, float] = {}
    for family in text_string_to_metric_families(response.body.decode()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict[Sample, float], name: str, **labels: str) -> float:
    return samples[(name, frozenset({"service": "checkout", **labels}.items()))]


def window(
    app: GeneratorApp, clock: FakeClock, seconds: float
) -> tuple[dict[Sample, float], dict[Sample, float]]:
    """Scrapes at the start and end of a window of ``seconds``."""
    before = scrape(app)
    clock.advance(seconds)
    return before, scrape(app)


def delta(before: dict[Sample, float], after: dict[Sample, float], name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def mean_latency(before: dict[Sample, float], after: dict[Sample, float], track: str) -> float:
    return delta(before, after, "http_request_duration_seconds_sum", track=track) / delta(
        before, after, "http_request_duration_seconds_count", track=track
    )


def post_fault(app: GeneratorApp, **body: object) -> None:
    response = app.handle("POST", "/faults", json.dumps(body).encode())
    assert response.status == 201, response.body


def test_exposes_every_series_for_both_tracks() -> None:
    app, clock = make()
    clock.advance(10)
    samples = scrape(app)
    for track in ("stable", "canary"):
        for code in ("200", "500"):
            assert value(samples, "http_requests_total", track=track, code=code) >= 0
        assert value(samples, "http_request_duration_seconds_count", track=track) > 0
        assert value(samples, "http_request_duration_seconds_sum", track=track) > 0
        assert value(samples, "process_cpu_seconds_total", track=track) > 0
        assert value(samples, "process_resident_memory_bytes", track=track) > 100e6
        assert value(samples, "queue_depth", track=track) > 0
        buckets = sorted(
            (float(dict(labels)["le"]), v)
            for (name, labels), v in samples.items()
            if name == "http_request_duration_seconds_bucket" and dict(labels)["track"] == track
        )
        counts = [v for _, v in buckets]
        assert counts == sorted(counts), "histogram buckets must be cumulative"
        assert buckets[-1][0] == float("inf")
        assert counts[-1] == pytest.approx(value(samples, "http_request_duration_seconds_count", track=track))


def test_deterministic_given_seed_and_clock() -> None:
    outputs = []
    for seed in (7, 7, 8):
        app, clock = make(seed=seed)
        clock.advance(123.0)
        outputs.append(app.handle("GET", "/metrics").body)
    assert outputs[0] == outputs[1]
    assert outputs[0] != outputs[2]


def test_same_totals_whatever_the_scrape_timing() -> None:
    # Counters integrate fixed clock ticks, so scraping often or once gives the same totals.
    often, clock_often = make()
    for i in range(1, 51):
        clock_often.now = MIDNIGHT + 1.3 * i
        scrape(often)
    clock_often.now = MIDNIGHT + 65.0
    once, clock_once = make()
    clock_once.advance(65.0)
    # Equal but for the order of floating-point additions.
    assert scrape(often) == pytest.approx(scrape(once), rel=1e-12)


def test_counters_are_monotonic() -> None:
    app, clock = make()
    previous = scrape(app)
    for _ in range(20):
        clock.advance(7.0)
        current = scrape(app)
        for key, v in current.items():
            if key[0].endswith(("_total", "_bucket", "_count", "_sum")):
                assert v >= previous[key], key
        previous = current


def test_daily_shape_peaks_at_noon() -> None:
    app, clock = make()
    night = delta(*window(app, clock, 30), "http_requests_total", track="stable", code="200")
    clock.now = MIDNIGHT + DAY / 2 - 15
    noon = delta(*window(app, clock, 30), "http_requests_total", track="stable", code="200")
    # Load is 1 -/+ 0.6 of the mean: 0.4 at midnight, 1.6 at noon (with 5 % noise per tick).
    assert noon / night == pytest.approx(4.0, rel=0.15)
    assert noon / 30 == pytest.approx(50 * 1.6, rel=0.1)
    simulator = app.simulator
    hourly = [simulator.instant("canary", MIDNIGHT + DAY * h / 24).rps for h in range(24)]
    assert int(np.argmax(hourly)) in (11, 12, 13)
    assert int(np.argmin(hourly)) in (23, 0, 1)


def test_day_origin_moves_midnight_to_it() -> None:
    # A day that begins 6 (simulated) hours after MIDNIGHT has its lowest load there and its highest
    # twelve hours later; the default day is at its mean load there (0.4 against 1 of the mean).
    origin = MIDNIGHT + DAY * 6 / 24
    shifted = Simulator(
        GeneratorConfig(seed=7, day_seconds=DAY, day_origin_s=origin), clock=FakeClock(origin)
    )
    hourly = [shifted.instant("canary", origin + DAY * h / 24).rps for h in range(24)]
    assert int(np.argmax(hourly)) in (11, 12, 13)
    assert int(np.argmin(hourly)) in (23, 0, 1)
    default = Simulator(GeneratorConfig(seed=7, day_seconds=DAY), clock=FakeClock(origin))
    assert shifted.instant("canary", origin).rps < 0.6 * default.instant("canary", origin).rps


def test_canary_gets_a_tenth_of_the_traffic() -> None:
    app, clock = make()
    before, after = window(app, clock, 120)
    stable = delta(before, after, "http_requests_total", track="stable", code="200")
    canary = delta(before, after, "http_requests_total", track="canary", code="200")
    assert canary / stable == pytest.approx(0.1, rel=0.1)


def test_latency_creep_slows_only_the_canary() -> None:
    app, clock = make()
    # A twin without the fault on the same clock: the daily shape moves both alike.
    twin = GeneratorApp(Simulator(GeneratorConfig(seed=7, day_seconds=DAY), clock=clock))
    post_fault(app, kind="latency_creep", track="canary", rate=0.05, duration_s=600)
    clock.advance(40)  # multiplier 1 + 0.05 * 40 = 3 at the start of the window
    before, twin_before = scrape(app), scrape(twin)
    clock.advance(20)
    after, twin_after = scrape(app), scrape(twin)
    assert mean_latency(before, after, "canary") > 2.5 * mean_latency(twin_before, twin_after, "canary")
    assert mean_latency(before, after, "stable") == pytest.approx(
        mean_latency(twin_before, twin_after, "stable"), rel=1e-9
    )


def test_error_burst_raises_only_the_canary_error_ratio() -> None:
    app, clock = make()
    post_fault(app, kind="error_burst", track="canary", rate=0.3, duration_s=60)
    before, after = window(app, clock, 30)
    for track, expected in (("canary", 0.3 + 0.002), ("stable", 0.002)):
        errors = delta(before, after, "http_requests_total", track=track, code="500")
        total = errors + delta(before, after, "http_requests_total", track=track, code="200")
        assert errors / total == pytest.approx(expected, rel=0.05)


def test_memory_leak_grows_canary_memory_at_the_rate() -> None:
    app, clock = make()
    leak = 1e6  # bytes per second
    start = scrape(app)
    post_fault(app, kind="memory_leak", track="canary", rate=leak, duration_s=600)
    clock.advance(300)
    end = scrape(app)
    grown = delta(start, end, "process_resident_memory_bytes", track="canary")
    assert grown == pytest.approx(300 * leak, rel=0.1)
    assert abs(delta(start, end, "process_resident_memory_bytes", track="stable")) < 0.1 * 300 * leak


@pytest.mark.parametrize("lead_s", [15.0, 60.0])
def test_leading_indicator_queue_rises_lead_s_before_latency(lead_s: float) -> None:
    faulty, clock = make()
    # A twin without the fault, same seed and clock: the ratio of the two is the fault's effect alone.
    twin = Simulator(GeneratorConfig(seed=7, day_seconds=DAY), clock=clock)
    post_fault(faulty, kind="leading_indicator", track="canary", rate=0.05, duration_s=600, lead_s=lead_s)
    times = clock.now + np.arange(0.0, 200.0, 0.5)

    def onset(attribute: str) -> float:
        ratios = [
            getattr(faulty.simulator.instant("canary", t), attribute)
            / getattr(twin.instant("canary", t), attribute)
            for t in times
        ]
        return float(times[np.argmax(np.array(ratios) > 1.05)] - clock.now)

    queue_onset, latency_onset = onset("queue_depth"), onset("latency_median_s")
    assert queue_onset < latency_onset
    assert latency_onset - queue_onset == pytest.approx(lead_s, abs=0.5)
    # The stable track sees neither.
    assert faulty.simulator.instant("stable", times[-1]) == twin.instant("stable", times[-1])


def test_leading_indicator_visible_in_scraped_gauge_before_histogram() -> None:
    app, clock = make()
    base_latency = mean_latency(*window(app, clock, 10), "canary")
    base_queue = value(scrape(app), "queue_depth", track="canary")
    post_fault(app, kind="leading_indicator", track="canary", rate=0.1, duration_s=600, lead_s=30)
    before, after = window(app, clock, 10)  # seconds 10..20: queue up 2-3x, latency untouched
    assert value(after, "queue_depth", track="canary") > 2 * base_queue
    assert mean_latency(before, after, "canary") == pytest.approx(base_latency, rel=0.15)
    clock.advance(30)
    before, after = window(app, clock, 10)  # seconds 50..60: latency 3-4x
    assert mean_latency(before, after, "canary") > 2.5 * base_latency


def test_faults_listed_expire_and_clear() -> None:
    app, clock = make()
    post_fault(app, kind="error_burst", rate=0.5, duration_s=30)
    post_fault(app, kind="memory_leak", track="stable", rate=1e5, duration_s=300)
    listed = json.loads(app.handle("GET", "/faults").body)["faults"]
    assert [(f["kind"], f["track"]) for f in listed] == [("error_burst", "canary"), ("memory_leak", "stable")]
    assert listed[0]["remaining_s"] == 30
    clock.advance(31)
    listed = json.loads(app.handle("GET", "/faults").body)["faults"]
    assert [f["kind"] for f in listed] == ["memory_leak"]
    # The expired burst no longer raises errors.
    before, after = window(app, clock, 30)
    errors = delta(before, after, "http_requests_total", track="canary", code="500")
    assert errors / delta(before, after, "http_requests_total", track="canary", code="200") < 0.01
    cleared = app.handle("DELETE", "/faults")
    assert json.loads(cleared.body) == {"cleared": 1}
    assert json.loads(app.handle("GET", "/faults").body)["faults"] == []
    stable_memory = value(scrape(app), "process_resident_memory_bytes", track="stable")
    assert stable_memory < 200e6  # the leak's effect ended with it


def test_clearing_keeps_the_fault_in_ticks_before_the_clear() -> None:
    # Ticks not yet integrated when DELETE arrives still saw the fault while it was active.
    with_clear, clock_a = make()
    post_fault(with_clear, kind="error_burst", rate=0.5, duration_s=600)
    clock_a.advance(20)
    with_clear.handle("DELETE", "/faults")
    clock_a.advance(20)
    expiring, clock_b = make()
    post_fault(expiring, kind="error_burst", rate=0.5, duration_s=20)
    clock_b.advance(40)
    assert scrape(with_clear) == scrape(expiring)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"not json", "Invalid JSON"),
        (b'{"kind": "meltdown", "rate": 1, "duration_s": 10}', "kind"),
        (b'{"kind": "latency_creep", "rate": -1, "duration_s": 10}', "rate"),
        (b'{"kind": "latency_creep", "rate": 0.1}', "duration_s: Field required"),
        (b'{"kind": "error_burst", "rate": 2, "duration_s": 10}', "must be <= 1"),
        (b'{"kind": "memory_leak", "rate": 1, "duration_s": 10, "track": "prod"}', "track"),
        (b'{"kind": "memory_leak", "rate": 1, "duration_s": 10, "severity": 3}', "severity"),
        (b'{"kind": "memory_leak", "rate": "NaN", "duration_s": 10}', "rate"),
    ],
)
def test_bad_fault_body_is_422_with_a_message(body: bytes, fragment: str) -> None:
    app, _ = make()
    response = app.handle("POST", "/faults", body)
    assert response.status == 422
    assert fragment in json.loads(response.body)["error"]
    assert json.loads(app.handle("GET", "/faults").body)["faults"] == []


def test_fault_spec_defaults() -> None:
    spec = FaultSpec.model_validate({"kind": "leading_indicator", "rate": 0.1, "duration_s": 60})
    assert (spec.track, spec.lead_s) == ("canary", 30.0)


@pytest.fixture
def served() -> Iterator[str]:
    app, _ = make()
    server = make_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        assert not thread.is_alive()


def test_over_http(served: str) -> None:
    metrics = httpx.get(f"{served}/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    assert 'http_requests_total{code="200",service="checkout",track="canary"}' in metrics.text
    bad = httpx.post(f"{served}/faults", json={"kind": "latency_creep"})
    assert bad.status_code == 422
    assert "rate: Field required" in bad.json()["error"]
    good = httpx.post(f"{served}/faults", json={"kind": "latency_creep", "rate": 0.1, "duration_s": 5})
    assert good.status_code == 201
    assert httpx.get(f"{served}/faults").json()["faults"][0]["kind"] == "latency_creep"
    assert httpx.delete(f"{served}/faults").json() == {"cleared": 1}
    assert httpx.get(f"{served}/nowhere").status_code == 404


def test_a_scraper_hanging_up_is_not_a_traceback_but_other_errors_are(
    capsys: pytest.CaptureFixture[str],
) -> None:
    app, _ = make()
    server = make_server(app, "127.0.0.1", 0)
    try:
        for error in (ConnectionResetError(104, "reset by peer"), BrokenPipeError(32, "broken pipe")):
            try:
                raise error
            except OSError:
                server.handle_error(None, ("127.0.0.1", 1))
        assert "Traceback" not in capsys.readouterr().err
        try:
            raise ValueError("a bug in the generator")
        except ValueError:
            server.handle_error(None, ("127.0.0.1", 1))
        assert "ValueError: a bug in the generator" in capsys.readouterr().err
    finally:
        server.server_close()
