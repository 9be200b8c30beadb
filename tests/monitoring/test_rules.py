"""The PrometheusRule and the Grafana dashboard, checked without a cluster.

* ``promtool check rules`` accepts the PrometheusRule's groups, and ``promtool test rules`` runs the
  unit tests in alerts_test.yaml (input series -> expected alerts, with their rendered annotations),
  which hold a firing and a quiet case for every alert.
* Every metric the rules and the dashboard select is one ajan registers (or one the rules record,
  or Prometheus's ``up``), so a renamed metric fails here; the live check that each selector returns
  data is test_live.py.
* The dashboard is valid JSON with the panels the issue asks for, each with a query that promtool
  parses, and the ``namespace`` and ``policy`` variables applied wherever a series has those labels.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any, Final

import pytest
import yaml
from prometheus_client import REGISTRY
from prometheus_client.metrics_core import Metric

import ajan.metrics
from ajan.simulate import stack
from monitoring.sources import (
    alert_names,
    dashboard,
    dashboard_queries,
    rule_groups,
    rules,
    selectors,
)

UNIT_TESTS: Final = Path(__file__).with_name("alerts_test.yaml")
#: Series with a policy's labels: dashboard queries on them must apply both template variables.
PER_POLICY: Final = (
    "aiops_policy_confidence",
    "aiops_policy_anomalous_metrics",
    "aiops_anomalies_total",
    "aiops_metric_anomaly_score",
    "aiops_metric_correlation",
    "aiops_feedback_verdicts",
    "aiops_false_positive_ratio",
    "namespace_policy:",
)
#: What the dashboard must show (issue 6): a metric each panel group selects.
DASHBOARD_METRICS: Final = {
    "correlation matrix": "aiops_metric_correlation",
    "anomaly timeline": "aiops_metric_anomaly_score",
    "confidence per policy": "namespace_policy:aiops_policy_confidence:max",
    "plans by action/severity": "aiops_plans_total",
    "plan transitions by phase": "aiops_plan_transitions_total",
    "actions executed": "aiops_actions_executed_total",
    "evaluations by result": "job:aiops_evaluations:rate5m",
    "evaluation duration p95": "job:aiops_evaluation_duration_seconds:p95_5m",
    "query errors": "aiops_prometheus_query_errors_total",
    "feedback verdicts": "aiops_feedback_verdicts",
    "false-positive ratio": "namespace_policy:aiops_false_positive_ratio:max",
}


@pytest.fixture(scope="module")
def promtool() -> str:
    """Debian's ``promtool`` (``hack/debian-install.sh`` installs it when missing)."""
    return stack.debian_binary("promtool")


def write_rules(directory: Path, groups: dict[str, Any]) -> Path:
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump(groups, sort_keys=False))
    return path


def test_promtool_accepts_the_rules(promtool: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [promtool, "check", "rules", str(write_rules(tmp_path, rule_groups()))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules())} rules found" in done.stdout


