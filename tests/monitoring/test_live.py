"""The rules and the dashboard against a real ``ajan run``: every selector they use returns data.

One story, as in a cluster: the metrics generator and its Prometheus (five minutes of healthy
history), a Rollout (Argo's CRD), Redis, and ``ajan run --metrics-listen`` with a policy in auto mode
and one whose query returns several series (Degraded, QueryFailed). An error burst makes ajan pause
the canary (correlation thresholds loose enough that the evidence lists correlations); an operator
calls it a false alarm (``spec.feedback``), which ajan stores in Redis and counts at the next
evaluation. A second Prometheus scrapes ajan as the ServiceMonitor would (job ``ajan``, honouring
ajan's ``namespace`` labels) with the PrometheusRule's groups loaded. Then every vector selector of
every rule and every dashboard query (variables substituted) must return data, each whole
dashboard query must too, AjanActionTaken fires for the pause and AjanDown does not, and the
operator's resident memory stays under the Deployment's request.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
import yaml
from kubernetes import client

from ajan.simulate.stack import PrometheusServer, RedisServer, StackTimeoutError, canary_policy, free_port
from monitoring.sources import MANIFESTS, dashboard_queries, rule_groups, rules, selectors
from support.operator import Cluster, OperatorProcess
from support.prometheus import HistoryStack, StartWithHistory, wait_for
from support.rollouts import RolloutKit

PAUSE_LADDER: Final = [{"minConfidence": 0.5, "severity": "warning", "action": "pause"}]
#: Loose enough that the healthy canary's baseline shows relations (as tests/observability's), so
#: the evidence, hence aiops_metric_correlation, is not empty.
LOOSE_CORRELATION: Final = {"maxLag": "20s", "minAbsR": 0.1, "alpha": 0.2}
#: Generous: a loaded 2-core CI machine evaluates late; polls return as soon as the state is there.
TIMEOUT: Final = 180.0


@dataclass
class Scraped:
    """ajan running against the stack, and a Prometheus with the rules loaded scraping it."""

    prometheus: PrometheusServer
    stack: HistoryStack
    cluster: Cluster
    namespace: str
    metrics_url: str

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query of ajan's Prometheus; fails on anything but success."""
        answer = httpx.get(f"{self.prometheus.url}/api/v1/query", params={"query": expr}, timeout=10)
        assert answer.status_code == 200, f"{expr}: {answer.text}"
        result: list[dict[str, Any]] = answer.json()["data"]["result"]
        return result

    def firing(self) -> dict[str, list[dict[str, str]]]:
        """The firing alerts' labels, by alert name."""
        answer = httpx.get(f"{self.prometheus.url}/api/v1/alerts", timeout=10).json()
        found: dict[str, list[dict[str, str]]] = {}
        for alert in answer["data"]["alerts"]:
            if alert["state"] == "firing":
                found.setdefault(alert["labels"]["alertname"], []).append(alert["labels"])
        return found


def mib(quantity: str) -> float:
    """A Kubernetes memory quantity in Mi or Gi, in MiB."""
    match = re.fullmatch(r"(\d+)(Mi|Gi)", quantity)
    assert match is not None, quantity
    return float(match[1]) * (1024 if match[2] == "Gi" else 1)


def ajan_prometheus(binary: str, workdir: Path, target: str) -> PrometheusServer:
    """A Prometheus scraping ajan as the ServiceMonitor does, with the PrometheusRule's groups."""
    workdir.mkdir(parents=True)
    server = PrometheusServer(binary, workdir, target)
    rules_file = workdir / "rules.yaml"
    rules_file.write_text(yaml.safe_dump(rule_groups(), sort_keys=False))
    server.config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(rules_file)],
                "scrape_configs": [
                    {"job_name": "ajan", "honor_labels": True, "static_configs": [{"targets": [target]}]}
                ],
            }
        )
    )
    return server


@pytest.fixture
def scraped(
    admin_api: client.ApiClient,
    namespace: str,
    rollout_kit: RolloutKit,
    prometheus_installed: str,
    prometheus_with_history: StartWithHistory,
    redis_server: RedisServer,
    ajan_operator: Callable[..., OperatorProcess],
    tmp_path: Path,
) -> Iterator[Scraped]:
    rollout_kit.create_rollout("checkout")
    stack = prometheus_with_history(300.0, day_seconds=86400)
    metrics_port, feedback_port = free_port(), free_port()
    ajan_operator(
        stack.url,
        f"--metrics-listen=127.0.0.1:{metrics_port}",
        f"--redis-url={redis_server.url}",
        f"--feedback-listen=127.0.0.1:{feedback_port}",
        "--log-format=json",
    )
    metrics_url = f"http://127.0.0.1:{metrics_port}"
    wait_for(
        lambda: httpx.get(f"{metrics_url}/readyz", timeout=2).status_code == 200,
        timeout=TIMEOUT,
        what="ajan's /readyz",
    )
    server = ajan_prometheus(prometheus_installed, tmp_path / "ajan-prometheus", f"127.0.0.1:{metrics_port}")
    server.start(wait_for_scrape=False)
    try:
        yield Scraped(server, stack, Cluster(admin_api, namespace), namespace, metrics_url)
    finally:
        server.stop()


