"""A metrics generator: a stable and a canary `checkout` service, for a real Prometheus to scrape.

Run it as ``python -m ajan.simulate.generator --port P [--seed S] [--day-seconds D] [--phase F]``; it prints
``listening on HOST:PORT`` on stdout once it accepts connections (``--port 0`` picks a free port).

With ``--history-seconds H --history-file PATH [--scrape-interval S] [--job J]`` it starts as a
process that has been running for H seconds (its counters count from then), and before printing
``listening on`` it writes to PATH, as OpenMetrics, the samples Prometheus would have scraped from it
every S seconds over those H seconds, with the ``job`` and ``instance`` labels of a scrape (see
`ajan.simulate.history`). Backfilled with ``promtool tsdb create-blocks-from openmetrics``, they give a
new Prometheus that history at once, and the live scrapes carry on every counter where it ends.

Endpoints:

* ``GET /metrics``: Prometheus text format. Per track (labels ``service="checkout"``,
  ``track="stable"|"canary"``): ``http_requests_total{code="200"|"500"}``, the latency histogram
  ``http_request_duration_seconds_{bucket,sum,count}``, ``process_cpu_seconds_total``,
  ``process_resident_memory_bytes`` and ``queue_depth``.
* ``POST /faults`` with a JSON `FaultSpec`; ``GET /faults`` lists the active faults;
  ``DELETE /faults`` ends them all. A bad body answers 422 with pydantic's message.

Values are computed from the injected clock, not kept up to date by a background thread:
counters are integrated over fixed ticks of clock time (``tick_s``) up to "now" whenever they are
read, and every tick's noise is a hash of (seed, stream, tick index). So the output is a pure
function of the seed, the clock and the faults, whatever the scrape timing: a unit test that drives
the clock sees exactly what Prometheus would have scraped.

The exposition uses ``prometheus_client``'s metric families from a custom collector rather than a
hand-written formatter: label escaping, the histogram's ``+Inf``/``_sum``/``_count`` series and
``# TYPE`` lines are what Prometheus's own client library writes, for no extra code of ours.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Final, Literal

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from scipy.special import ndtr

from ajan.simulate.history import scrape_times_ms, write_history

Track = Literal["stable", "canary"]
FaultKind = Literal["latency_creep", "error_burst", "memory_leak", "leading_indicator"]
Clock = Callable[[], float]
FloatArray = npt.NDArray[np.float64]

TRACKS: Final[tuple[Track, ...]] = ("stable", "canary")
SERVICE: Final = "checkout"
#: Histogram bucket bounds in seconds: prometheus_client's defaults, dense where a web service lives.
BUCKETS: Final[tuple[float, ...]] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)
#: Spread of log-latency: a lognormal with sigma 0.5 puts p99 at about 3.2 times the median.
LATENCY_SIGMA: Final = 0.5
#: At most this many ticks are integrated in one numpy batch, bounding memory after a long clock jump.
_MAX_BATCH: Final = 100_000


class FaultSpec(BaseModel):
    """A fault to inject, the body of ``POST /faults``.

    ``rate`` means, per kind: ``latency_creep``, the latency multiplier's growth per second
    (0.05: twice as slow after 20 s); ``error_burst``, the fraction of requests that fail (0..1);
    ``memory_leak``, bytes per second; ``leading_indicator``, the growth per second of the queue
    depth multiplier, with the latency multiplier growing at the same rate ``lead_s`` seconds later.
    A fault's effect lasts while it is active (as if the pod were replaced when it ends).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: FaultKind
    track: Track = "canary"
    rate: float = Field(gt=0, allow_inf_nan=False)
    duration_s: float = Field(gt=0, le=7 * 86400, allow_inf_nan=False)
    lead_s: float = Field(default=30.0, ge=0, le=86400, allow_inf_nan=False)
    """Only for ``leading_indicator``: how long the queue depth rises before the latency does."""

    @model_validator(mode="after")
    def _error_fraction(self) -> FaultSpec:
        if self.kind == "error_burst" and self.rate > 1:
            raise ValueError("error_burst rate is a fraction of requests and must be <= 1")
        return self


@dataclass(frozen=True)
class ActiveFault:
    """A fault and when it applies: clock times, ``started_at <= t < ended_at``."""

    spec: FaultSpec
    started_at: float
    ended_at: float

    def to_json(self, now: float) -> dict[str, object]:
        """The fault as ``GET /faults`` shows it."""
        return {
            **self.spec.model_dump(),
            "started_at": self.started_at,
            "ends_at": self.ended_at,
            "remaining_s": max(0.0, self.ended_at - now),
        }


