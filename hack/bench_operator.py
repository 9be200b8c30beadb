"""Benchmark of the operator's evaluations: from a Prometheus sample to the RemediationPlan written.

Run: ``.venv/bin/python hack/bench_operator.py [--rounds 5] [--sizes 1,10,100] [--concurrency 8]``
or, in steady state, ``... --sizes 1,100,1000 --interval 30 --duration 120 [--healthy]``
(``--healthy``: no fault, the canary as most canaries are most of the time)

It starts a local control plane (``hack/kube-up.sh``: etcd + kube-apiserver) with ajan's CRDs and,
for each size N in turn, a metrics generator with five minutes of backfilled history and a
Prometheus scraping it every second (`ajan.simulate.stack`), with an ``error_burst``
fault on the generator's canary from the start of the size's measurement (a fresh stack per size:
ajan's detector adapts to a lasting fault within a minute or two, after which no policy opens a
plan). Once one policy's evaluation opens a plan (the warm-up), N CorrelationPolicies like the
end-to-end tests' (`ajan.simulate.stack.canary_policy`: window 3m, step 1s, four metrics, one rung
``minConfidence 0.5 -> pause``, dry-run) in a namespace of their own are evaluated at once,
``--rounds`` times: N `PolicyEvaluator`s
share one `Runtime` (one HTTP pool, one `KubeStore`, ``--concurrency`` query slots, assessment
slots and API threads, as ``ajan run`` builds them) and run in one event loop under
``asyncio.gather``, as the operator's daemons do when their intervals line up. Before each round
every policy's plans and ``status.incident`` are deleted and each gets a fresh evaluator, so that
every evaluation opens an incident again; a round starts half a second into a whole second
(`ROUND_PHASE_S`), so the newest sample is 0.5 s old when it starts, the mean of what a daemon at an
arbitrary phase sees.

Per evaluation that opened a plan:

* **sample -> plan**: the wall time at which the plan's status write (``phase: Proposed``, after the
  create) returned, minus the time of the newest sample in the evaluated window
  (``Report.assessment.at``, the window's end). The time is taken by a `KubeStore` subclass around
  `KubeStore.patch_plan_status`; ``reconcile.py`` is not touched. (The time `evaluate` returns
  bounds it from above: one more write, the policy's status, follows the plan's.)
* **evaluation**: the whole `PolicyEvaluator.evaluate` call (of the evaluations that opened a plan).

Both as p50 and p95 over all rounds (linear interpolation; with N=1 and 5 rounds p95 is nearly the
maximum), with their ratio to N=1 of the same run. The phases of an evaluation (Prometheus queries,
waiting for an assessment slot, the assessment, the API writes) are timed from the outside too: a
`Runtime` subclass wraps the metric source and the assessment semaphore, the `KubeStore` subclass
times every API call and how long it waited for one of the store's threads. The CPU time used during
each round by this process, Prometheus and the control plane is read from ``/proc``.

With ``--interval S`` the benchmark runs in steady state instead of in rounds: each of the N
policies is evaluated every S seconds for ``--duration`` seconds by one long-lived evaluator, the
N phases spread evenly over the interval, as ``ajan run``'s daemons do once their start times have
scattered. There is no reset: a policy's first evaluations open its incident, later ones continue or
close it, as in a cluster. Reported per size: evaluations needed and done per second, how late an
evaluation started against its due time, **sample -> decision** (the evaluation's return minus the
newest sample it judged) p50/p95/p99 for every evaluation, sample -> plan for the ones that opened a
plan, CPU seconds per evaluation (this process, Prometheus, the control plane), Prometheus queries and
API requests per evaluation, and the growth of this process's resident memory per policy.

Everything started is stopped again, on success, error or Ctrl-C. Nothing is asserted: speed is
measured, never tested. Numbers depend on what else runs on the machine (the control plane and
Prometheus share its cores with the benchmark); compare ratios within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import math
import os
import platform
import shlex
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

import httpx
import numpy as np
from kubernetes import client, config

ROOT: Final = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "operator"))

from ajan.clients.kubernetes import KubeStore  # noqa: E402
from ajan.clients.prometheus import RangeResult  # noqa: E402
from ajan.models import GROUP, VERSION, RemediationPlan  # noqa: E402
from ajan.services.incident import Outcome  # noqa: E402
from ajan.services.reconcile import PolicyEvaluator, Report  # noqa: E402
from ajan.services.runtime import OperatorConfig, Runtime  # noqa: E402
from ajan.simulate.stack import (  # noqa: E402
    ControlPlane,
    MetricsStack,
    apply_crds,
    canary_policy,
    install_prometheus,
)

T = TypeVar("T")

HISTORY_S: Final = 300.0
#: One rung, as the end-to-end tests' fault tests use: every evaluation of the fault opens a plan.
SINGLE_RUNG: Final = {
    "mode": "dry-run",
    "ladder": [{"minConfidence": 0.5, "severity": "warning", "action": "pause"}],
}
#: The fault the policies see: the e2e tests' one, long enough for the whole run.
FAULT: Final = {"kind": "error_burst", "rate": 0.3, "duration_s": 3600}
#: How long to wait for a first evaluation that opens a plan after the fault starts.
WARMUP_TIMEOUT_S: Final = 180.0
#: Every round starts this far into a second, i.e. into a step of the policies' 1 s grid: the
#: window's end is the last whole second before the start, so without it the sample's age at the
#: start would be a uniform draw in [0, 1) s shared by all N evaluations of a round.
ROUND_PHASE_S: Final = 0.5
PLANS: Final = "remediationplans"
POLICIES: Final = "correlationpolicies"


# --- probes: per-evaluation timings, taken from the outside ---------------------------------------


@dataclass
class Probe:
    """The timestamps (``time.time()``) and API statistics of one evaluation."""

    start: float = 0.0
    fetch_end: float = 0.0
    assess_queued: float = 0.0
    assess_start: float = 0.0
    assess_end: float = 0.0
    plan_written: float | None = None
    end: float = 0.0
    api_calls: int = 0
    api_s: float = 0.0
    api_pool_wait_s: float = 0.0
    queries: int = 0
    due: float = 0.0
    report: Report | None = None
    error: BaseException | None = None

    @property
    def sample_at(self) -> float | None:
        return self.report.assessment.at.timestamp() if self.report and self.report.assessment else None

    @property
    def opened(self) -> bool:
        return (
            self.report is not None and self.report.outcome is Outcome.OPEN and self.plan_written is not None
        )


PROBE: contextvars.ContextVar[Probe] = contextvars.ContextVar("probe")


class TimedSource:
    """The runtime's throttled source; notes when the evaluation's last query answered."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    async def query_range(
        self, query: str, start: float, end: float, step: float, *, min_points: int = 1
    ) -> RangeResult:
        try:
            result: RangeResult = await self._inner.query_range(
                query, start, end, step, min_points=min_points
            )
            return result
        finally:
            probe = PROBE.get(None)
            if probe is not None:
                probe.fetch_end = max(probe.fetch_end, time.time())
                probe.queries += 1

    async def is_online(self) -> bool:
        online: bool = await self._inner.is_online()
        return online


