"""The monitoring sources under test, read from manifests/: the PrometheusRule's groups, the Grafana
dashboard, and the PromQL vector selectors in both (for the check that each returns data)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Final

import yaml

MANIFESTS: Final = Path(__file__).resolve().parents[2] / "manifests"
RULE_FILE: Final = MANIFESTS / "prometheusrule.yaml"
DASHBOARD_FILE: Final = MANIFESTS / "dashboards" / "ajan.json"

#: What Grafana puts in place of its built-in variables when the checks run a dashboard query: a
#: rate window that spans several scrapes, a time range. ``$namespace`` and ``$policy`` are the
#: caller's (default: the variables' "All", ``.*``).
GRAFANA_SUBSTITUTIONS: Final = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "10m"}

# PromQL words that look like metric names but are not selectors.
_KEYWORDS: Final = frozenset(
    {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "offset",
     "bool", "inf", "nan", "atan2"}
)  # fmt: skip
_GROUPING: Final = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_SELECTOR: Final = re.compile(r"(?<![\w:\]\"])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?")


def prometheus_rule() -> dict[str, Any]:
    """The PrometheusRule object of manifests/prometheusrule.yaml."""
    rule: dict[str, Any] = yaml.safe_load(RULE_FILE.read_text())
    assert rule["kind"] == "PrometheusRule"
    return rule


def rule_groups() -> dict[str, Any]:
    """The PrometheusRule's groups as a Prometheus rule file (what the operator hands Prometheus)."""
    return {"groups": prometheus_rule()["spec"]["groups"]}


def rules() -> list[dict[str, Any]]:
    """Every rule (recording and alerting) of every group."""
    return [rule for group in rule_groups()["groups"] for rule in group["rules"]]


def alert_names() -> list[str]:
    """The alerting rules' names."""
    return [rule["alert"] for rule in rules() if "alert" in rule]


def dashboard() -> dict[str, Any]:
    """The Grafana dashboard JSON."""
    loaded: dict[str, Any] = json.loads(DASHBOARD_FILE.read_text())
    return loaded


def dashboard_queries(namespace: str = ".*", policy: str = ".*") -> list[tuple[str, str]]:
    """``(where, PromQL)`` of every panel target and every query variable, with Grafana's variables
    substituted: `GRAFANA_SUBSTITUTIONS`, and the template variables by ``namespace`` and ``policy``."""
    values = {**GRAFANA_SUBSTITUTIONS, "$namespace": namespace, "$policy": policy}
    found = []
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            found.append(
                (f"panel {panel['title']!r} {target['refId']}", grafana_substitute(target["expr"], values))
            )
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"]
            inner = re.fullmatch(r"label_values\((.*),\s*\w+\)", query)
            assert inner is not None, f"variable {variable['name']}: not label_values(selector, label)"
            found.append((f"variable {variable['name']}", grafana_substitute(inner[1], values)))
    return found


def grafana_substitute(expr: str, values: dict[str, str]) -> str:
    """``expr`` with Grafana's variables replaced by ``values`` (longest names first)."""
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace(name, values[name])
    assert "$" not in expr, f"an unknown variable in {expr!r}"
    return expr


def selectors(expr: str) -> list[str]:
    """The vector selectors of a PromQL expression, e.g. ``up{job="ajan"}``, in order, without
    their range or offset.

    Enough PromQL for ajan's rules and dashboard: string literals appear only inside braces, and
    every identifier followed by ``(`` is a function or an aggregation.
    """
    text = _GROUPING.sub(" ", expr)
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range and subquery durations
    found = []
    for match in _SELECTOR.finditer(text):
        name, labels = match[1], match[2] or ""
        rest = text[match.end() :].lstrip()
        if name in _KEYWORDS or (not labels and rest.startswith("(")):
            continue
        found.append(name + re.sub(r"\s+", "", labels))
    return found