class GeneratorConfig(BaseModel):
    """The shape of the simulated traffic. Rates are requests per second at the daily mean."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = Field(default=0, ge=0, lt=2**32)
    day_seconds: float = Field(default=86400.0, gt=0)
    """Length of a simulated day in clock seconds: compress it (e.g. 600) for tests."""
    day_origin_s: float = 0.0
    """A clock time at which a simulated day begins (midnight, the lowest load). The default, the
    Unix epoch, makes a 86400-s day follow UTC; tests and the demo pin it (``--phase``) so that what
    they see does not depend on the time of day they run at."""
    tick_s: float = Field(default=1.0, gt=0)
    """Counters advance in ticks of this many clock seconds."""
    stable_rps: float = Field(default=50.0, gt=0)
    canary_rps: float = Field(default=5.0, gt=0)
    daily_amplitude: float = Field(default=0.6, ge=0, lt=1)
    """Traffic is ``1 - amplitude`` times the mean at midnight, ``1 + amplitude`` at noon."""
    base_error_ratio: float = Field(default=0.002, ge=0, le=1)
    base_latency_s: float = Field(default=0.08, gt=0)
    """Median latency at mean load; it rises with load (``load_latency_gain``)."""
    load_latency_gain: float = Field(default=0.3, ge=0)
    base_memory_bytes: float = Field(default=150e6, gt=0)
    noise: float = Field(default=0.05, ge=0, lt=0.3)
    """Relative standard deviation of the per-tick noise."""


@dataclass(frozen=True)
class TrackSample:
    """One track's instantaneous values at one time (the same model the counters integrate)."""

    rps: float
    error_ratio: float
    latency_median_s: float
    queue_depth: float
    memory_bytes: float
    cpu_rate: float


@dataclass
class _Totals:
    ok: float = 0.0
    errors: float = 0.0
    buckets: FloatArray | None = None
    duration_sum: float = 0.0
    cpu_seconds: float = 0.0


# --- deterministic noise -------------------------------------------------------------------------

_U64: Final = (1 << 64) - 1


