"""ajan's main job, live: the operator watches a canary, sees a fault coming, proposes a plan.

Run: ``hack/demo.sh`` (sets up the machine first) or ``.venv/bin/python hack/demo.py``; ``--csv``
runs the older demo of the analysis core on the bundled CSV sample (``hack/demo_csv.py``).

In about two to three minutes, on one machine, with nothing to configure, in six stages, each
announced with its number and usual duration (``[3/6] metrics: ...``):

1. set-up: the control plane's binaries, Prometheus and Redis installed (instant once done);
2. control plane: a local etcd + kube-apiserver (``hack/kube-up.sh``) with ajan's CRDs, Argo
   Rollouts' Rollout CRD and a canary Rollout;
3. metrics: a metrics generator for a ``checkout`` service's stable and canary tracks, with five
   minutes of healthy history backfilled into a real Prometheus that then scrapes it every second,
   and Redis for operators' verdicts;
4. operator: ``ajan run`` watching the namespace ``demo``; a CorrelationPolicy (mode auto) on the
   canary, shown Ready with its score and confidence;
5. fault and decision: a ``leading_indicator`` fault (the canary's queue fills first, its latency
   follows), narrated as ajan sees it: the confidence at each evaluation, the RemediationPlan it
   proposes with its evidence, the patch it sends, escalations (the older plan superseded);
6. recovery and clean-up: the fault ends, the plan is Resolved; what ``kubectl get
   correlationpolicies,remediationplans -n demo`` would print; each plan that paused or aborted the
   Rollout rendered by ``ajan report`` as ``ajan-demo-<plan>.html`` in ``--report-dir`` (default:
   the current directory) while Prometheus still answers; then everything stopped, on success,
   error, Ctrl-C or SIGTERM alike, and checked that nothing is left but the report.

While it waits on the operator, a terminal shows one live status line (what it waits for, for how
long, the latest confidence); anything else (a pipe, a CI log) gets plain lines only, never a
carriage return, with a "still waiting" line when nothing was said for a while.

Exit status: 0 on success; 1 with a one-line error when a step fails or times out; 130 when
interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import runpy
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, Final, TextIO, TypeVar

import httpx

ROOT: Final = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "operator"))

from ajan.models import GROUP, VERSION, Forecast  # noqa: E402
from ajan.simulate.stack import (  # noqa: E402
    CANARY_METRICS,
    JOB,
    ControlPlane,
    MetricsStack,
    OperatorProcess,
    RedisServer,
    StackError,
    apply_crds,
    apply_rollout_crd,
    build_binaries,
    canary_policy,
    canary_rollout,
    first_p99_at_or_above,
    install_prometheus,
    slo_metrics,
    wait_for,
)

T = TypeVar("T")

NAMESPACE: Final = "demo"
POLICY: Final = "checkout-canary"
HISTORY_S: Final = 300.0
INTERVAL_S: Final = 2.0
#: The queue depth multiplier grows by `rate` per second; the latency's does too, `lead_s` later.
FAULT: Final = {"kind": "leading_indicator", "rate": 0.02, "lead_s": 30.0, "duration_s": 900.0}
#: How long the fault lasts at most (from its start: p99 is a histogram quantile over a rate window,
#: so it crosses the SLO a while after the latency does, later still on a loaded machine), and at
#: least once a plan exists (to show the incident going on).
ESCALATION_WINDOW_S: Final = 180.0
INCIDENT_MIN_S: Final = 20.0
HEALTHY_EVALUATIONS: Final = 5
#: The canary's SLO: p99 under half a second (the generator's healthy p99 is about 0.39 s). A breach
#: predicted within HORIZON counts; the demo's clock is fast (a 3-minute window), so is the horizon.
SLO_P99_S: Final = 0.5
HORIZON: Final = "20s"
#: Deadlines of the story's steps: generous for a loaded 2-core machine; polls end as soon as they can.
READY_TIMEOUT_S: Final = 120.0
PLAN_TIMEOUT_S: Final = 150.0
RESOLVE_TIMEOUT_S: Final = 150.0
PLANS: Final = "remediationplans"
POLICIES: Final = "correlationpolicies"
#: The story's stages: name, what happens, how long it usually takes (measured on a loaded 2-core
#: machine). hack/demo.sh announces the first itself, as it runs most of it (the virtualenv too).
STAGES: Final = (
    (
        "set-up",
        "etcd + kube-apiserver binaries, Prometheus and Redis",
        "instant once built; first time ~13 min",
    ),
    ("control plane", "starting etcd + kube-apiserver, ajan's CRDs and a canary Rollout", "~10 s"),
    ("metrics", f"starting Prometheus with {HISTORY_S / 60:g} min of history, and Redis", "~5 s"),
    ("operator", "starting ajan run; a CorrelationPolicy and its first evaluations", "~20 s"),
    ("fault and decision", "a fault on the canary: what ajan sees and does", "1-2 min"),
    ("recovery and clean-up", "the fault ends, the plan resolves; its report; stopping everything", "~30 s"),
)
#: Actions that change the Rollout: a plan that sent one gets an HTML report.
ACTING: Final = frozenset({"pause", "abort", "rollback"})
#: Without a terminal, a "still waiting" line after this long without any other line.
QUIET_S: Final = 20.0


class Story:
    """The demo's narration on ``out``: lines stamped with the time since the demo started, stage
    headers (``[2/6] control plane: ...``) and, on a terminal only, one live status line under them.

    The status line is redrawn in place with a carriage return and erased before any other line, so
    it never mixes with them; when ``out`` is not a terminal (a pipe, a CI log) it is never written
    and no carriage return is printed: a plain "still waiting" line stands in for it when nothing
    else was said for :data:`QUIET_S` seconds.
    """

    def __init__(
        self,
        out: TextIO | None = None,
        *,
        started: float | None = None,
        live: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.out = out if out is not None else sys.stdout
        self.clock = clock
        self.started = clock() if started is None else started
        self.live = self.out.isatty() if live is None else live
        self.stage_number = 0
        self.last_line = self.clock()
        self._status = ""

    def _write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def say(self, message: str = "") -> None:
        """One line (or several, the first stamped) on stdout, flushed at once."""
        status = self._status
        self.clear_status()
        first, *rest = message.splitlines() or [""]
        lines = [f"[{self.clock() - self.started:6.1f}s] {first}", *(f"          {line}" for line in rest)]
        self._write("".join(f"{line}\n" for line in lines))
        self.last_line = self.clock()
        if status:
            self.status(status)

    def stage(self, number: int, *, announced: bool = False) -> None:
        """Start stage ``number`` (1-based) of :data:`STAGES`: its header, unless already ``announced``."""
        self.stage_number = number
        if announced:
            return
        name, what, duration = STAGES[number - 1]
        if number > 1:
            self.clear_status()
            self._write("\n")
        self.say(f"[{number}/{len(STAGES)}] {name}: {what} ({duration})")

    def status(self, text: str) -> None:
        """On a terminal, show ``text`` as the live status line (cut to the terminal's width, since a
        wrapped line could not be redrawn in place); elsewhere nothing."""
        if not self.live:
            return
        width = max(shutil.get_terminal_size((80, 24)).columns, 40) - 1  # a pty may say 0
        self._status = text[:width]
        self._write(f"\r{self._status}\x1b[K")

    def clear_status(self) -> None:
        """Erase the live status line, if one is shown: before any other output."""
        if self._status:
            self._status = ""
            self._write("\r\x1b[K")

    def waiting(self, what: str, elapsed: float, timeout: float, detail: str = "") -> None:
        """Tell that the demo is still waiting for ``what``: on a terminal in the status line at
        every call, elsewhere as a plain line once nothing was said for :data:`QUIET_S` seconds."""
        text = f"waiting for {what}: {elapsed:.0f}s (at most {timeout:g}s){detail}"
        if self.live:
            self.status(f"[{self.stage_number}/{len(STAGES)}] {text}")
        elif self.clock() - self.last_line >= QUIET_S:
            self.say(f"still {text}")


class Cluster:
    """The demo's few API calls, as the control plane's admin."""

    def __init__(self, api: Any) -> None:
        from kubernetes import client

        self.api = api
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    def create_namespace(self) -> None:
        self.core.create_namespace({"metadata": {"name": NAMESPACE}})

    def create_rollout(self, body: dict[str, Any]) -> None:
        self.custom.create_namespaced_custom_object("argoproj.io", "v1alpha1", NAMESPACE, "rollouts", body)

    def rollout(self, name: str) -> dict[str, Any]:
        got: dict[str, Any] = self.custom.get_namespaced_custom_object(
            "argoproj.io", "v1alpha1", NAMESPACE, "rollouts", name
        )
        return got

    def apply(self, body: dict[str, Any]) -> None:
        self.custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, POLICIES, body)

    def policy(self) -> dict[str, Any]:
        got: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, POLICIES, POLICY
        )
        return got

    def policies(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.custom.list_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, POLICIES
        )["items"]
        return items

    def plans(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.custom.list_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLANS
        )["items"]
        return sorted(items, key=lambda p: p["metadata"]["creationTimestamp"])


def condition(policy: dict[str, Any], type_: str) -> dict[str, Any] | None:
    """The policy's condition of that type, if any."""
    conditions = (policy.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == type_), None)


