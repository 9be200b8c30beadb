"""``ajan run`` as its users run it, with every observability flag: ``--metrics-listen`` (/readyz,
/metrics), ``--otlp-endpoint`` against a real OTLP/HTTP receiver, ``--log-format json``.

One operator per test against the test control plane, a Prometheus backfilled with the canary
generator's history, and Redis; every wait polls with a deadline.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from typing import Any, Final

import httpx
import pytest
from kubernetes import client
from prometheus_client import CollectorRegistry, Counter

from ajan import __version__
from ajan.api import serve
from ajan.handlers.startup import Readiness, make_metrics_app
from ajan.simulate.stack import free_port
from observability.harness import (
    METRIC_NAMES,
    OtlpReceiver,
    ReceivedSpan,
    always_policy,
    parse_exposition,
    value_of,
)
from support.operator import GROUP, VERSION, Cluster, OperatorProcess
from support.prometheus import StartWithHistory, wait_for
from support.redis import RedisServer
from support.rollouts import RolloutKit

TIMEOUT_S: Final = 120.0
#: RFC 3339 in UTC, as every JSON line's ``time``.
RFC3339_UTC: Final = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def scrape(base: str) -> str:
    response = httpx.get(f"{base}/metrics", timeout=5)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def trace_of(spans: list[ReceivedSpan], root: ReceivedSpan) -> list[ReceivedSpan]:
    return [s for s in spans if s.trace_id == root.trace_id and s is not root]


def complete_evaluation(receiver: OtlpReceiver) -> Callable[[], ReceivedSpan | None]:
    """A good evaluation's root span whose children (queries, analysis, decision, act) all arrived."""

    def check() -> ReceivedSpan | None:
        spans = receiver.received()
        for root in spans:
            if root.name != "ajan.evaluate" or root.attributes.get("result") != "evaluated":
                continue
            children = trace_of(spans, root)
            names = [c.name for c in children]
            if {"ajan.analyse", "ajan.decide", "ajan.act"} <= set(names) and names.count("ajan.query") >= 4:
                return root
        return None

    return check


