"""``ajan report`` as its users run it: a subprocess against the real kube-apiserver and a real
Prometheus scraping the metrics generator (the session fixtures of tests/support).

The plan is created through the API with the evidence body the operator writes (plans.py), its
status through the status subresource as the operator does, and an Event about it as the operator
posts one; the policy names the test's Prometheus, which holds five minutes of the generator's
history before the plan's time.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import pytest
from kubernetes import client

from ajan.models.common import rfc3339
from ajan.simulate.stack import REPO_ROOT, canary_policy
from support.kube import FIELD_MANAGER, Kube
from support.operator import Cluster, OperatorProcess
from support.prometheus import StartWithHistory, wait_for
from support.rollouts import RolloutKit

from .html_page import Page
from .plans import CORRELATIONS, plan_body

PLAN: Final = "checkout-tk4c9z-pause"
GROUP, VERSION = "aiops.ajan.dev", "v1alpha1"
#: As tests/e2e: generous for a loaded machine; the polls return as soon as the state is there.
OPERATOR_TIMEOUT_S: Final = 180.0


def ajan(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ajan", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        env={
            **os.environ,
            "PYTHONPATH": str(REPO_ROOT / "operator"),
            "AJAN_PROMETHEUS_URL": "",
            **(env or {}),
        },
        check=False,
    )


@pytest.fixture
def cwd(tmp_path: Path) -> Path:
    """The report's working directory: empty (tmp_path also holds the Prometheus's files)."""
    path = tmp_path / "cwd"
    path.mkdir()
    return path


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def cluster_plan(
    admin_api: client.ApiClient, namespace: str, prometheus_with_history: StartWithHistory
) -> dict[str, Any]:
    """The policy (naming the test's Prometheus), the plan with its status, and one Event about it."""
    stack = prometheus_with_history(300.0, day_seconds=86400)
    cluster = Cluster(admin_api, namespace)
    cluster.apply(canary_policy("checkout", prometheus={"url": stack.url}))
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    body = plan_body(PLAN, at=at)
    status = body.pop("status")
    body["metadata"] = {"name": PLAN, "labels": body["metadata"]["labels"]}
    custom = client.CustomObjectsApi(admin_api)
    created = custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "remediationplans", body, field_manager=FIELD_MANAGER
    )
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, "remediationplans", PLAN, {"status": status}, field_manager=FIELD_MANAGER
    )
    client.CoreV1Api(admin_api).create_namespaced_event(
        namespace,
        {
            "metadata": {"name": f"{PLAN}.report-test"},
            "involvedObject": {"apiVersion": f"{GROUP}/{VERSION}", "kind": "RemediationPlan", "name": PLAN,
                               "namespace": namespace, "uid": created["metadata"]["uid"]},
            "reason": "DryRun",
            "message": "would send PATCH rollouts/checkout: {\"spec\": {\"paused\": true}}",
            "type": "Normal",
            "firstTimestamp": rfc3339(at),
            "lastTimestamp": rfc3339(at),
            "count": 1,
            "source": {"component": "ajan"},
        },
    )  # fmt: skip
    return {"namespace": namespace, "prometheus": stack.url, "cluster": cluster, "custom": custom}


def test_report_of_a_plan_on_the_cluster_with_its_timeline(
    kube: Kube, cluster_plan: dict[str, Any], cwd: Path
) -> None:
    ns = cluster_plan["namespace"]
    done = ajan("report", PLAN, "-n", ns, "--kubeconfig", str(kube.admin_kubeconfig), cwd=cwd)
    page = cwd / f"{PLAN}.html"  # the default output
    assert done.returncode == 0, done.stderr
    assert done.stderr == f"wrote {page}\n"  # nothing else, and where the page is
    doc = Page(page.read_text(encoding="utf-8"))
    words = " ".join(doc.all_text.split())
    assert f"{ns}/{PLAN}" in words and "Executed" in words
    # The timeline came from the policy's Prometheus: a chart per metric, each with a line of data.
    assert f"from {cluster_plan['prometheus']}" in words
    assert len(doc.with_class("svg", "chart")) == 4
    assert len(doc.with_class("polyline", "line")) >= 4
    assert len(doc.with_class("line", "plan")) == 4
    assert "Timeline unavailable" not in words
    assert len(doc.with_class("g", "cell")) == len(CORRELATIONS)
    # The Event about the plan is in its history.
    assert "event Normal DryRun" in words and "would send PATCH rollouts/checkout" in words


