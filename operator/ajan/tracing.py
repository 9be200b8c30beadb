"""OpenTelemetry traces of policy evaluations, exported over OTLP/HTTP (protobuf).

One trace per evaluation: ``ajan.evaluate`` (attributes namespace, policy, result, confidence,
action) with children ``ajan.query`` (one per Prometheus
query of the window), ``ajan.spread`` (the week's spread, once an hour, its queries under it),
``ajan.analyse``, ``ajan.decide`` and ``ajan.act`` (one per plan carried out on its
Rollout: action, dry_run).

Off unless `configure` is given an endpoint (``--otlp-endpoint``): `span` then returns a shared
non-recording span without touching OpenTelemetry, so an operator without tracing pays one function
call per span. Sampling is ``ParentBased(TraceIdRatioBased(ratio))``: a root span is kept with
probability ``ratio``; a span whose parent context says sampled (or not) follows its parent.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Final

from opentelemetry import trace
from opentelemetry.trace import INVALID_SPAN, Span, Tracer
from opentelemetry.util.types import AttributeValue

from ajan import __version__

log = logging.getLogger(__name__)

SERVICE_NAME: Final = "ajan"
#: The OTLP/HTTP path of traces under a collector's base URL (what OTEL_EXPORTER_OTLP_ENDPOINT names).
TRACES_PATH: Final = "/v1/traces"

_tracer: Tracer | None = None
_provider: object | None = None  # the SDK's TracerProvider, when ajan installed one


def traces_url(endpoint: str) -> str:
    """The URL traces are POSTed to: ``endpoint`` is a collector's base URL, as in the OTel spec's
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` (``http://collector:4318`` -> ``.../v1/traces``)."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith(TRACES_PATH) else endpoint + TRACES_PATH


def configure(endpoint: str | None, sample_ratio: float) -> bool:
    """Install a tracer provider exporting to ``endpoint`` (None: tracing stays off); True if on.

    Service name ``ajan``; spans are batched and sent from a background thread.
    """
    if not endpoint:
        return False
    # Imported only when tracing is on: the SDK and the exporter (requests, protobuf) are not free.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    provider = TracerProvider(
        resource=Resource.create({"service.name": SERVICE_NAME, "service.version": __version__}),
        sampler=ParentBased(TraceIdRatioBased(sample_ratio)),
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_url(endpoint))))
    # Global too, so that any instrumented library's spans join ajan's traces.
    trace.set_tracer_provider(provider)
    install(provider)
    log.info("tracing to %s, sampling %g of evaluations", traces_url(endpoint), sample_ratio)
    return True


def install(provider: trace.TracerProvider | None) -> None:
    """Use ``provider``'s tracer for ajan's spans (None: tracing off). Tests install their own."""
    global _tracer, _provider
    _provider = provider
    _tracer = provider.get_tracer("ajan", __version__) if provider is not None else None


def shutdown() -> None:
    """Export the spans still buffered and stop the exporter (idempotent); tracing is off afterwards."""
    global _tracer, _provider
    provider, _provider, _tracer = _provider, None, None
    stop = getattr(provider, "shutdown", None)
    if stop is not None:
        stop()


def enabled() -> bool:
    """Whether spans are recorded at all (a provider is installed)."""
    return _tracer is not None


@contextlib.contextmanager
def span(name: str, **attributes: AttributeValue) -> Iterator[Span]:
    """A child of the current span (a root if none) named ``name``, current inside the block.

    An exception leaving the block is recorded on the span and sets its status to error.
    """
    if _tracer is None:
        yield INVALID_SPAN
        return
    with _tracer.start_as_current_span(name, attributes=attributes) as current:
        yield current