class TimedSlots(asyncio.Semaphore):
    """The assessment slots; note when an evaluation queued for one, got it and gave it back."""

    async def acquire(self) -> Literal[True]:
        probe = PROBE.get(None)
        if probe is not None:
            probe.assess_queued = time.time()
        acquired = await super().acquire()
        if probe is not None:
            probe.assess_start = time.time()
        return acquired

    def release(self) -> None:
        probe = PROBE.get(None)
        if probe is not None:
            probe.assess_end = time.time()
        super().release()


class TimedRuntime(Runtime):
    """A `Runtime` whose metric source and assessment slots report to the evaluation's probe."""

    def __init__(self, config: OperatorConfig, http: httpx.AsyncClient, kube: KubeStore) -> None:
        super().__init__(config, http, kube)
        self.analysis_slots = TimedSlots(config.concurrency)

    def source(self, url: str) -> Any:  # a TimedSource around the runtime's own throttled source
        return TimedSource(super().source(url))


class TimedKubeStore(KubeStore):
    """A `KubeStore` that times its API calls (and their wait for a thread) and the plan's write."""

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        probe = PROBE.get(None)
        submitted = time.time()
        started: list[float] = []

        def run() -> T:
            started.append(time.time())
            return fn(*args, **kwargs)

        try:
            return await super()._call(run)
        finally:
            if probe is not None:
                probe.api_calls += 1
                probe.api_s += time.time() - submitted
                probe.api_pool_wait_s += (started[0] if started else time.time()) - submitted

    async def patch_plan_status(self, namespace: str, name: str, status: Any) -> RemediationPlan:
        plan = await super().patch_plan_status(namespace, name, status)
        probe = PROBE.get(None)
        if probe is not None and status.get("phase") == "Proposed" and probe.plan_written is None:
            probe.plan_written = time.time()
        return plan