def rollout_state(rollout: dict[str, Any]) -> str:
    """What a person checks on the Rollout: paused, aborted, ajan's annotations."""
    annotations = {
        k.removeprefix("aiops.ajan.dev/"): v
        for k, v in ((rollout.get("metadata") or {}).get("annotations") or {}).items()
        if k.startswith("aiops.ajan.dev/")
    }
    paused = bool((rollout.get("spec") or {}).get("paused"))
    aborted = bool((rollout.get("status") or {}).get("abort"))
    return f"rollout {rollout['metadata']['name']}: spec.paused={paused}, status.abort={aborted}" + (
        f", annotations {annotations}" if annotations else ""
    )


def bar(value: float, width: int = 20) -> str:
    """A text gauge of a value in [0, 1]."""
    filled = round(max(0.0, min(1.0, value)) * width)
    return "#" * filled + "." * (width - filled)


def fmt(value: float) -> str:
    """A metric value, short."""
    return f"{value:.3g}"


def evidence_lines(evidence: dict[str, Any]) -> list[str]:
    """A plan's evidence in words: anomalies, relations, predicted impact, drift."""
    lines = []
    for a in evidence.get("anomalies") or []:
        lines.append(
            f"  anomalous: {a['metric']:<12} {fmt(a['value'])} vs baseline {fmt(a['baseline'])} "
            f"(z {a['zScore']:+.1f})"
        )
    for c in (evidence.get("correlations") or [])[:4]:
        lead = f"leads by {c['lagSeconds']:g}s" if c["lagSeconds"] else "moves with"
        lines.append(f"  relation:  {c['leader']} {lead} {c['follower']} (r {c['r']:+.2f})")
    for p in evidence.get("predictedImpact") or []:
        lines.append(
            f"  predicted: {p['metric']} in ~{p['lagSeconds']:g}s: z {p['expectedZ']:+.1f} "
            f"[{p['lowZ']:+.1f}, {p['highZ']:+.1f}], breach probability {p['breachProbability']:.0%}"
        )
    for f in evidence.get("forecasts") or []:
        sentence = Forecast.model_validate(f).sentence()
        # "may cross" already gives its probability: the one case that is all it has to say.
        if "(probability" not in sentence:
            sentence += f" (probability {f['probability']:.0%})"
        lines.append(f"  forecast:  {sentence}")
    for d in evidence.get("drift") or []:
        lines.append(f"  drifted:   {d['metric']} (PSI {d['psi']:.2f}, KS p {d['ksPValue']:.1e})")
    return lines or ["  (no evidence recorded)"]