def run_unit_tests(promtool: str, directory: Path, groups: dict[str, Any]) -> CompletedProcess[str]:
    """``promtool test rules`` of the shipped alert unit tests against ``groups``."""
    write_rules(directory, groups)
    shutil.copy(UNIT_TESTS, directory / UNIT_TESTS.name)
    return subprocess.run(
        [promtool, "test", "rules", UNIT_TESTS.name],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_alert_unit_tests_pass(promtool: str, tmp_path: Path) -> None:
    done = run_unit_tests(promtool, tmp_path, rule_groups())
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    cases = yaml.safe_load(UNIT_TESTS.read_text())["tests"]
    evaluations = [e for case in cases for e in case["alert_rule_test"]]
    assert set(alert_names()) == {
        "AjanDown",
        "AjanEvaluationErrors",
        "AjanActionTaken",
        "AjanFalsePositiveRateRising",
    }
    for alert in alert_names():
        of_it = [e for e in evaluations if e["alertname"] == alert]
        assert any(e["exp_alerts"] for e in of_it), f"{alert}: no case where it fires"
        assert any(not e["exp_alerts"] for e in of_it), f"{alert}: no case where it stays quiet"


def test_the_unit_tests_can_fail(promtool: str, tmp_path: Path) -> None:
    """With AjanActionTaken also firing on annotations, its quiet case must fail."""
    groups = rule_groups()
    for group in groups["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == "AjanActionTaken":
                rule["expr"] = rule["expr"].replace('action!~"annotate|none"', 'action!~"none"')
    done = run_unit_tests(promtool, tmp_path, groups)
    assert done.returncode != 0
    assert "AjanActionTaken ignores annotations" in done.stdout + done.stderr


def exposed_names(family: Metric) -> set[str]:
    """The sample names a metric family exposes (``aiops_plans`` -> ``aiops_plans_total``, ...)."""
    suffixes = {
        "counter": ("_total",),
        "gauge": ("",),
        "histogram": ("_bucket", "_sum", "_count"),
        "summary": ("_sum", "_count", ""),
        "info": ("_info",),
    }[family.type]
    return {family.name + suffix for suffix in suffixes}


def registered_names() -> set[str]:
    """Every ``aiops_*`` sample name ajan registers in the default registry."""
    ajan.metrics.feedback_metrics()  # the feedback API's, registered on first use
    names: set[str] = set()
    for family in REGISTRY.collect():
        if family.name.startswith("aiops_"):
            names |= exposed_names(family)
    return names


def selected_names() -> dict[str, str]:
    """Every metric name the rules and the dashboard select, with where."""
    found = {}
    for rule in rules():
        for selector in selectors(rule["expr"]):
            found[selector.partition("{")[0]] = f"rule {rule.get('alert') or rule.get('record')}"
    for where, query in dashboard_queries():
        for selector in selectors(query):
            found[selector.partition("{")[0]] = where
    return found


def test_every_selected_metric_is_one_ajan_exports_or_the_rules_record() -> None:
    registered = registered_names()
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    assert {"aiops_evaluations_total", "aiops_metric_correlation", "aiops_build_info"} <= registered
    for name, where in selected_names().items():
        assert name in registered | recorded | {"up"}, f"{where} selects {name}, which nothing exports"


def test_recording_rules_follow_the_naming_convention_and_are_used() -> None:
    used = set(selected_names())
    for rule in rules():
        if "record" in rule:
            level, metric, operation = rule["record"].split(":")
            assert level and metric.startswith("aiops_") and operation, rule["record"]
            assert rule["record"] in used, f"{rule['record']} is recorded but neither alerted on nor shown"


def test_dashboard_has_the_panels_and_variables_asked_for() -> None:
    board = dashboard()
    assert board["uid"] == "ajan"
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert {"datasource", "namespace", "policy"} <= set(variables)
    for name in ("namespace", "policy"):
        assert (
            variables[name]["includeAll"] and variables[name]["multi"] and variables[name]["allValue"] == ".*"
        )
    panels = board["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    assert len({p["title"] for p in panels}) == len(panels)
    for panel in panels:
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            assert target["expr"].strip(), f"panel {panel['title']!r} {target['refId']}: empty query"
            assert target["datasource"]["uid"] == "${datasource}"
    used = set(selected_names())
    for what, metric in DASHBOARD_METRICS.items():
        assert metric in used, f"no panel shows the {what} ({metric})"


def test_per_policy_dashboard_queries_apply_both_variables() -> None:
    for panel in dashboard()["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            if any(name in expr for name in PER_POLICY):
                assert 'namespace=~"$namespace"' in expr and 'policy=~"$policy"' in expr, (
                    panel["title"],
                    expr,
                )


def test_promtool_parses_every_dashboard_query(promtool: str, tmp_path: Path) -> None:
    # promtool has no query checker: each query, variables substituted, as a recording rule's expr.
    queries = dashboard_queries()
    groups = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{i}:check", "expr": q} for i, (_, q) in enumerate(queries)
                ],
            }
        ]
    }
    done = subprocess.run(
        [promtool, "check", "rules", str(write_rules(tmp_path, groups))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