async def timed_evaluate(evaluator: PolicyEvaluator, body: dict[str, Any]) -> Probe:
    """One evaluation with its probe (in a task of its own, so the probe is its context's)."""
    probe = Probe()
    PROBE.set(probe)
    probe.start = time.time()
    try:
        probe.report = await evaluator.evaluate(body)
    except Exception as err:  # reported in the output: the operator's daemon would log and retry
        probe.error = err
    probe.end = time.time()
    return probe


def _stat(pid: int | str) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # fields from the 3rd (state) on


def group_pids(pgid: int) -> list[int]:
    """Live processes of a process group."""
    pids = []
    for entry in Path("/proc").iterdir():
        fields = _stat(entry.name) if entry.name.isdigit() else None
        if fields is not None and int(fields[2]) == pgid:
            pids.append(int(entry.name))
    return pids


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the processes have used so far (all their threads)."""
    ticks = 0
    for pid in pids:
        fields = _stat(pid)
        if fields is not None:
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Processes:
    """Whose CPU time a round is charged: this process (the operator's code), Prometheus, the
    control plane (kube-apiserver + etcd)."""

    prometheus: int
    kube_group: int

    def sample(self) -> tuple[float, float, float]:
        return (
            cpu_seconds([os.getpid()]),
            cpu_seconds([self.prometheus]),
            cpu_seconds(group_pids(self.kube_group)),
        )


# --- the environment: control plane, CRDs, generator + Prometheus ---------------------------------


@contextlib.contextmanager
def control_plane() -> Iterator[tuple[Path, int]]:
    """``hack/kube-up.sh`` (etcd + kube-apiserver, no controller manager), with ajan's CRDs.

    Yields the admin kubeconfig and the script's process group (its components run in it).
    """
    with tempfile.TemporaryDirectory(prefix="ajan-bench-") as tmp:
        plane = ControlPlane.start(Path(tmp))  # its own group: Ctrl-C reaches us only, we stop it
        try:
            with plane.api_client() as api:
                apply_crds(api)
            yield plane.admin_kubeconfig, plane.proc.pid
        finally:
            plane.stop()


@contextlib.contextmanager
def metrics_stack(workdir: Path) -> Iterator[MetricsStack]:
    """A generator with `HISTORY_S` of past, and a Prometheus backfilled with it, scraping it live
    every second (what the tests' ``prometheus_with_history`` fixture starts)."""
    install_prometheus()
    # A real day: a compressed one ramps the load like a fault.
    stack = MetricsStack.start(workdir, HISTORY_S, seed=11, day_seconds=86400.0)
    try:
        yield stack
    finally:
        stack.stop()


# --- the benchmark --------------------------------------------------------------------------------


class Namespace:
    """N policies in a fresh namespace, and the admin calls that reset them between rounds."""

    def __init__(self, api: client.ApiClient, size: int, prometheus_url: str) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.name = f"ajan-bench-{size}-{uuid.uuid4().hex[:6]}"
        client.CoreV1Api(api).create_namespace({"metadata": {"name": self.name}})
        self.policies = [f"canary-{i:03d}" for i in range(size)]
        for name in self.policies:
            self.custom.create_namespaced_custom_object(
                GROUP,
                VERSION,
                self.name,
                POLICIES,
                canary_policy(name, remediation=SINGLE_RUNG, prometheus={"url": prometheus_url}),
            )

    def reset(self) -> list[dict[str, Any]]:
        """Delete every plan, clear every policy's incident; the policies' bodies, as kopf hands them."""
        self.custom.delete_collection_namespaced_custom_object(GROUP, VERSION, self.name, PLANS)
        for name in self.policies:
            self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, self.name, POLICIES, name, {"status": {"incident": None, "lastPlan": None}}
            )
        left = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.name, PLANS)["items"]
        assert not left, f"plans left after the reset: {[p['metadata']['name'] for p in left]}"
        listed = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.name, POLICIES)["items"]
        bodies: dict[str, dict[str, Any]] = {p["metadata"]["name"]: p for p in listed}
        assert all("incident" not in (bodies[n].get("status") or {}) for n in self.policies)
        return [bodies[name] for name in self.policies]