def test_the_operator_serves_metrics_readiness_traces_and_json_logs(
    admin_api: client.ApiClient,
    namespace: str,
    rollout_kit: RolloutKit,
    prometheus_with_history: StartWithHistory,
    redis_server: RedisServer,
    ajan_operator: Callable[..., OperatorProcess],
) -> None:
    rollout_kit.create_rollout("checkout")
    stack = prometheus_with_history(300.0, day_seconds=86400)
    cluster = Cluster(admin_api, namespace)
    custom = client.CustomObjectsApi(admin_api)
    metrics_port = free_port()
    base = f"http://127.0.0.1:{metrics_port}"
    with OtlpReceiver().running() as receiver:
        operator = ajan_operator(
            stack.url,
            *("--metrics-listen", f"127.0.0.1:{metrics_port}", "--redis-url", redis_server.url),
            *("--log-format", "json", "--verbose"),
            *("--otlp-endpoint", receiver.url, "--trace-sample-ratio", "1"),
        )
        # ajan_operator waited for kopf's liveness, which kopf serves once the startup handlers finished.
        ready = httpx.get(f"{base}/readyz", timeout=2)
        assert ready.status_code == 200, ready.text
        name = "watched"
        cluster.apply(always_policy(name))
        plan = wait_for(
            lambda: next(
                (p for p in cluster.plans() if (p.get("status") or {}).get("phase") == "DryRun"), None
            ),
            timeout=TIMEOUT_S,
            what="an executed (dry-run) plan",
        )
        plan_name = plan["metadata"]["name"]

        # Traces: a whole evaluation arrives at the receiver, service "ajan", one trace per evaluation.
        root = wait_for(complete_evaluation(receiver), timeout=TIMEOUT_S, what="an evaluation's spans")
        assert root.resource["service.name"] == "ajan"
        assert root.parent_span_id == ""
        assert root.attributes["namespace"] == namespace and root.attributes["policy"] == name
        assert root.attributes["action"] == "annotate" and 0.0 <= root.attributes["confidence"] <= 1.0
        trace = trace_of(receiver.received(), root)
        children = [c for c in trace if c.parent_span_id == root.span_id]
        # The week's spread, fetched once an hour, holds its own queries; all else hangs from the root.
        spread = {c.span_id for c in children if c.name == "ajan.spread"}
        assert all(c.parent_span_id in spread and c.name == "ajan.query" for c in trace if c not in children)
        act = next(c for c in children if c.name == "ajan.act")
        assert act.attributes["action"] == "annotate" and act.attributes["dry_run"] is True

        # /metrics: the new series for the policy, named by the policy's own metrics only.
        samples = parse_exposition(scrape(base))
        ns = {"namespace": namespace, "policy": name}
        assert value_of(samples, "aiops_build_info", version=__version__) == 1
        scored = {s.labels["metric"] for s in samples if s.name == "aiops_metric_anomaly_score"}
        assert scored == METRIC_NAMES
        executed = value_of(samples, "aiops_plan_transitions_total", action="annotate", phase="DryRun")
        assert executed is not None and executed >= 1
        assert value_of(samples, "aiops_anomalies_total", **ns) is not None
        assert value_of(samples, "aiops_false_positive_ratio", **ns) is None  # no verdict yet

        # A verdict set with kubectl counts like one from the API, and is in force at the next evaluation.
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, "remediationplans", plan_name,
            {"spec": {"feedback": {"verdict": "true-positive", "by": "observability-test"}}},
        )  # fmt: skip

        def verdict_in_force() -> list[Any] | None:
            now = parse_exposition(scrape(base))
            seen = [
                value_of(now, "aiops_feedback_total", verdict="true-positive"),
                value_of(now, "aiops_feedback_verdicts", verdict="true-positive", **ns),
                value_of(now, "aiops_false_positive_ratio", **ns),
            ]
            return seen if seen == [1.0, 1.0, 0.0] else None

        wait_for(verdict_in_force, timeout=TIMEOUT_S, what="the kubectl verdict counted and in force")

        # Deleting the policy drops every series that names it.
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "correlationpolicies", name)

        def forgotten() -> bool:
            return not [s for s in parse_exposition(scrape(base)) if s.labels.get("policy") == name]

        wait_for(forgotten, timeout=TIMEOUT_S, what="the deleted policy's series dropped")
        operator.stop()
        evaluated_traces = {s.trace_id for s in receiver.received() if s.name == "ajan.evaluate"}

    # Logs: every line is one JSON object; those of an evaluation name it and its trace; plan lines the plan.
    lines = [line for line in operator.log().splitlines() if line and not line.startswith("--- start")]
    records = []
    for line in lines:
        record = json.loads(line)  # fails the test on any line that is not JSON
        assert isinstance(record, dict)
        assert {"time", "level", "logger", "message"} <= set(record), record
        assert RFC3339_UTC.match(record["time"]), record["time"]
        records.append(record)
    assert any(r["logger"].startswith("kopf") for r in records)  # kopf's lines share the format
    # The metrics server logs no line per scrape or probe (kopf's /healthz server does, not ajan's).
    assert not [r for r in records if r["logger"] == "aiohttp.access" and "/healthz" not in r["message"]]
    evaluations = [r for r in records if r["message"].startswith("evaluation ")]
    assert evaluations, "no evaluation line"
    for record in evaluations:
        assert record["namespace"] == namespace and record["policy"] == name, record
        assert record["trace_id"] in evaluated_traces, record
        assert re.fullmatch(r"[0-9a-f]{16}", record["span_id"]), record
    # ajan's own lines about the plan: its phase changes (the executor) and the stored verdict (the handler).
    plan_lines = [
        r
        for r in records
        if r["message"].startswith(f"plan {plan_name}: ") or r["message"].endswith(f"verdict on {plan_name}")
    ]
    assert any(r["message"].endswith("-> DryRun") for r in plan_lines), plan_lines
    assert any("stored the true-positive verdict" in r["message"] for r in plan_lines), plan_lines
    # kopf's "Handler ... succeeded" only for events that asked something of ajan (the verdict), not
    # for each of the operator's own status writes on the plan (a third of all lines, issue 13).
    handled = [r for r in records if r["message"] == "Handler 'person_decided' succeeded."]
    status_writes = [r for r in plan_lines if r["message"].startswith(f"plan {plan_name}: ")]
    assert status_writes and len(handled) <= 2, (len(handled), len(status_writes))
    for record in plan_lines:
        assert record.get("plan") == plan_name, record
        assert record.get("namespace") == namespace and record.get("policy") == name, record


def test_readyz_is_503_until_startup_finished_and_metrics_is_the_registry() -> None:
    async def scenario() -> None:
        registry = CollectorRegistry()
        Counter("observability_probe", "A counter only this registry has.", registry=registry).inc(3)
        readiness = Readiness()
        runner = await serve(make_metrics_app(registry, readiness), "127.0.0.1", 0)
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        try:
            async with httpx.AsyncClient(base_url=base, timeout=5) as http:
                assert (await http.get("/readyz")).status_code == 503
                readiness.ready = True
                assert (await http.get("/readyz")).status_code == 200
                samples = parse_exposition((await http.get("/metrics")).text)
                assert value_of(samples, "observability_probe_total") == 3.0
                assert (await http.get("/v1/feedback")).status_code == 404  # not the feedback API
        finally:
            await runner.cleanup()

    asyncio.run(scenario())


@pytest.mark.parametrize("flag", ["--metrics-listen=nohost", "--log-format=xml", "--trace-sample-ratio=1.5"])
def test_bad_flag_values_are_usage_errors(flag: str) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "ajan", "run", flag], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2, done.stderr
    assert flag.split("=")[0] in done.stderr