def _splitmix64(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    # Arrays wrap on overflow silently (scalars would warn), which is what a hash wants.
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _normal_noise(seed: int, stream: int, ticks: npt.NDArray[np.int64]) -> FloatArray:
    """Standard normal noise, a pure function of (seed, stream, tick): Box-Muller on two hashes."""
    key = np.uint64((seed * 0x100000001B3 + stream * 0x9E3779B1) & _U64)
    k = np.atleast_1d(ticks).astype(np.uint64) ^ key
    h1 = _splitmix64(k)
    h2 = _splitmix64(h1)
    u1 = ((h1 >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53
    u2 = (h2 >> np.uint64(11)).astype(np.float64) * 2.0**-53
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


_STREAMS: Final = {"rps": 1, "latency": 2, "cpu": 3, "memory": 4, "queue": 5}


def _stream(track: Track, quantity: str) -> int:
    return _STREAMS[quantity] * 16 + TRACKS.index(track)


# --- the simulator -------------------------------------------------------------------------------


class Simulator:
    """The two tracks' metrics as functions of the injected clock, the seed and the faults.

    Thread-safe: the HTTP server answers scrapes and fault requests from several threads.
    """

    def __init__(
        self, config: GeneratorConfig, clock: Clock = time.time, origin: float | None = None
    ) -> None:
        """Counters are zero at clock time ``origin``: by default now, like a freshly started process.

        An earlier ``origin`` gives a process that has been running since then, whose past scrapes
        `collect` can replay (``at=``) before serving live ones, for a backfilled history.
        """
        self.config = config
        self._clock = clock
        self._lock = threading.Lock()
        self._faults: list[ActiveFault] = []
        self._last_tick = math.floor((clock() if origin is None else origin) / config.tick_s)
        self._totals = {track: _Totals(buckets=np.zeros(len(BUCKETS) + 1)) for track in TRACKS}

    def now(self) -> float:
        """The injected clock's time."""
        return self._clock()

    # Faults ---------------------------------------------------------------------------------------

    def add_fault(self, spec: FaultSpec) -> ActiveFault:
        """Start a fault now; it ends after ``spec.duration_s`` or at `clear_faults`."""
        now = self._clock()
        fault = ActiveFault(spec=spec, started_at=now, ended_at=now + spec.duration_s)
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> int:
        """End every active fault now; returns how many were active."""
        now = self._clock()
        with self._lock:
            # Ended rather than removed: ticks up to now that are not integrated yet still see them.
            ended = [f for f in self._faults if f.ended_at > now]
            self._faults = [f for f in self._faults if f.ended_at <= now] + [
                ActiveFault(f.spec, f.started_at, now) for f in ended
            ]
        return len(ended)

    def active_faults(self) -> list[ActiveFault]:
        """The faults in effect now."""
        now = self._clock()
        with self._lock:
            return [f for f in self._faults if f.started_at <= now < f.ended_at]

    # The model ------------------------------------------------------------------------------------

    def _fault_effects(self, track: Track, t: FloatArray) -> dict[str, FloatArray]:
        latency_mult = np.ones_like(t)
        queue_mult = np.ones_like(t)
        error_add = np.zeros_like(t)
        memory_add = np.zeros_like(t)
        for fault in self._faults:
            spec = fault.spec
            if spec.track != track:
                continue
            active = (t >= fault.started_at) & (t < fault.ended_at)
            elapsed = np.where(active, t - fault.started_at, 0.0)
            if spec.kind == "latency_creep":
                latency_mult *= 1.0 + spec.rate * elapsed
            elif spec.kind == "error_burst":
                error_add += np.where(active, spec.rate, 0.0)
            elif spec.kind == "memory_leak":
                memory_add += spec.rate * elapsed
            else:  # leading_indicator: the queue fills first, the latency follows lead_s later
                queue_mult *= 1.0 + spec.rate * elapsed
                latency_mult *= 1.0 + spec.rate * np.maximum(elapsed - spec.lead_s, 0.0)
        return {"latency": latency_mult, "queue": queue_mult, "errors": error_add, "memory": memory_add}

    def _model(self, track: Track, t: FloatArray) -> dict[str, FloatArray]:
        """Instantaneous values of one track at clock times ``t`` (shape (n,))."""
        cfg = self.config
        ticks = np.floor(t / cfg.tick_s).astype(np.int64)
        phase = np.mod(t - cfg.day_origin_s, cfg.day_seconds) / cfg.day_seconds
        # Minimum at midnight (phase 0), maximum at noon (phase 0.5).
        load = 1.0 - cfg.daily_amplitude * np.cos(2.0 * np.pi * phase)
        mean_rps = cfg.stable_rps if track == "stable" else cfg.canary_rps

        def noisy(quantity: str) -> FloatArray:
            z = _normal_noise(cfg.seed, _stream(track, quantity), ticks)
            # Clipped so a rare large draw can never make a rate negative.
            return np.clip(1.0 + cfg.noise * z, 0.5, 1.5)

        effects = self._fault_effects(track, t)
        rps = mean_rps * load * noisy("rps")
        base_latency = cfg.base_latency_s * (1.0 + cfg.load_latency_gain * (load - 1.0)) * noisy("latency")
        latency_median = base_latency * effects["latency"]
        error_ratio = np.clip(cfg.base_error_ratio + effects["errors"], 0.0, 1.0)
        mean_latency = base_latency * math.exp(LATENCY_SIGMA**2 / 2)
        # Little's law: requests in flight = arrival rate x time in system.
        queue_depth = rps * mean_latency * noisy("queue") * effects["queue"]
        # Resident memory follows load a little (buffers per request in flight) and barely jitters.
        memory = (cfg.base_memory_bytes + 0.4e6 * rps) * (1.0 + 0.2 * (noisy("memory") - 1.0))
        memory = memory + effects["memory"]
        cpu_rate = (0.02 + 0.002 * rps) * noisy("cpu")
        return {
            "rps": rps,
            "error_ratio": error_ratio,
            "latency_median": latency_median,
            "queue_depth": queue_depth,
            "memory": memory,
            "cpu_rate": cpu_rate,
        }

    def instant(self, track: Track, t: float | None = None) -> TrackSample:
        """One track's instantaneous values at clock time ``t`` (default: now)."""
        at = self._clock() if t is None else t
        with self._lock:
            m = self._model(track, np.array([at]))
        return TrackSample(
            rps=float(m["rps"][0]),
            error_ratio=float(m["error_ratio"][0]),
            latency_median_s=float(m["latency_median"][0]),
            queue_depth=float(m["queue_depth"][0]),
            memory_bytes=float(m["memory"][0]),
            cpu_rate=float(m["cpu_rate"][0]),
        )

    def _advance(self, now: float) -> None:
        """Integrate the counters over every whole tick up to ``now``. Caller holds the lock."""
        cfg = self.config
        now_tick = math.floor(now / cfg.tick_s)
        log_bounds = np.log(np.array(BUCKETS))
        while self._last_tick < now_tick:
            end = min(now_tick, self._last_tick + _MAX_BATCH)
            # Tick k covers ((k-1) tick_s, k tick_s] and is evaluated at its end.
            t = np.arange(self._last_tick + 1, end + 1, dtype=np.float64) * cfg.tick_s
            for track in TRACKS:
                m = self._model(track, t)
                totals = self._totals[track]
                count = m["rps"] * cfg.tick_s
                errors = count * m["error_ratio"]
                totals.ok += float(np.sum(count - errors))
                totals.errors += float(np.sum(errors))
                # Expected requests per bucket under the tick's lognormal latency (cumulative, le).
                z = (log_bounds[None, :] - np.log(m["latency_median"])[:, None]) / LATENCY_SIGMA
                cumulative = np.concatenate([ndtr(z), np.ones((len(t), 1))], axis=1)
                assert totals.buckets is not None
                totals.buckets += np.sum(count[:, None] * cumulative, axis=0)
                mean_latency = m["latency_median"] * math.exp(LATENCY_SIGMA**2 / 2)
                totals.duration_sum += float(np.sum(count * mean_latency))
                totals.cpu_seconds += float(np.sum(m["cpu_rate"] * cfg.tick_s))
            self._last_tick = end
        # Faults that ended before the last integrated tick can no longer affect anything.
        horizon = self._last_tick * cfg.tick_s
        self._faults = [f for f in self._faults if f.ended_at > horizon - cfg.tick_s]

    def collect(self, at: float | None = None) -> list[Metric]:
        """The metric families for one scrape at clock time ``at`` (default now), counters advanced to it.

        Times must not go back: counters already integrated past ``at`` stay where they are, so a
        replay of past scrapes (`ajan.simulate.history`) must come before the live ones.
        """
        now = self._clock() if at is None else at
        requests = CounterMetricFamily(
            "http_requests", "HTTP requests served, by status code.", labels=["service", "track", "code"]
        )
        duration = HistogramMetricFamily(
            "http_request_duration_seconds", "HTTP request latency.", labels=["service", "track"]
        )
        cpu = CounterMetricFamily(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
            labels=["service", "track"],
        )
        memory = GaugeMetricFamily(
            "process_resident_memory_bytes", "Resident memory size in bytes.", labels=["service", "track"]
        )
        queue = GaugeMetricFamily(
            "queue_depth", "Requests waiting or in flight.", labels=["service", "track"]
        )
        with self._lock:
            self._advance(now)
            for track in TRACKS:
                totals = self._totals[track]
                assert totals.buckets is not None
                labels = [SERVICE, track]
                requests.add_metric([*labels, "200"], totals.ok)
                requests.add_metric([*labels, "500"], totals.errors)
                bounds = [*(repr(b) for b in BUCKETS), "+Inf"]
                duration.add_metric(
                    labels, list(zip(bounds, totals.buckets.tolist(), strict=True)), totals.duration_sum
                )
                cpu.add_metric(labels, totals.cpu_seconds)
                m = self._model(track, np.array([now]))
                memory.add_metric(labels, float(m["memory"][0]))
                queue.add_metric(labels, float(m["queue_depth"][0]))
        return [requests, duration, cpu, memory, queue]


class _SimulatorCollector(Collector):
    def __init__(self, simulator: Simulator) -> None:
        self._simulator = simulator

    def collect(self) -> Iterator[Metric]:
        yield from self._simulator.collect()


# --- HTTP ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpResponse:
    """What the server sends: kept apart from the socket so tests call `GeneratorApp.handle`."""

    status: int
    content_type: str
    body: bytes


def _json(status: int, payload: object) -> HttpResponse:
    return HttpResponse(status, "application/json", json.dumps(payload).encode() + b"\n")


class GeneratorApp:
    """The generator's endpoints as a pure request -> response function over a `Simulator`."""

    def __init__(self, simulator: Simulator) -> None:
        self.simulator = simulator
        # A registry of our own: the default one would add this Python process's real metrics.
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(_SimulatorCollector(simulator))

    def handle(self, method: str, path: str, body: bytes = b"") -> HttpResponse:
        """Answer one request."""
        route = path.split("?", 1)[0]
        if route == "/metrics" and method == "GET":
            return HttpResponse(
                200, "text/plain; version=0.0.4; charset=utf-8", generate_latest(self._registry)
            )
        if route == "/faults":
            if method == "GET":
                now = self.simulator.now()
                return _json(200, {"faults": [f.to_json(now) for f in self.simulator.active_faults()]})
            if method == "POST":
                try:
                    spec = FaultSpec.model_validate_json(body)
                except ValidationError as err:
                    errors = [
                        {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
                        for e in err.errors(include_url=False)
                    ]
                    message = "; ".join(
                        f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in errors
                    )
                    return _json(HTTPStatus.UNPROCESSABLE_ENTITY, {"error": message, "detail": errors})
                fault = self.simulator.add_fault(spec)
                return _json(201, fault.to_json(fault.started_at))
            if method == "DELETE":
                return _json(200, {"cleared": self.simulator.clear_faults()})
            return _json(405, {"error": f"method {method} not allowed on /faults"})
        if route in ("/-/healthy", "/-/ready") and method == "GET":
            return HttpResponse(200, "text/plain", b"ok\n")
        return _json(404, {"error": f"no route {method} {route}"})


def make_server(app: GeneratorApp, host: str, port: int) -> ThreadingHTTPServer:
    """An HTTP server (one thread per request) bound to ``host:port`` serving ``app``."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            response = app.handle(self.command, self.path, body)
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            self.wfile.write(response.body)

        do_GET = do_POST = do_DELETE = _serve  # noqa: N815 (the names http.server dispatches to)

        def log_message(self, format: str, *args: object) -> None:
            # A scrape every second would flood stderr; errors still surface as HTTP statuses.
            pass

    server = _QuietServer((host, port), Handler)
    server.daemon_threads = True
    return server


class _QuietServer(ThreadingHTTPServer):
    """Drops a client's hang-up silently: a Prometheus scrape that times out on a loaded machine
    closes its connection mid-answer, and that is the scraper's business, not a traceback on the
    demo's terminal."""

    def handle_error(self, request: object, client_address: object) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):  # reset, broken pipe, aborted
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the generator until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(
        prog="python -m ajan.simulate.generator", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True, help="0 picks a free port")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--day-seconds", type=float, default=86400.0, help="length of a simulated day")
    parser.add_argument(
        "--phase",
        type=float,
        help="the simulated time of day at start, as a share of the day (0 midnight, 0.5 noon); "
        "default: the clock's own (UTC for a 86400-s day)",
    )
    parser.add_argument(
        "--history-seconds",
        type=float,
        default=0.0,
        help="start with this much past (counters run since then) and write it to --history-file",
    )
    parser.add_argument("--history-file", type=Path, help="where to write the history (OpenMetrics)")
    parser.add_argument(
        "--scrape-interval", type=float, default=1.0, help="seconds between the history's samples"
    )
    parser.add_argument("--job", default=SERVICE, help="the history's job label: Prometheus's job_name")
    args = parser.parse_args(argv)
    if args.history_seconds < 0 or not math.isfinite(args.history_seconds):
        parser.error("--history-seconds must be a finite number >= 0")
    if args.history_seconds > 0 and args.history_file is None:
        parser.error("--history-seconds needs --history-file")
    if args.phase is not None and not 0.0 <= args.phase < 1.0:
        parser.error("--phase must be in [0, 1)")
    started = time.time()
    origin = 0.0 if args.phase is None else started - args.phase * args.day_seconds
    config = GeneratorConfig(seed=args.seed, day_seconds=args.day_seconds, day_origin_s=origin)
    times_ms: list[int] = []
    if args.history_seconds > 0:
        try:
            times_ms = scrape_times_ms(started, args.history_seconds, args.scrape_interval)
        except ValueError as err:
            parser.error(str(err))
    # The first past scrape sees counters at zero, as a process just started would show them.
    simulator = Simulator(config, origin=times_ms[0] / 1000 if times_ms else None)
    server = make_server(GeneratorApp(simulator), args.host, args.port)
    if args.history_seconds > 0:
        # Only now is the port, hence Prometheus's instance label, known; and before "listening on",
        # so whoever waits for that line finds the file complete.
        instance = f"{args.host}:{server.server_port}"
        write_history(args.history_file, simulator, times_ms, job=args.job, instance=instance)

    def stop(signum: int, frame: FrameType | None) -> None:
        # shutdown() waits for serve_forever to return, so it must run outside the serving thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"listening on {args.host}:{server.server_port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
