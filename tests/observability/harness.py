"""What the observability tests share: an in-process evaluation against the real servers, an OTLP
receiver, and a reader of Prometheus' text exposition.

The in-process evaluation is the operator's own `PolicyEvaluator` on a `Runtime` of real clients: the
test control plane (kube-apiserver), a Prometheus backfilled with the canary generator's history, and
Redis. Its policy's ladder starts at confidence 0, so that every good evaluation has an incident and
carries out its plan (dry-run: recorded, nothing sent).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
from aiohttp import web
from kubernetes import client
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from prometheus_client.parser import text_string_to_metric_families

from ajan.clients.feedback_store import FeedbackStore
from ajan.clients.kubernetes import KubeStore
from ajan.clients.rollouts import RolloutClient
from ajan.services.reconcile import PolicyEvaluator, Report
from ajan.services.runtime import OperatorConfig, Runtime
from ajan.simulate.stack import CANARY_METRICS, canary_policy

#: Names of the canary policy's metrics: the only values a ``metric``/``leader``/``follower`` label may take.
METRIC_NAMES: Final = frozenset(m["name"] for m in CANARY_METRICS)
#: Every good evaluation reaches this rung: an incident, a plan, a dry-run execution.
ALWAYS: Final = {
    "mode": "dry-run",
    "ladder": [{"minConfidence": 0.0, "severity": "info", "action": "annotate"}],
}
#: The first evaluations may find the ~6 s gap between the backfilled history and the live scrapes.
GOOD_EVALUATION_TIMEOUT_S: Final = 60.0


#: Loose enough that the healthy canary's baseline shows relations: the correlation series are
#: then not checked on an empty list.
LOOSE_CORRELATION: Final = {"maxLag": "20s", "minAbsR": 0.1, "alpha": 0.2}


def always_policy(name: str, **overrides: Any) -> dict[str, Any]:
    """The canary policy (`ajan.simulate.stack.canary_policy`) with the `ALWAYS` ladder."""
    return canary_policy(name, remediation=ALWAYS, **overrides)


@asynccontextmanager
async def runtime_of(
    api: client.ApiClient, rollouts_api: client.ApiClient, prometheus_url: str, redis_url: str | None
) -> AsyncIterator[Runtime]:
    """A `Runtime` as ``ajan run`` builds it; ``api`` becomes the KubeStore's (closed with it)."""
    config = OperatorConfig(default_prometheus_url=prometheus_url, redis_url=redis_url)
    runtime = Runtime(
        config,
        httpx.AsyncClient(timeout=config.query_timeout_s),
        KubeStore(api, max_workers=4),
        rollouts=RolloutClient(rollouts_api, max_workers=2),
        feedback=FeedbackStore.from_url(redis_url) if redis_url else None,
    )
    try:
        yield runtime
    finally:
        await runtime.close()


async def good_evaluation(
    evaluator: PolicyEvaluator, body: Any, timeout: float = GOOD_EVALUATION_TIMEOUT_S
) -> Report:
    """Evaluate until an evaluation had its data (``body()`` gives the policy's current manifest)."""
    deadline = time.monotonic() + timeout
    while True:
        report = await evaluator.evaluate(body())
        if report.reason is None:
            return report
        if time.monotonic() > deadline:
            raise AssertionError(f"no good evaluation in {timeout:g} s; the last was {report.reason}")
        await asyncio.sleep(0.5)


# --- Prometheus' text exposition -----------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One sample of a scrape."""

    name: str
    labels: Mapping[str, str]
    value: float


def parse_exposition(text: str) -> list[Sample]:
    """Every sample of a ``/metrics`` answer."""
    return [
        Sample(s.name, dict(s.labels), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def value_of(samples: list[Sample], name: str, **labels: str) -> float | None:
    """The value of the sample ``name`` whose labels include ``labels``, None if there is none."""
    found = [
        s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) <= 1, f"{name}{labels}: {len(found)} samples"
    return found[0] if found else None


# --- an OTLP/HTTP receiver ----------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedSpan:
    """A span as an OTLP exporter sent it (ids in hex)."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: Mapping[str, Any]
    resource: Mapping[str, Any]


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind is not None else None


@dataclass
class OtlpReceiver:
    """``POST /v1/traces`` (``application/x-protobuf``), decoded into `spans`, in a thread of its own."""

    spans: list[ReceivedSpan] = field(default_factory=list)
    requests: int = 0
    port: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        """The base URL (what ``--otlp-endpoint`` takes)."""
        return f"http://127.0.0.1:{self.port}"

    def received(self) -> list[ReceivedSpan]:
        """The spans received so far."""
        with self._lock:
            return list(self.spans)

    async def _traces(self, request: web.Request) -> web.Response:
        if request.content_type != "application/x-protobuf":
            return web.Response(status=415, text=f"not protobuf: {request.content_type}")
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.read())
        decoded = []
        for resource_spans in message.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    decoded.append(
                        ReceivedSpan(
                            span.name,
                            span.trace_id.hex(),
                            span.span_id.hex(),
                            span.parent_span_id.hex(),
                            {a.key: _value(a.value) for a in span.attributes},
                            resource,
                        )
                    )
        with self._lock:
            self.requests += 1
            self.spans.extend(decoded)
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(), content_type="application/x-protobuf"
        )

    @contextmanager
    def running(self) -> Iterator[OtlpReceiver]:
        """Serve on a free loopback port until the block ends."""
        loop = asyncio.new_event_loop()
        started = threading.Event()
        app = web.Application()
        app.router.add_post("/v1/traces", self._traces)
        runner = web.AppRunner(app, handle_signals=False)

        async def start() -> None:
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.port = runner.addresses[0][1]

        def serve() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(start())
            started.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        thread = threading.Thread(target=serve, name="otlp-receiver", daemon=True)
        thread.start()
        if not started.wait(10):
            raise RuntimeError("the OTLP receiver did not start")
        try:
            yield self
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            assert not thread.is_alive(), "the OTLP receiver did not stop"