def test_report_to_stdout_and_with_prometheus_down(
    kube: Kube, cluster_plan: dict[str, Any], cwd: Path
) -> None:
    ns, kubeconfig = cluster_plan["namespace"], str(kube.admin_kubeconfig)
    down = f"http://127.0.0.1:{closed_port()}"
    done = ajan(
        "report", PLAN, "-n", ns, "--kubeconfig", kubeconfig, "-o", "-", "--prometheus", down, cwd=cwd
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert done.stdout.startswith("<!DOCTYPE html>") and list(cwd.iterdir()) == []
    doc = Page(done.stdout)
    words = " ".join(doc.all_text.split())
    assert f"Timeline unavailable: PrometheusUnavailable: Prometheus at {down} is unreachable" in words
    assert not doc.with_class("svg", "chart")
    assert len(doc.with_class("g", "cell")) == len(CORRELATIONS)  # the evidence is all there


def test_report_when_the_policy_is_gone(kube: Kube, cluster_plan: dict[str, Any], cwd: Path) -> None:
    ns = cluster_plan["namespace"]
    cluster_plan["custom"].delete_namespaced_custom_object(
        GROUP, VERSION, ns, "correlationpolicies", "checkout"
    )
    out = cwd / "sub" / "plan.html"
    out.parent.mkdir()
    done = ajan("report", PLAN, "-n", ns, "--kubeconfig", str(kube.admin_kubeconfig), "-o", str(out), cwd=cwd)
    assert done.returncode == 0, done.stderr
    words = " ".join(Page(out.read_text(encoding="utf-8")).all_text.split())
    assert "The CorrelationPolicy checkout could not be read: 404" in words
    assert "Timeline unavailable: the plan's CorrelationPolicy could not be read" in words


def test_a_missing_plan_is_one_line_and_exit_2(kube: Kube, namespace: str, crds: Any, cwd: Path) -> None:
    existing = cwd / "nope.html"
    existing.write_text("keep me")
    done = ajan("report", "nope", "-n", namespace, "--kubeconfig", str(kube.admin_kubeconfig), cwd=cwd)
    assert done.returncode == 2
    assert done.stderr == f"ajan report: error: remediationplan {namespace}/nope not found\n"
    assert existing.read_text() == "keep me"  # a failed report never truncates the output file


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["../etc/x"], "ajan report: error: '../etc/x' is not a RemediationPlan name"),
        (["p", "--kubeconfig", "/nonexistent/kubeconfig"], "ajan report: error: kubeconfig:"),
        ([], "ajan report: error: the following arguments are required: PLAN"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str, cwd: Path) -> None:
    done = ajan("report", *args, cwd=cwd)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr


def test_report_of_a_plan_written_by_the_operator(
    kube: Kube,
    admin_api: client.ApiClient,
    namespace: str,
    rollout_kit: RolloutKit,
    prometheus_with_history: StartWithHistory,
    ajan_operator: Callable[..., OperatorProcess],
    cwd: Path,
) -> None:
    """The whole way: ``ajan run`` sees an error burst and records a dry-run pause; the report of
    that plan (Prometheus from $AJAN_PROMETHEUS_URL: the policy names none) charts it."""
    rollout_kit.create_rollout("checkout")
    stack = prometheus_with_history(300.0, day_seconds=86400)
    ajan_operator(stack.url)
    cluster = Cluster(admin_api, namespace)
    rung = {"mode": "dry-run", "ladder": [{"minConfidence": 0.5, "severity": "warning", "action": "pause"}]}
    cluster.apply(canary_policy("errors", remediation=rung))

    def ready() -> bool:
        cond = cluster.condition("errors", "Ready")
        return bool(cond and cond["status"] == "True")

    wait_for(ready, timeout=OPERATOR_TIMEOUT_S, what="the policy Ready")
    stack.post_fault(kind="error_burst", rate=0.3, duration_s=600)

    def executed() -> dict[str, Any] | None:
        plans = cluster.plans()
        done = [p for p in plans if (p.get("status") or {}).get("phase") == "DryRun"]
        return done[0] if done else None

    plan = wait_for(executed, timeout=OPERATOR_TIMEOUT_S, what="a plan recorded (dry-run)", interval=1.0)
    name = plan["metadata"]["name"]
    done = ajan("report", name, "-n", namespace, "--kubeconfig", str(kube.admin_kubeconfig), cwd=cwd,
                env={"AJAN_PROMETHEUS_URL": stack.url})  # fmt: skip
    assert done.returncode == 0 and done.stderr.startswith("wrote "), done.stderr
    doc = Page((cwd / f"{name}.html").read_text(encoding="utf-8"))
    words = " ".join(doc.all_text.split())
    assert f"from {stack.url}" in words
    cards = doc.with_class("div", "card")
    assert len(cards) == 4 and "anomalous" in (cards[0].get("class") or "")
    first_card = words[words.index("Anomaly timeline") :]
    assert first_card.index("error-ratio anomalous") < first_card.index("queue-depth")
    assert len(doc.with_class("svg", "chart")) == 4
    assert len(doc.with_class("g", "cell")) == len(plan["spec"]["evidence"].get("correlations", []))
    assert '"paused": true' in words and "Would be sent (dry-run: nothing was sent)" in words
    assert "not sent (dry-run mode): see dryRunPatch" in words