async def evaluate_round(
    runtime: Runtime, namespace: Namespace, processes: Processes | None = None
) -> tuple[list[Probe], float, tuple[float, float, float]]:
    """Every policy of the namespace evaluated at once by a fresh evaluator.

    Returns the probes, the round's wall time, and the CPU seconds used meanwhile by this process,
    Prometheus and the control plane.
    """
    bodies = namespace.reset()
    evaluators = [PolicyEvaluator(runtime, namespace.name, b["metadata"]["name"]) for b in bodies]
    now = time.time()
    await asyncio.sleep((math.floor(now) + 1 + ROUND_PHASE_S - now) % 1.0 or 1.0)
    cpu_before = processes.sample() if processes else (0.0, 0.0, 0.0)
    started = time.perf_counter()
    probes = await asyncio.gather(*(timed_evaluate(e, b) for e, b in zip(evaluators, bodies, strict=True)))
    wall = time.perf_counter() - started
    cpu_after = processes.sample() if processes else (0.0, 0.0, 0.0)
    cpu = (
        cpu_after[0] - cpu_before[0],
        cpu_after[1] - cpu_before[1],
        cpu_after[2] - cpu_before[2],
    )
    return list(probes), wall, cpu


async def warm_up(runtime: Runtime, namespace: Namespace, *, until_plan: bool = True) -> int:
    """Evaluate one policy, a fresh evaluator each time, until the fault opens a plan (or, without
    ``until_plan``, until an evaluation succeeds); attempts made."""
    deadline = time.monotonic() + WARMUP_TIMEOUT_S
    attempts = 0
    while True:
        attempts += 1
        (probe,), _, _ = await evaluate_round(runtime, namespace)
        report = probe.report
        confidence = report.assessment.confidence if report and report.assessment else None
        print(
            f"  warm-up {attempts}: outcome {report.outcome if report else None}, "
            f"confidence {confidence}, reason {report.reason if report else probe.error!r}",
            file=sys.stderr,
        )
        if probe.opened or (not until_plan and report is not None and report.assessment is not None):
            return attempts
        if time.monotonic() > deadline:
            raise RuntimeError(f"no evaluation opened a plan within {WARMUP_TIMEOUT_S:g} s of the fault")
        await asyncio.sleep(2.0)


async def measure(runtime: Runtime, namespace: Namespace, processes: Processes, rounds: int) -> SizeResult:
    """``rounds`` rounds of all the namespace's policies at once."""
    size = len(namespace.policies)
    result = SizeResult(size)
    for index in range(rounds):
        probes, seconds, cpu = await evaluate_round(runtime, namespace, processes)
        result.probes += probes
        result.round_s.append(seconds)
        result.cpu_s.append(cpu)
        errors = [p.error for p in probes if p.error is not None]
        outcomes = sorted({p.report.reason or str(p.report.outcome) for p in probes if p.report})
        confidence = median(
            [p.report.assessment.confidence for p in probes if p.report and p.report.assessment]
        )
        print(
            f"  N={size} round {index + 1}: {seconds:.2f} s, {sum(p.opened for p in probes)}/{size} opened "
            f"a plan, outcomes {outcomes}, median confidence {confidence:.3f}, {len(errors)} errors "
            f"{[repr(e)[:200] for e in errors[:2]]}",
            file=sys.stderr,
        )
    return result