def age(stamp: str, now: dt.datetime) -> str:
    """kubectl's age format: 45s, 3m12s, 2h5m."""
    seconds = max(0, int((now - dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))).total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60}s" if seconds < 600 else f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60}m"


def table(rows: list[list[str]]) -> list[str]:
    """Columns padded as kubectl does (three spaces between)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def kubectl_get(cluster: Cluster) -> list[str]:
    """What ``kubectl get correlationpolicies,remediationplans -n demo`` prints (the CRDs' columns)."""
    now = dt.datetime.now(dt.UTC)
    out = [f"$ kubectl get {POLICIES},{PLANS} -n {NAMESPACE}"]
    policies = [["NAME", "TARGET", "MODE", "SCORE", "READY", "AGE"]]
    for p in cluster.policies():
        spec, status = p["spec"], p.get("status") or {}
        ready = condition(p, "Ready")
        score = status.get("anomalyScore")
        policies.append(
            [
                f"correlationpolicy.{GROUP}/{p['metadata']['name']}",
                spec["targetRef"]["name"],
                (spec.get("remediation") or {}).get("mode", ""),
                f"{score:.3g}" if score is not None else "",
                ready["status"] if ready else "",
                age(p["metadata"]["creationTimestamp"], now),
            ]
        )
    out += table(policies)
    plans = [["NAME", "TARGET", "ACTION", "SEVERITY", "CONFIDENCE", "PHASE", "AGE"]]
    for p in cluster.plans():
        spec = p["spec"]
        plans.append(
            [
                f"remediationplan.{GROUP}/{p['metadata']['name']}",
                spec["targetRef"]["name"],
                spec["action"],
                spec["severity"],
                f"{spec['confidence']:.3g}",
                (p.get("status") or {}).get("phase", ""),
                age(p["metadata"]["creationTimestamp"], now),
            ]
        )
    out += ["", *table(plans)] if len(plans) > 1 else ["", "No remediationplans found."]
    return out


def live_values(prometheus_url: str) -> str:
    """The canary's queue depth and p99 latency right now, from Prometheus: the fault made visible."""
    shown = []
    for metric in CANARY_METRICS:
        if metric["name"] not in ("queue-depth", "latency-p99"):
            continue
        try:
            response = httpx.get(
                f"{prometheus_url}/api/v1/query", params={"query": metric["query"]}, timeout=2
            )
            value = float(response.json()["data"]["result"][0]["value"][1])
        except (httpx.HTTPError, KeyError, IndexError, ValueError):  # a missed scrape: shown as such
            shown.append(f"{metric['name']} ?")
            continue
        shown.append(f"{metric['name']} {fmt(value)}{'s' if metric['name'] == 'latency-p99' else ''}")
    return ", ".join(shown)


def lead_line(plans: Iterable[dict[str, Any]], prometheus_url: str, fault_at: float) -> str:
    """The measured lead: when ajan first paused or aborted the Rollout, against when p99 crossed
    the SLO (from Prometheus, at one-second resolution)."""
    acted = sorted(
        (
            dt.datetime.fromisoformat(p["status"]["executedAt"].replace("Z", "+00:00")).timestamp(),
            p["spec"]["action"],
        )
        for p in plans
        if p["spec"]["action"] in ("pause", "abort") and (p.get("status") or {}).get("executedAt")
    )
    crossed = first_p99_at_or_above(prometheus_url, fault_at, SLO_P99_S)
    if not acted:
        return "lead: ajan did not pause or abort the Rollout"
    at, action = acted[0]
    told = f"lead: ajan's first {action} came {at - fault_at:.0f}s after the fault began"
    if crossed is None:
        return f"{told}; p99 never reached {SLO_P99_S:g}s"
    lead = crossed - at
    when = f"{lead:.0f}s before" if lead >= 0 else f"{-lead:.0f}s after"
    return (
        f"{told}, {when} p99 first crossed {SLO_P99_S:g}s ({crossed - fault_at:.0f}s after the fault began)"
    )


class Watch:
    """Narrates the policy's evaluations and its plans' lives, one poll at a time."""

    def __init__(self, cluster: Cluster, story: Story, prometheus_url: str) -> None:
        self.cluster = cluster
        self.story = story
        self.prometheus_url = prometheus_url
        self.last_evaluation: str | None = None
        self.evaluations = 0
        self.confidence: float | None = None
        self.phases: dict[str, str | None] = {}
        self.plans: dict[str, dict[str, Any]] = {}
        self.sent: set[str] = set()

    def poll(self) -> dict[str, Any]:
        """Tell what changed since the last poll; return the policy."""
        policy = self.cluster.policy()
        status = policy.get("status") or {}
        stamp = status.get("lastEvaluationTime")
        if stamp and stamp != self.last_evaluation and status.get("confidence") is not None:
            self.last_evaluation = stamp
            self.evaluations += 1
            confidence = self.confidence = float(status["confidence"])
            incident = status.get("incident")
            note = ""
            if incident:
                healthy = incident.get("healthyEvaluations", 0)
                note = f"  incident {incident['id']}: {incident['action']}"
                note += f", {healthy} healthy in a row" if healthy else ""
            self.story.say(
                f"evaluation: confidence {confidence:.2f} [{bar(confidence)}] "
                f"score {float(status.get('anomalyScore') or 0):.2f} "
                f"| {live_values(self.prometheus_url)}{note}"
            )
        for plan in self.cluster.plans():
            name = plan["metadata"]["name"]
            phase = (plan.get("status") or {}).get("phase")
            if name not in self.plans:
                self.plans[name] = plan
                spec = plan["spec"]
                self.story.say(
                    f"plan proposed: {name}: action {spec['action']}, severity {spec['severity']}, "
                    f"confidence {spec['confidence']:.2f}, mode {spec.get('mode', 'dry-run')}\n"
                    + "\n".join(evidence_lines(spec.get("evidence") or {}))
                )
            self.plans[name] = plan
            if phase and phase != self.phases.get(name):
                if name in self.phases:  # the first phase is told with the proposal
                    message = ""
                    conditions = (plan.get("status") or {}).get("conditions") or []
                    if conditions and conditions[0].get("message"):
                        message = f": {conditions[0]['message']}"
                    self.story.say(f"plan {name}: {self.phases[name] or 'new'} -> {phase}{message}")
                self.phases[name] = phase
            elif name not in self.phases:
                self.phases[name] = phase
            status = plan.get("status") or {}
            # Told once, whether the plan was first seen Executing or already Executed (the
            # operator often acts within one poll of proposing).
            if status.get("executedAt") and status.get("patchRequest") and name not in self.sent:
                self.sent.add(name)
                self.story.say(
                    f"  sent {status.get('patchRequest')}: {status.get('dryRunPatch')}\n  "
                    + rollout_state(self.cluster.rollout(JOB))
                )
        return policy

    def until(self, done: Callable[[dict[str, Any]], T | None], *, timeout: float, what: str) -> T:
        """Poll and narrate until ``done(policy)`` returns something; meanwhile tell the wait."""
        started = time.monotonic()

        def check() -> T | None:
            result = done(self.poll())
            if result is None or result is False:
                count = self.evaluations
                detail = f"; {count} evaluation{'s' * (count != 1)}" if count else ""
                if self.confidence is not None:
                    detail += f", confidence {self.confidence:.2f}"
                self.story.waiting(what, time.monotonic() - started, timeout, detail)
            return result

        try:
            return wait_for(check, timeout=timeout, what=what, interval=0.5)
        finally:
            self.story.clear_status()


def report_path(report_dir: Path, plan: str) -> Path:
    """Where the report of ``plan`` goes."""
    return report_dir / f"ajan-demo-{plan}.html"


def shown(path: Path) -> str:
    """``path`` as a person would type it from here: relative under the current directory."""
    relative = os.path.relpath(path)
    return relative if not relative.startswith("..") else str(path.resolve())


def write_reports(api: Any, prometheus_url: str, names: Sequence[str], report_dir: Path) -> dict[str, Path]:
    """Render, with ``ajan report``'s own functions, each of the plans ``names`` that sent an action
    changing the Rollout (:data:`ACTING`) into ``report_dir``; return the files written by plan.

    Needs the stack up: the plan, its policy and its Events come from the API server, the timeline
    around the plan from Prometheus. Each file appears whole or not at all.
    """
    from ajan.report import fetch_timeline, plan_time, read_plan, render

    written: dict[str, Path] = {}
    for name in names:
        read = read_plan(api, NAMESPACE, name)
        status = read.plan.status
        if read.plan.spec.action.value not in ACTING or status is None or status.executed_at is None:
            continue
        timeline = fetch_timeline(read.policy, plan_time(read.plan), prometheus_url, now=time.time())
        page = render(read.plan, read.policy, timeline, events=read.events, notes=read.notes)
        path = report_path(report_dir, name)
        partial = path.with_name(f".{path.name}.partial")
        try:
            partial.write_text(page, encoding="utf-8")
            partial.replace(path)
        finally:
            partial.unlink(missing_ok=True)
        written[name] = path
    return written


def story(
    cleanup: contextlib.ExitStack, say: Story, *, report_dir: Path | None, set_up_announced: bool = False
) -> dict[str, Path]:
    """The demo's stages; everything it starts is registered with ``cleanup``. Returns the reports
    written into ``report_dir`` (None: no report)."""
    say.stage(1, announced=set_up_announced)
    # Instant once done (hack/demo.sh has just done it); a first build shows its progress on stderr.
    build_binaries(["etcd", "kube-apiserver"], show_progress=True)
    prometheus = install_prometheus()
    workdir = Path(tempfile.mkdtemp(prefix="ajan-demo-"))
    cleanup.callback(shutil.rmtree, workdir, ignore_errors=True)

    say.stage(2)
    plane = ControlPlane.start(workdir / "kube", show_build_progress=True)
    cleanup.callback(plane.stop)
    api = plane.api_client()
    cleanup.callback(api.close)
    served = apply_crds(api)
    apply_rollout_crd(api)
    cluster = Cluster(api)
    cluster.create_namespace()
    cluster.create_rollout(canary_rollout(JOB))
    say.say(
        f"control plane ready; CRDs {', '.join(served)} and Argo Rollouts' Rollout established; "
        f"namespace {NAMESPACE} created with the canary Rollout {JOB} (no Argo controller runs here: "
        "ajan's patches are what changes it)"
    )

    say.stage(3)
    say.say(
        f"starting the metrics generator ({JOB}: stable + canary) with {HISTORY_S / 60:g} minutes of "
        "healthy history, backfilled into Prometheus"
    )
    metrics = MetricsStack.start(
        workdir / "metrics", HISTORY_S, seed=11, day_seconds=86400.0, binary=prometheus
    )
    cleanup.callback(metrics.stop)
    say.say(
        f"Prometheus ready at {metrics.url}, scraping the generator at {metrics.generator_url} every second"
    )

    redis = RedisServer(workdir / "redis")
    redis.start()
    cleanup.callback(redis.stop)
    say.say(f"Redis ready at {redis.url} (append-only, noeviction): operators' verdicts live there 7 days")

    say.stage(4)
    operator = OperatorProcess(
        plane.admin_kubeconfig, NAMESPACE, metrics.url, workdir, f"--redis-url={redis.url}"
    )
    operator.start()
    cleanup.callback(operator.stop)
    say.say(
        f"ajan run is up, watching namespace {NAMESPACE} "
        f"(pid {operator.proc.pid if operator.proc else '?'}), feedback in Redis"
    )

    metrics_text = ", ".join(
        f"{m['name']}{' (SLO)' if m.get('role') == 'slo' else ''}" for m in CANARY_METRICS
    )
    cluster.apply(
        canary_policy(
            POLICY,
            interval_s=INTERVAL_S,
            metrics=slo_metrics(SLO_P99_S),
            remediation={"mode": "auto", "horizon": HORIZON},
        )
    )
    say.say(
        f"applied CorrelationPolicy {POLICY}: target Rollout {JOB}, every {INTERVAL_S:g}s over a 3m window "
        f"at 1s steps, mode auto (ajan acts on the Rollout itself),\nmetrics {metrics_text}; "
        f"SLO: latency-p99 under {SLO_P99_S:g}s, breaches predicted {HORIZON} ahead count;\n"
        "ladder: confidence 0.5 -> annotate (info), 0.75 -> pause (warning), 0.9 -> abort (critical)"
    )
    watch = Watch(cluster, say, metrics.url)

    def ready(policy: dict[str, Any]) -> dict[str, Any] | None:
        cond = condition(policy, "Ready")
        return cond if cond and cond["status"] == "True" and watch.evaluations else None

    cond = watch.until(ready, timeout=READY_TIMEOUT_S, what=f"policy {POLICY} Ready")
    status = cluster.policy().get("status") or {}
    say.say(
        f"policy {POLICY} is Ready ({cond['reason']}): "
        f"anomaly score {float(status.get('anomalyScore') or 0):.2f}, "
        f"confidence {float(status.get('confidence') or 0):.2f}: a healthy canary"
    )
    seen = watch.evaluations
    watch.until(
        lambda _: watch.evaluations >= seen + HEALTHY_EVALUATIONS or None,
        timeout=HEALTHY_EVALUATIONS * INTERVAL_S + 60,
        what="healthy evaluations",
    )

    say.stage(5)
    fault_at = time.time()
    metrics.post_fault(**FAULT)
    say.say(
        f"injected a leading_indicator fault on the canary: its queue depth grows {FAULT['rate']:.0%} a "
        f"second from now, its latency the same way {FAULT['lead_s']:g}s later"
    )
    watch.until(lambda _: watch.plans or None, timeout=PLAN_TIMEOUT_S, what="a RemediationPlan")
    first_plan = time.monotonic()

    def escalated(policy: dict[str, Any]) -> bool:
        incident = (policy.get("status") or {}).get("incident") or {}
        elapsed = time.monotonic() - first_plan
        top = incident.get("action") == "abort"
        # Until p99 crosses the SLO too, so that the lead is measured.
        crossed = first_p99_at_or_above(metrics.url, fault_at, SLO_P99_S) is not None
        return (top and crossed and elapsed > INCIDENT_MIN_S) or time.time() - fault_at > ESCALATION_WINDOW_S

    watch.until(escalated, timeout=ESCALATION_WINDOW_S + 30, what="the incident to unfold")
    say.say(lead_line(watch.plans.values(), metrics.url, fault_at))

    say.stage(6)
    metrics.clear_faults()
    say.say("ended the fault: the canary recovers; ajan resolves the incident after 3 healthy evaluations")

    def resolved(policy: dict[str, Any]) -> bool:
        incident = (policy.get("status") or {}).get("incident")
        return not incident and any(phase == "Resolved" for phase in watch.phases.values())

    watch.until(resolved, timeout=RESOLVE_TIMEOUT_S, what="the plan Resolved")
    current = [name for name, phase in watch.phases.items() if phase == "Resolved"]
    say.say(f"incident over: plan {', '.join(current)} Resolved")
    say.say(rollout_state(cluster.rollout(JOB)))
    say.say("\n".join(kubectl_get(cluster)))
    if report_dir is None:
        return {}
    # Now, before the clean-up: the report's timeline comes from this Prometheus.
    reports = write_reports(api, metrics.url, list(watch.plans), report_dir)
    for name, path in reports.items():
        say.say(
            f"report of plan {name} ({watch.plans[name]['spec']['action']}): {shown(path)}\n"
            "  its metrics' timeline, evidence, correlations and the patch sent: open it in a browser"
        )
    if not reports:
        say.say("no plan paused or aborted the Rollout: no report written")
    return reports


def first_line(error: BaseException) -> str:
    """The first line of an error's message (a StackError carries a process's log after it)."""
    return (str(error).splitlines() or [""])[0]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line: ``--csv``, ``--report-dir DIR`` / ``--no-report``."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--csv", action="store_true", help="run the analysis core's CSV demo instead")
    reports = parser.add_mutually_exclusive_group()
    reports.add_argument(
        "--report-dir",
        type=Path,
        default=Path.cwd(),
        metavar="DIR",
        help="where the HTML report of each plan that paused or aborted the Rollout goes, as "
        "ajan-demo-PLAN.html (default: the current directory); kept after the clean-up",
    )
    reports.add_argument(
        "--no-report", dest="report_dir", action="store_const", const=None, help="write no report"
    )
    # hack/demo.sh's start (epoch seconds): it announced the set-up stage and ran it, the clock
    # counts from then.
    parser.add_argument("--set-up-started", type=float, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the story; return the exit status."""
    args = parse_args(argv)
    if args.csv:
        runpy.run_path(str(ROOT / "hack" / "demo_csv.py"), run_name="__main__")
        return 0
    report_dir: Path | None = args.report_dir
    if report_dir is not None:  # a bad directory is told now, not after two minutes of demo
        try:
            report_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            print(f"demo: error: --report-dir {report_dir}: {error.strerror}", file=sys.stderr)
            return 1
        if not os.access(report_dir, os.W_OK):
            print(f"demo: error: --report-dir {report_dir}: not writable", file=sys.stderr)
            return 1

    def terminate(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")  # unwinds through the clean-up below

    signal.signal(signal.SIGTERM, terminate)
    # A closed terminal window too: Python's default for SIGHUP is to die without cleaning up.
    signal.signal(signal.SIGHUP, terminate)
    # A shell without job control starts background commands with SIGINT ignored, and Python then
    # never raises KeyboardInterrupt: Ctrl-C must stop (and clean up) the demo however it started.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    since = args.set_up_started
    say = Story(started=None if since is None else time.monotonic() - max(0.0, time.time() - since))
    cleanup = contextlib.ExitStack()
    status = 0
    reports: dict[str, Path] = {}

    def tell(message: str) -> None:
        """One line on stderr, below the story; a terminal gone (SIGHUP) must not stop the clean-up."""
        with contextlib.suppress(OSError):
            say.clear_status()
            print(f"demo: {message}", file=sys.stderr, flush=True)

    try:
        reports = story(cleanup, say, report_dir=report_dir, set_up_announced=since is not None)
    except KeyboardInterrupt:
        tell("interrupted; stopping everything")
        status = 130
    except StackError as error:
        tell(f"error: {first_line(error)}")
        status = 1
    except Exception as error:  # an API or HTTP failure: one line too, and the clean-up still runs
        tell(f"error: {type(error).__name__}: {first_line(error)}")
        status = 1
    finally:
        # A second Ctrl-C must not cut the clean-up short and leave processes behind.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        try:
            cleanup.close()
        except StackError as error:
            tell(f"error while stopping: {first_line(error)}")
            status = 1
    if status == 0:
        kept = f" but the report{'s' * (len(reports) > 1)} " + ", ".join(map(shown, reports.values()))
        say.say(
            "stopped the operator, Prometheus, Redis, the generator and the control plane; nothing left"
            + (kept if reports else "")
        )
    return status


if __name__ == "__main__":
    sys.exit(main())
