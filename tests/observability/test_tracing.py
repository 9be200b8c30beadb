"""Traces of real evaluations, in-process, into the SDK's in-memory exporter: the span tree and its
attributes, and parent-based sampling (a ratio of 0 records nothing unless a parent says sampled).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from kubernetes import client
from opentelemetry import context, trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from ajan import tracing
from ajan.services.reconcile import PolicyEvaluator
from observability.harness import METRIC_NAMES, always_policy, good_evaluation, runtime_of
from support.kube import Kube
from support.operator import Cluster
from support.prometheus import StartWithHistory
from support.rollouts import RolloutKit

REMOTE_TRACE_ID = 0x5B8EFFF798038103D269B633813FC60C
REMOTE_SPAN_ID = 0xEEE19B7EC3C1B174


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    """An exporter that keeps spans in memory; tracing is off again after the test."""
    memory = InMemorySpanExporter()
    yield memory
    tracing.install(None)


def install(exporter: InMemorySpanExporter, ratio: float) -> TracerProvider:
    """ajan's sampler (`ajan.tracing.configure`'s) and a synchronous processor."""
    exporter.clear()
    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(ratio)))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    return provider


def remote_parent(sampled: bool) -> context.Context:
    """The context an incoming traceparent header would give."""
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    parent = SpanContext(REMOTE_TRACE_ID, REMOTE_SPAN_ID, is_remote=True, trace_flags=flags)
    return trace.set_span_in_context(NonRecordingSpan(parent))


def by_name(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def test_an_evaluation_is_one_trace_and_sampling_is_parent_based(
    kube: Kube,
    admin_api: client.ApiClient,
    namespace: str,
    rollout_kit: RolloutKit,
    prometheus_with_history: StartWithHistory,
    exporter: InMemorySpanExporter,
) -> None:
    rollout_kit.create_rollout("checkout")
    stack = prometheus_with_history(300.0, day_seconds=86400)
    cluster = Cluster(admin_api, namespace)
    name = "traced"
    cluster.apply(always_policy(name))

    async def scenario() -> None:
        async with runtime_of(kube.api_client(), admin_api, stack.url, None) as runtime:
            evaluator = PolicyEvaluator(runtime, namespace, name)
            # Warm up with tracing on at ratio 1 until a good evaluation (degraded ones trace too).
            install(exporter, 1.0)
            report = await good_evaluation(evaluator, lambda: cluster.policy(name))
            assert report.assessment is not None
            spans = exporter.get_finished_spans()
            root = by_name(spans, "ajan.evaluate")[-1]
            assert root.parent is None
            attributes = dict(root.attributes or {})
            assert attributes["namespace"] == namespace and attributes["policy"] == name
            assert attributes["result"] == "evaluated"
            assert attributes["confidence"] == pytest.approx(report.assessment.confidence)
            assert attributes["action"] == "annotate"
            trace = [s for s in spans if s.context.trace_id == root.context.trace_id and s is not root]
            tree = [s for s in trace if s.parent is not None and s.parent.span_id == root.context.span_id]
            # The week's spread (fetched once an hour) holds its own queries; everything else hangs
            # from the evaluation.
            spread = [s for s in tree if s.name == "ajan.spread"]
            assert len(spread) <= 1, [s.name for s in tree]
            under_spread = [s for s in trace if s not in tree]
            assert all(
                s.name == "ajan.query"
                and s.parent is not None
                and s.parent.span_id == spread[0].context.span_id
                for s in under_spread
            ), [(s.name, s.parent) for s in under_spread]
            names = [s.name for s in tree]
            # One query per metric (the canary's four), then the analysis, the decision, the act.
            assert names.count("ajan.query") == len(METRIC_NAMES), names
            assert names.count("ajan.analyse") == 1 and names.count("ajan.decide") == 1, names
            queries = {dict(s.attributes or {})["query"] for s in tree if s.name == "ajan.query"}
            assert len(queries) == len(METRIC_NAMES)
            decide = by_name(tuple(tree), "ajan.decide")[0]
            assert dict(decide.attributes or {})["outcome"] == "open"
            acts = by_name(tuple(tree), "ajan.act")
            assert len(acts) == 1
            act = dict(acts[0].attributes or {})
            assert act["action"] == "annotate" and act["dry_run"] is True
            assert act["plan"] == cluster.plans()[0]["metadata"]["name"]
            # The act comes after the decision: the plan must exist before it is carried out.
            assert decide.end_time is not None and acts[0].start_time is not None
            assert decide.end_time <= acts[0].start_time

            # Ratio 0 and no parent: nothing is recorded.
            install(exporter, 0.0)
            await good_evaluation(evaluator, lambda: cluster.policy(name))
            assert exporter.get_finished_spans() == ()

            # Ratio 0 under a sampled parent: the parent wins; the evaluation joins its trace.
            token = context.attach(remote_parent(sampled=True))
            try:
                await good_evaluation(evaluator, lambda: cluster.policy(name))
            finally:
                context.detach(token)
            spans = exporter.get_finished_spans()
            roots = by_name(spans, "ajan.evaluate")
            assert roots and all(s.context.trace_id == REMOTE_TRACE_ID for s in spans)
            assert all(r.parent is not None and r.parent.span_id == REMOTE_SPAN_ID for r in roots)
            assert by_name(spans, "ajan.query") and by_name(spans, "ajan.analyse")

            # Ratio 1 under a parent that was not sampled: the parent wins again.
            install(exporter, 1.0)
            token = context.attach(remote_parent(sampled=False))
            try:
                await good_evaluation(evaluator, lambda: cluster.policy(name))
            finally:
                context.detach(token)
            assert exporter.get_finished_spans() == ()

    asyncio.run(scenario())


def test_without_a_provider_spans_cost_nothing_and_record_nothing() -> None:
    tracing.install(None)
    assert not tracing.enabled()
    with tracing.span("ajan.evaluate", policy="p") as span:
        assert not span.is_recording()
        span.set_attribute("result", "evaluated")  # accepted and dropped
    assert not tracing.configure(None, 1.0)


def test_the_traces_url_follows_the_otel_endpoint_convention() -> None:
    assert tracing.traces_url("http://collector:4318") == "http://collector:4318/v1/traces"
    assert tracing.traces_url("http://collector:4318/") == "http://collector:4318/v1/traces"
    assert tracing.traces_url("http://c:4318/v1/traces") == "http://c:4318/v1/traces"