def rss_bytes() -> int:
    """This process's resident memory now."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@dataclass
class SteadyResult:
    """One size in steady state: every evaluation's probe, and the run's totals."""

    size: int
    interval_s: float
    probes: list[Probe] = field(default_factory=list)
    wall_s: float = 0.0
    cpu_s: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rss_growth: int = 0


async def steady(
    runtime: Runtime, namespace: Namespace, processes: Processes, interval_s: float, duration_s: float
) -> SteadyResult:
    """Every policy evaluated every ``interval_s`` for ``duration_s``, phases spread over the interval."""
    size = len(namespace.policies)
    bodies = namespace.reset()
    result = SteadyResult(size, interval_s)
    rss_before = rss_bytes()
    evaluators = [PolicyEvaluator(runtime, namespace.name, b["metadata"]["name"]) for b in bodies]
    t0 = time.time() + 1.0
    end = t0 + duration_s

    async def daemon(index: int, evaluator: PolicyEvaluator, body: dict[str, Any]) -> list[Probe]:
        # The body stays the one listed at the start, as a daemon's would between two watch events;
        # the incident lives in the evaluator, as in the operator.
        probes = []
        due = t0 + index * interval_s / size
        while due < end:
            await asyncio.sleep(max(0.0, due - time.time()))
            probe = await timed_evaluate(evaluator, body)
            probe.due = due
            probes.append(probe)
            due += interval_s
        return probes

    cpu_before = processes.sample()
    started = time.perf_counter()
    per_policy = await asyncio.gather(
        *(daemon(i, e, b) for i, (e, b) in enumerate(zip(evaluators, bodies, strict=True)))
    )
    result.wall_s = time.perf_counter() - started
    cpu_after = processes.sample()
    result.cpu_s = (
        cpu_after[0] - cpu_before[0],
        cpu_after[1] - cpu_before[1],
        cpu_after[2] - cpu_before[2],
    )
    result.rss_growth = rss_bytes() - rss_before
    result.probes = [p for probes in per_policy for p in probes]
    errors = [p.error for p in result.probes if p.error is not None]
    print(
        f"  N={size} steady: {len(result.probes)} evaluations in {result.wall_s:.1f} s, "
        f"{sum(p.opened for p in result.probes)} opened a plan, {len(errors)} errors "
        f"{[repr(e)[:200] for e in errors[:2]]}",
        file=sys.stderr,
    )
    return result


def steady_table(results: list[SteadyResult]) -> str:
    """The steady-state figures, one row per size; ratios against the first size."""
    ref = results[0]

    def decision(r: SteadyResult) -> list[float]:
        return [p.end - p.sample_at for p in r.probes if p.sample_at is not None and p.error is None]

    ref95 = pct(decision(ref), 95)
    lines = [
        f"### Steady state: every policy every {ref.interval_s:g} s (ratios: x N={ref.size} of this run)",
        "",
        "| policies | evaluations | needed /s | done /s | start late p50 s | p95 s "
        "| sample->decision p50 s | p95 s | p99 s | p95 x ref | opened a plan | sample->plan p95 s "
        "| ajan CPU s / evaluation | Prometheus | kube-apiserver + etcd | queries / evaluation "
        "| API requests / evaluation | RSS growth per policy KiB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        done = [p for p in r.probes if p.error is None]
        n = max(len(r.probes), 1)
        late = [p.start - p.due for p in r.probes]
        dec = decision(r)
        plans = [
            p.plan_written - p.sample_at for p in r.probes if p.opened and p.plan_written and p.sample_at
        ]
        own, prom, kube = (c / n for c in r.cpu_s)
        lines.append(
            f"| {r.size} | {len(r.probes)} | {r.size / r.interval_s:.1f} | {len(done) / r.wall_s:.1f} "
            f"| {pct(late, 50):.2f} | {pct(late, 95):.2f} "
            f"| {pct(dec, 50):.2f} | {pct(dec, 95):.2f} | {pct(dec, 99):.2f} | {pct(dec, 95) / ref95:.2f} "
            f"| {len(plans)} | {pct(plans, 95):.2f} "
            f"| {own:.3f} | {prom:.3f} | {kube:.3f} "
            f"| {median([float(p.queries) for p in done]):.0f} "
            f"| {median([float(p.api_calls) for p in done]):.0f} "
            f"| {r.rss_growth / 1024 / r.size:.0f} |"
        )
    return "\n".join(lines) + "\n"


@dataclass
class SizeResult:
    size: int
    probes: list[Probe] = field(default_factory=list)
    round_s: list[float] = field(default_factory=list)
    cpu_s: list[tuple[float, float, float]] = field(default_factory=list)

    @property
    def opened(self) -> list[Probe]:
        return [p for p in self.probes if p.opened]

    def sample_to_plan(self) -> list[float]:
        return [p.plan_written - p.sample_at for p in self.opened if p.plan_written and p.sample_at]

    def sample_to_return(self) -> list[float]:
        return [p.end - p.sample_at for p in self.opened if p.sample_at]

    def evaluation(self) -> list[float]:
        return [p.end - p.start for p in self.opened]


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def tables(results: list[SizeResult]) -> str:
    ref = results[0]
    ref_plan = (pct(ref.sample_to_plan(), 50), pct(ref.sample_to_plan(), 95))
    ref_eval = (pct(ref.evaluation(), 50), pct(ref.evaluation(), 95))
    lines = [
        f"### Sample to plan written, and the whole evaluation (ratios: x N={ref.size} of this run)",
        "",
        "| policies at once | evaluations | opened a plan "
        "| sample->plan p50 s | p95 s | p50 x ref | p95 x ref "
        "| evaluation p50 s | p95 s | p50 x ref | p95 x ref |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        plan = (pct(r.sample_to_plan(), 50), pct(r.sample_to_plan(), 95))
        ev = (pct(r.evaluation(), 50), pct(r.evaluation(), 95))
        lines.append(
            f"| {r.size} | {len(r.probes)} | {len(r.opened)} | {plan[0]:.2f} | {plan[1]:.2f} "
            f"| {plan[0] / ref_plan[0]:.2f} | {plan[1] / ref_plan[1]:.2f} "
            f"| {ev[0]:.2f} | {ev[1]:.2f} | {ev[0] / ref_eval[0]:.2f} | {ev[1] / ref_eval[1]:.2f} |"
        )
    lines += [
        "",
        "### Where an evaluation's time goes (medians per evaluation, seconds)",
        "",
        "| policies at once | sample -> evaluation start | Prometheus queries | wait for an assessment slot "
        "| assessment | assessment -> plan written | API calls | of which waiting for a thread "
        "| round, all N | evaluations/s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    cpu_lines = [
        "",
        "### CPU seconds per evaluation (a round's CPU time / N, median over rounds)",
        "",
        "| policies at once | ajan (this process) | Prometheus | kube-apiserver + etcd | cores busy |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        done = [p for p in r.opened if p.sample_at is not None and p.plan_written is not None]
        lag = median([p.start - p.sample_at for p in done if p.sample_at is not None])
        fetch = median([p.fetch_end - p.start for p in done])
        slot = median([p.assess_start - p.assess_queued for p in done])
        assess = median([p.assess_end - p.assess_start for p in done])
        write = median([p.plan_written - p.assess_end for p in done if p.plan_written is not None])
        calls = median([float(p.api_calls) for p in done])
        api = median([p.api_s for p in done])
        pool = median([p.api_pool_wait_s for p in done])
        rounds = median(r.round_s)
        lines.append(
            f"| {r.size} | {lag:.2f} | {fetch:.2f} | {slot:.2f} | {assess:.2f} | {write:.2f} "
            f"| {api:.2f} ({calls:.0f} calls) | {pool:.2f} | {rounds:.2f} | {r.size / rounds:.1f} |"
        )
        own, prom, kube = (median([c[i] / r.size for c in r.cpu_s]) for i in range(3))
        busy = median(
            [sum(c) / (wall * (os.cpu_count() or 1)) for c, wall in zip(r.cpu_s, r.round_s, strict=True)]
        )
        cpu_lines.append(f"| {r.size} | {own:.3f} | {prom:.3f} | {kube:.3f} | {busy:.0%} |")
    return "\n".join(lines + cpu_lines) + "\n"


async def run(
    kubeconfig: Path, kube_group: int, workdir: Path, args: argparse.Namespace
) -> list[SizeResult] | list[SteadyResult]:
    api = config.new_client_from_config(config_file=str(kubeconfig), persist_config=False)
    operator_config = OperatorConfig(concurrency=args.concurrency)
    slots = operator_config.concurrency
    # As handlers/startup.py builds them for `ajan run`.
    http = httpx.AsyncClient(
        limits=httpx.Limits(max_connections=4 * slots, max_keepalive_connections=2 * slots),
        timeout=operator_config.query_timeout_s,
    )
    kube_api = config.new_client_from_config(config_file=str(kubeconfig), persist_config=False)
    runtime = TimedRuntime(operator_config, http, TimedKubeStore(kube_api, max_workers=slots))
    results: list[Any] = []
    try:
        for size in args.sizes:
            # A fresh generator and Prometheus, and a fresh fault, for each size: the detector adapts
            # to a lasting fault within a minute or two, after which the policies stop opening plans.
            # The blocking calls here are outside any measurement.
            with metrics_stack(workdir / f"size-{size}") as stack:
                stack.wait_for_scrapes(3)
                if not args.healthy:
                    stack.post_fault(**FAULT)
                url = stack.url
                processes = Processes(stack.prometheus.proc.pid if stack.prometheus.proc else 0, kube_group)
                warmup, namespace = Namespace(api, 1, url), Namespace(api, size, url)
                attempts = await warm_up(runtime, warmup, until_plan=not args.healthy)
                print(
                    f"N={size}: {'healthy canary' if args.healthy else f'fault {FAULT} opened a plan'} "
                    f"after {attempts} warm-up evaluation(s)",
                    file=sys.stderr,
                )
                if args.interval:
                    results.append(await steady(runtime, namespace, processes, args.interval, args.duration))
                else:
                    results.append(await measure(runtime, namespace, processes, args.rounds))
    finally:
        await http.aclose()
        runtime.kube.close()
        api.close()
    return results


def command_line(args: argparse.Namespace) -> str:
    python = Path(sys.executable)
    shown = os.path.relpath(python, ROOT) if python.is_relative_to(ROOT) else str(python)
    script = os.path.relpath(Path(__file__).resolve(), ROOT)
    flags = [
        *(("--interval", f"{args.interval:g}", "--duration", f"{args.duration:g}") if args.interval else ()),
        *(() if args.interval else ("--rounds", str(args.rounds))),
        *(("--healthy",) if args.healthy else ()),
        *("--sizes", ",".join(map(str, args.sizes))),
        *("--concurrency", str(args.concurrency)),
    ]
    return " ".join(shlex.quote(part) for part in [shown, script, *flags])


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds per size (default 5)")
    parser.add_argument(
        "--sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1, 10, 100],
        help="policies evaluated at once, comma-separated; the first is the reference (default 1,10,100)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=OperatorConfig.concurrency,
        help="the operator's --concurrency: query slots, assessment slots, API threads (default 8)",
    )
    parser.add_argument(
        "--interval", type=float, default=0.0, help="steady state: each policy every this many seconds"
    )
    parser.add_argument(
        "--duration", type=float, default=120.0, help="steady state: how long to run each size (default 120)"
    )
    parser.add_argument(
        "--healthy",
        action="store_true",
        help="steady state without the fault: every policy's canary healthy, as most are at any time",
    )
    args = parser.parse_args()
    if args.healthy and not args.interval:
        parser.error("--healthy needs --interval: a round measures the evaluations that open a plan")

    def terminate(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")  # unwinds through every `finally` below

    signal.signal(signal.SIGTERM, terminate)
    load = os.getloadavg()
    env = (
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"numpy {np.__version__}; load average at start {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}"
    )
    print(f"starting the control plane and Prometheus ({env})", file=sys.stderr)
    with (
        tempfile.TemporaryDirectory(prefix="ajan-bench-prometheus-") as workdir,
        control_plane() as (kubeconfig, kube_group),
    ):
        results = asyncio.run(run(kubeconfig, kube_group, Path(workdir), args))
    print(f"Command: `{command_line(args)}`\n")
    print(f"Environment: {env}\n")
    print(steady_table(results) if args.interval else tables(results))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