def executed(cluster: Cluster) -> dict[str, Any] | None:
    return next((p for p in cluster.plans() if (p.get("status") or {}).get("phase") == "Executed"), None)


def missing(scraped: Scraped, exprs: list[str]) -> list[str]:
    """The expressions that return no data (yet)."""
    return [expr for expr in exprs if not scraped.query(expr)]


def test_every_selector_of_the_rules_and_the_dashboard_returns_data(scraped: Scraped) -> None:
    cluster = scraped.cluster
    cluster.apply(
        canary_policy(
            "errors", remediation={"mode": "auto", "ladder": PAUSE_LADDER}, correlation=LOOSE_CORRELATION
        )
    )
    # A query of several series: every evaluation of this policy is Degraded, QueryFailed.
    first_metric = dict(canary_policy("x")["spec"]["metrics"][0])
    cluster.apply(
        canary_policy("broken", metrics=[first_metric, {"name": "all", "query": "http_requests_total"}])
    )
    wait_for(lambda: cluster.condition("errors", "Ready"), timeout=TIMEOUT, what="a first evaluation")
    wait_for(
        lambda: (cluster.condition("broken", "Degraded") or {}).get("reason") == "QueryFailed",
        timeout=TIMEOUT,
        what="the broken policy Degraded (QueryFailed)",
    )
    scraped.stack.post_fault(kind="error_burst", rate=0.3, duration_s=600)
    plan = wait_for(lambda: executed(cluster), timeout=TIMEOUT, what="the pause executed", interval=1.0)
    assert plan["spec"]["action"] == "pause"
    cluster.custom.patch_namespaced_custom_object(
        "aiops.ajan.dev", "v1alpha1", scraped.namespace, "remediationplans", plan["metadata"]["name"],
        {"spec": {"feedback": {"verdict": "false-positive", "by": "bob", "comment": "our load test"}}},
    )  # fmt: skip
    # The verdict is stored, then counted at the policy's next evaluation.
    ratio = f'aiops_false_positive_ratio{{namespace="{scraped.namespace}",policy="errors"}} 1.0'
    wait_for(
        lambda: ratio in httpx.get(f"{scraped.metrics_url}/metrics", timeout=5).text,
        timeout=TIMEOUT,
        what="the false-positive ratio on ajan's /metrics",
        interval=1.0,
    )

    wanted = sorted(
        {s for rule in rules() for s in selectors(rule["expr"])}
        | {s for _, query in dashboard_queries(scraped.namespace) for s in selectors(query)}
    )
    assert len(wanted) > 15, wanted
    # Scrapes every second and rules evaluated every second: a few seconds after /metrics has it.
    with contextlib.suppress(StackTimeoutError):
        wait_for(
            lambda: not missing(scraped, wanted), timeout=60, what="every selector answered", interval=1.0
        )
    assert not missing(scraped, wanted), f"selectors without data (of {len(wanted)})"

    # The whole dashboard queries, with this namespace and every policy selected.
    queries = dashboard_queries(scraped.namespace)
    empty = [f"{where}: {query}" for where, query in queries if not scraped.query(query)]
    assert not empty, "dashboard queries without data:\n" + "\n".join(empty)
    # Per-policy series carry the policy's namespace (honour_labels), not the scrape's.
    confidence = scraped.query(
        f'namespace_policy:aiops_policy_confidence:max{{namespace="{scraped.namespace}"}}'
    )
    assert {series["metric"]["policy"] for series in confidence} >= {"errors"}

    # The pause raises AjanActionTaken (the counter's first increment); ajan is up.
    firing = wait_for(
        lambda: scraped.firing().get("AjanActionTaken"),
        timeout=30,
        what="AjanActionTaken firing",
        interval=1.0,
    )
    assert [alert["action"] for alert in firing] == ["pause"]
    assert "AjanDown" not in scraped.firing()

    # The Deployment's memory request holds what the operator uses here.
    deployment = next(
        d
        for d in yaml.safe_load_all((MANIFESTS / "deployment.yaml").read_text())
        if d["kind"] == "Deployment"
    )
    requests = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
    resident = scraped.query('process_resident_memory_bytes{job="ajan"}')
    resident_mib = float(resident[0]["value"][1]) / 2**20
    print(f"\najan run: resident memory {resident_mib:.0f} MiB")
    assert resident_mib < mib(requests["memory"]), resident_mib
