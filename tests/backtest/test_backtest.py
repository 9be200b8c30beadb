"""``ajan backtest``: the replay on synthetic history, the command's error contract, and one live run.

The replay tests feed `SeriesSource`, a second implementation of the `MetricSource` protocol over numpy
series (not a mock of a Prometheus server: it answers range queries from arrays, with the protocol's
grid, its ``InsufficientData`` rule and Prometheus's point limit), so faults can be planted at known
times. The command-line tests run ``python -m ajan backtest`` as a subprocess; the last test runs it
against the session's real Prometheus scraping the metrics generator.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import httpx
import numpy as np
import numpy.typing as npt
import pytest
import yaml

from ajan import backtest as backtest_module
from ajan.analysis.calibration import OPENING_MAP, platt
from ajan.backtest import (
    PARALLEL_MIN_EVALUATIONS,
    BacktestError,
    BacktestResult,
    Grid,
    backtest,
    chunks,
    fetch_history,
    history_grid,
    load_history,
    load_policy,
    parse_range,
    parse_time,
    render_json,
    render_table,
    replay,
    spread_at,
    window_at,
)
from ajan.clients.prometheus import (
    MAX_POINTS,
    InsufficientData,
    MetricSource,
    PrometheusUnavailable,
    QueryFailed,
    RangeResult,
)
from ajan.models import CorrelationPolicy, CorrelationPolicySpec, Incident
from ajan.services.assessment import MetricWindow, nominal_rows
from ajan.services.severity import load_classifier
from ajan.services.step import evaluate
from ajan.services.window import fetch_spread, fetch_window, spread_bounds, window_bounds
from support.prometheus import StartWithHistory, free_port, wait_for

ROOT: Final = Path(__file__).resolve().parents[2]
FloatArray = npt.NDArray[np.float64]

T0: Final = 1_800_000_000.0  # a multiple of every step used here: grid and data start together
STEP: Final = 15.0
INTERVAL: Final = 60.0
HOURS: Final = 4
ROWS: Final = int(HOURS * 3600 / STEP)
FAULT: Final = T0 + 2.5 * 3600  # faults start here, well after the first full window
REPLAY_FROM: Final = T0 + 1800.0  # the first evaluation with a full 30 min window
REPLAY_TO: Final = T0 + (ROWS - 1) * STEP


# --- a second MetricSource ------------------------------------------------------------------------


class SeriesSource:
    """`MetricSource` over in-memory series: ``query`` names a series sampled every ``step`` from ``start``.

    The protocol's second implementation (beside `PrometheusSource`), so the replay is tested on
    histories with faults at known times. Like Prometheus it refuses more than ``max_points`` points
    per request, and raises `InsufficientData` when fewer than ``min_points`` finite points remain.
    """

    def __init__(
        self,
        series: dict[str, FloatArray],
        start: float = T0,
        step: float = STEP,
        max_points: int = MAX_POINTS,
    ) -> None:
        self.series = series
        self.start = start
        self.step = step
        self.max_points = max_points
        self.calls: list[tuple[str, float, float, float]] = []

    async def query_range(
        self, query: str, start: float, end: float, step: float, *, min_points: int = 1
    ) -> RangeResult:
        self.calls.append((query, start, end, step))
        n = math.floor((end - start) / step + 1e-9) + 1
        if n > self.max_points:
            raise ValueError(f"{n} points exceed the limit of {self.max_points}")
        grid = start + np.arange(n) * step
        source = self.series[query]
        index = np.round((grid - self.start) / self.step).astype(int)
        inside = (index >= 0) & (index < source.size)
        values = np.full(n, np.nan)
        values[inside] = source[index[inside]]
        if np.count_nonzero(np.isfinite(values)) < min_points:
            raise InsufficientData(f"query returned no finite point: {query}", query=query)
        return RangeResult(grid, values)

    async def is_online(self) -> bool:
        return True


class FailingSource(SeriesSource):
    """Answers one query with an error, the others from the series."""

    def __init__(self, series: dict[str, FloatArray], failing: str, error: Exception) -> None:
        super().__init__(series)
        self.failing = failing
        self.error = error

    async def query_range(
        self, query: str, start: float, end: float, step: float, *, min_points: int = 1
    ) -> RangeResult:
        if query == self.failing:
            raise self.error
        return await super().query_range(query, start, end, step, min_points=min_points)


def _policy_doc(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "aiops.ajan.dev/v1alpha1",
        "kind": "CorrelationPolicy",
        "metadata": {"name": "checkout", "namespace": "shop"},
        "spec": {
            "targetRef": {"kind": "Rollout", "name": "checkout"},
            "interval": "1m",
            "window": "30m",
            "step": "15s",
            "metrics": [
                {"name": "latency", "query": "latency", "role": "slo", "objective": "max"},
                {"name": "errors", "query": "errors", "role": "slo", "objective": "max"},
                {"name": "cpu", "query": "cpu", "role": "signal", "objective": "max"},
            ],
            **spec,
        },
    }


POLICY: Final = CorrelationPolicy.model_validate(_policy_doc())


def _healthy(seed: int = 0) -> dict[str, FloatArray]:
    rng = np.random.default_rng(seed)
    return {
        "latency": 0.2 + 0.01 * rng.standard_normal(ROWS),
        "errors": 0.01 + 0.001 * rng.standard_normal(ROWS),
        "cpu": 1.0 + 0.05 * rng.standard_normal(ROWS),
    }


def _rows(t0: float, t1: float) -> slice:
    return slice(round((t0 - T0) / STEP), round((t1 - T0) / STEP))


def _backtest(series: dict[str, FloatArray], policy: CorrelationPolicy = POLICY) -> BacktestResult:
    grid = history_grid(policy.spec, REPLAY_FROM, REPLAY_TO)
    history = asyncio.run(fetch_history(SeriesSource(series), policy.spec, grid))
    return replay(policy, history, REPLAY_FROM, REPLAY_TO)


def _at(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, tz=UTC)


# --- the replay -----------------------------------------------------------------------------------


def test_series_source_is_a_metric_source() -> None:
    assert isinstance(SeriesSource({}), MetricSource)


def test_healthy_history_proposes_no_plan() -> None:
    result = _backtest(_healthy())
    s = result.summary
    assert result.plans == () and result.resolutions == ()
    assert s.evaluations == math.floor((REPLAY_TO - REPLAY_FROM) / INTERVAL) + 1
    assert s.assessed == s.evaluations and s.insufficient_data == {}
    assert s.incidents == 0 and s.time_in_incidents_s == 0 and not s.open_at_end
    assert s.max_confidence is not None and s.max_confidence < 0.5  # below the lowest rung


@pytest.mark.parametrize(
    ("fault", "within"),
    [
        # A step: latency 2.5 times higher for 30 minutes.
        (lambda x: x * 2.5, 3),
        # A creep: latency climbing 16 ms a minute for 30 minutes.
        (lambda x: x + 0.004 * np.arange(x.size), 8),
    ],
    ids=["step", "creep"],
)
def test_fault_opens_exactly_one_plan_soon_after_it_starts(
    fault: Callable[[FloatArray], FloatArray], within: int
) -> None:
    series = _healthy(1)
    rows = _rows(FAULT, FAULT + 1800)
    series["latency"][rows] = fault(series["latency"][rows])
    result = _backtest(series)
    opened = [p for p in result.plans if p.outcome == "open"]
    assert len(opened) == 1, result.plans
    plan = opened[0]
    assert _at(FAULT) < plan.time <= _at(FAULT + within * INTERVAL)
    assert plan.plan.startswith("checkout-") and plan.plan.endswith(f"-{plan.action}")
    assert plan.confidence >= 0.5
    assert plan.top_metrics and plan.top_metrics[0].metric == "latency" and plan.top_metrics[0].z > 0
    assert result.summary.incidents == 1
    assert result.summary.plans_by_action == {p.action: 1 for p in result.plans}


def test_each_plan_is_the_operators_own_step_with_its_severity_estimate() -> None:
    # The operator calls ajan.services.step.evaluate on the window it fetches; so must the replay,
    # severity model included (it once left the estimate out).
    series = _healthy(1)
    rows = _rows(FAULT, FAULT + 1800)
    series["latency"][rows] *= 2.5
    result = _backtest(series)
    assert result.plans
    classifier, _ = load_classifier()
    for plan in result.plans[:2]:
        t = plan.time.timestamp()
        incident = None
        if plan.outcome == "escalate":
            opened = next(p for p in result.plans if p.incident == plan.incident and p.outcome == "open")
            incident = Incident(
                id=plan.incident, opened_at=opened.time, action=opened.action, plan=opened.plan,
                peak_confidence=opened.confidence,
            )  # fmt: skip
        bounds = window_bounds(POLICY.spec, t, incident.opened_at.timestamp() if incident else None)
        window = asyncio.run(
            fetch_window(SeriesSource(series), POLICY.spec, bounds.start, bounds.end, bounds.step)
        )
        step = evaluate("checkout", POLICY.spec, window, bounds.current_from, incident, plan.time, classifier)
        assert step.decision.incident is not None and step.decision.incident.plan == plan.plan
        assert step.assessment.confidence == pytest.approx(plan.confidence)
        assert step.assessment.evidence.severity is not None
        assert plan.severity_estimate == step.assessment.evidence.severity.model_dump()
        # The advisory probability is the calibration map of the confidence the decision climbed on.
        assert plan.probability_real == step.assessment.evidence.probability_real
        assert plan.probability_real == pytest.approx(float(platt(plan.confidence, OPENING_MAP)))
    first = json.loads(render_json(result))["plans"][0]
    assert first["severity_estimate"]["source"] in {"model", "rules"}
    assert 0.0 < first["probability_real"] < first["confidence"]


def test_escalating_fault_opens_then_escalates() -> None:
    series = _healthy(2)
    mild, severe = _rows(FAULT, FAULT + 240), _rows(FAULT + 240, FAULT + 900)
    series["latency"][mild] += 0.05  # about 5 sigma: the lower rungs
    series["latency"][severe] *= 3.0
    result = _backtest(series)
    assert [p.outcome for p in result.plans[:2]] == ["open", "escalate"], result.plans
    first, second = result.plans[:2]
    assert first.incident == second.incident and second.supersedes == first.plan
    ranks = {"annotate": 1, "pause": 2, "abort": 3, "rollback": 3}
    assert ranks[second.action] > ranks[first.action]
    assert second.confidence > first.confidence
    assert result.summary.incidents == 1


def test_recovery_resolves_the_incident() -> None:
    series = _healthy(3)
    series["latency"][_rows(FAULT, FAULT + 300)] *= 2.5
    result = _backtest(series)
    assert len(result.plans) >= 1 and len(result.resolutions) == 1
    resolved = result.resolutions[0]
    assert resolved.plan == result.plans[-1].plan and resolved.incident == result.plans[0].incident
    # recoveryEvaluations (3) healthy evaluations after the fault ended, at the latest shortly after.
    assert _at(FAULT) < resolved.time <= _at(FAULT + 300 + 6 * INTERVAL)
    s = result.summary
    assert not s.open_at_end
    assert s.time_in_incidents_s == pytest.approx((resolved.time - resolved.opened_at).total_seconds())


def test_a_long_incident_is_not_learnt_as_normal() -> None:
    """A fault lasting far longer than the scored quarter of the window: the baseline stays where it was
    when the incident opened, so the incident stays open while the fault lasts, then resolves."""
    series = _healthy(5)
    series["latency"][_rows(FAULT, FAULT + 1800)] *= 2.5  # 30 min: the whole window's length
    result = _backtest(series)
    assert len(result.resolutions) == 1, result.resolutions
    resolved = result.resolutions[0]
    assert _at(FAULT + 1800) <= resolved.time <= _at(FAULT + 1800 + 6 * INTERVAL)
    assert {p.incident for p in result.plans} == {resolved.incident}


def test_incident_open_at_the_end_counts_until_the_end() -> None:
    series = _healthy(3)
    fault = REPLAY_TO - 600
    series["latency"][_rows(fault, REPLAY_TO + STEP)] *= 2.5
    result = _backtest(series)
    assert result.summary.open_at_end and result.resolutions == ()
    assert result.summary.time_in_incidents_s == pytest.approx(REPLAY_TO - result.plans[0].time.timestamp())


def test_gap_counts_insufficient_data_and_takes_no_action() -> None:
    series = _healthy(4)
    gap = (FAULT, FAULT + 3600)
    series["cpu"][_rows(*gap)] = np.nan
    # A fault only while cpu is missing: the operator would act on none of those evaluations.
    series["latency"][_rows(gap[0] + 600, gap[1] - 600)] *= 3.0
    result = _backtest(series)
    s = result.summary
    assert result.plans == ()
    missing = s.insufficient_data.get("InsufficientData", 0)
    # At least every evaluation inside the gap, and those after it whose window is still too sparse.
    assert missing >= (gap[1] - gap[0]) / INTERVAL - 5
    assert s.assessed + missing == s.evaluations
    assert len(result.gaps) == 1
    g = result.gaps[0]
    assert g.evaluations == missing and "cpu" in g.message
    assert _at(gap[0]) <= g.start <= _at(gap[0] + 5 * INTERVAL)
    assert g.end >= _at(gap[1] - INTERVAL)


def test_workers_assess_quiet_windows_ahead_and_change_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forked workers assess the windows of quiet evaluations; the replay itself assesses only those
    of open incidents, and the result (plans, resolutions, gaps, every figure) is the same."""
    series = _healthy(6)
    series["latency"][_rows(FAULT, FAULT + 900)] *= 2.5
    gap = (FAULT + 3600, FAULT + 4500)
    series["cpu"][_rows(*gap)] = np.nan  # evaluations lost to data, made in the workers too
    policy = CorrelationPolicy.model_validate(_policy_doc(interval="15s"))
    grid = history_grid(policy.spec, REPLAY_FROM, REPLAY_TO)
    history = asyncio.run(fetch_history(SeriesSource(series), policy.spec, grid))
    assessed_here: list[bool] = []

    def counting(*args: Any, **kwargs: Any) -> Any:
        assessed_here.append(args[4] is not None)  # the incident open at that evaluation
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(backtest_module, "evaluate", counting)
    alone = replay(policy, history, REPLAY_FROM, REPLAY_TO, workers=1)
    in_one = len(assessed_here)
    assessed_here.clear()
    shared = replay(policy, history, REPLAY_FROM, REPLAY_TO, workers=2)

    s = alone.summary
    assert s.evaluations >= PARALLEL_MIN_EVALUATIONS and s.incidents == 1 and alone.gaps, s
    assert shared == alone
    assert in_one == s.evaluations
    # Only the open incident's windows were assessed in this process, every one of them.
    assert assessed_here and all(assessed_here)
    assert len(assessed_here) == round(s.time_in_incidents_s / 15.0)


def test_a_metric_without_any_data_is_named() -> None:
    series = _healthy(5)
    series["errors"][:] = np.nan
    result = _backtest(series)
    assert result.metrics_without_data == ("errors",)
    assert result.summary.assessed == 0 and result.plans == ()
    assert "no data at all for metric(s) errors" in render_table(result)


def test_each_window_is_the_one_the_operator_would_fetch() -> None:
    """The replay cuts the same rows out of the history as `fetch_window` queries, at any time."""
    series = _healthy(6)
    series["cpu"][100:130] = np.nan
    spec = CorrelationPolicy.model_validate(_policy_doc(window="20m", step="15s")).spec
    source = SeriesSource(series)
    start, end = REPLAY_FROM + 7.3, REPLAY_FROM + 3 * 3600 + 11.9  # not on the grid
    history = asyncio.run(fetch_history(source, spec, history_grid(spec, start, end)))
    for at in np.linspace(start, end, 17):
        bounds = window_bounds(spec, float(at))
        expected = asyncio.run(fetch_window(source, spec, bounds.start, bounds.end, bounds.step))
        got = window_at(spec, history, float(at))
        np.testing.assert_array_equal(got.timestamps, expected.timestamps)
        np.testing.assert_array_equal(got.values, expected.values)


def test_long_ranges_are_fetched_in_chunks_and_joined() -> None:
    series = _healthy(7)
    series["cpu"][300:450] = np.nan  # a whole chunk without data is a gap, not an error
    grid = history_grid(POLICY.spec, REPLAY_FROM, REPLAY_TO)
    whole = asyncio.run(fetch_history(SeriesSource(series), POLICY.spec, grid))
    limited = SeriesSource(series, max_points=100)
    joined = asyncio.run(fetch_history(limited, POLICY.spec, grid, max_points=100))
    np.testing.assert_array_equal(joined.values, whole.values)
    np.testing.assert_array_equal(joined.timestamps, whole.timestamps)
    per_metric = [c for c in limited.calls if c[0] == "cpu"]
    assert len(per_metric) == math.ceil(grid.count / 100)
    assert all(math.floor((end - start) / step + 1e-9) + 1 <= 100 for _, start, end, step in limited.calls)


def test_chunks_cover_the_grid_once() -> None:
    grid = Grid(start=100.0, step=2.0, count=25)
    parts = chunks(grid, max_points=10)
    assert [(o, s, e) for o, s, e in parts] == [(0, 100.0, 118.0), (10, 120.0, 138.0), (20, 140.0, 148.0)]


@pytest.mark.parametrize(
    "error",
    [
        PrometheusUnavailable("Prometheus at http://x is unreachable"),
        QueryFailed("Prometheus rejected the query (400 bad_data): parse error"),
    ],
)
def test_a_query_failing_for_the_whole_range_is_an_error(error: Exception) -> None:
    grid = history_grid(POLICY.spec, REPLAY_FROM, REPLAY_TO)
    source = FailingSource(_healthy(), "errors", error)
    with pytest.raises(type(error), match=r"^metric errors: "):
        asyncio.run(fetch_history(source, POLICY.spec, grid))


def test_json_and_table_say_the_same() -> None:
    series = _healthy(3)
    series["latency"][_rows(FAULT, FAULT + 300)] *= 2.5
    result = _backtest(series)
    data = json.loads(render_json(result))
    assert set(data) == {
        "policy",
        "namespace",
        "start",
        "end",
        "interval_s",
        "window_s",
        "step_s",
        "plans",
        "resolutions",
        "gaps",
        "summary",
        "metrics_without_data",
    }
    assert set(data["summary"]) == {
        "evaluations",
        "assessed",
        "insufficient_data",
        "incidents",
        "open_at_end",
        "plans",
        "plans_by_action",
        "time_in_incidents_s",
        "max_confidence",
        "max_confidence_at",
    }
    plan = data["plans"][0]
    assert plan["time"] == result.plans[0].time.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert plan["top_metrics"][0]["metric"] == "latency"
    table = render_table(result)
    assert result.plans[0].plan in table and "SUMMARY" in table and "resolve" in table
    assert data["summary"]["evaluations"] == result.summary.evaluations


# --- input ----------------------------------------------------------------------------------------


def _write(tmp_path: Path, name: str, *docs: Any) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump_all(docs), encoding="utf-8")
    return path


def test_load_policy_takes_the_one_policy_of_a_multi_document_file(tmp_path: Path) -> None:
    other = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}
    policy = load_policy(_write(tmp_path, "p.yaml", other, _policy_doc(), None))
    assert policy.metadata["name"] == "checkout"
    assert load_policy(ROOT / "examples" / "correlationpolicy-latency-canary.yaml").spec.window == "1h"


def test_load_policy_errors_name_the_problem(tmp_path: Path) -> None:
    bad = _policy_doc()
    bad["spec"]["metrics"][1]["query"] = ""
    with pytest.raises(BacktestError, match=r"spec\.metrics\[1\]\.query: String should have at least 1"):
        load_policy(_write(tmp_path, "bad.yaml", bad))
    with pytest.raises(BacktestError, match="no object of kind CorrelationPolicy"):
        load_policy(_write(tmp_path, "none.yaml", {"kind": "ConfigMap"}))
    with pytest.raises(BacktestError, match="2 CorrelationPolicy objects"):
        load_policy(_write(tmp_path, "two.yaml", _policy_doc(), _policy_doc()))
    (tmp_path / "broken.yaml").write_text("spec: [unclosed\n", encoding="utf-8")
    with pytest.raises(BacktestError, match=r"not valid YAML: .*line 2"):
        load_policy(tmp_path / "broken.yaml")


def test_parse_time_forms() -> None:
    now = 1_800_000_000.0
    assert parse_time("now", now) == now
    assert parse_time("-2h", now) == now - 7200
    assert parse_time("-30m", now) == now - 1800
    assert parse_time("-1d12h", now) == now - 1.5 * 86400
    assert parse_time("1700000000", now) == 1_700_000_000
    assert parse_time("2026-11-23T10:00:00Z", now) == datetime(2026, 11, 23, 10, tzinfo=UTC).timestamp()
    assert parse_time("2026-11-23T11:00:00+01:00", now) == datetime(2026, 11, 23, 10, tzinfo=UTC).timestamp()
    for bad in ("yesterday", "-2x", "2026-11-23T10:00:00", "", "-", "inf"):
        with pytest.raises(BacktestError):
            parse_time(bad, now)
    with pytest.raises(BacktestError, match="comes after"):
        parse_range("-1h", "-2h", now)
    with pytest.raises(BacktestError, match="in the future"):
        parse_range("-1h", str(now + 3600), now)


# --- the command ----------------------------------------------------------------------------------


def _run(
    args: list[str], env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ajan", "backtest", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT / "operator"), **(env or {})},
    )


def test_bad_input_exits_2_with_one_line(tmp_path: Path) -> None:
    good = _write(tmp_path, "good.yaml", _policy_doc())
    bad = _policy_doc()
    bad["spec"]["step"] = "2h"
    invalid = _write(tmp_path, "invalid.yaml", bad)
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    cases = {
        "invalid policy": (
            ["--policy", str(invalid), "--from", "-1h", "--prometheus", closed],
            "step must be",
        ),
        "missing policy": (["--policy", str(tmp_path / "nope.yaml"), "--from", "-1h"], "nope.yaml"),
        "bad time": (["--policy", str(good), "--from", "teatime", "--prometheus", closed], "not a time"),
        "from after to": (
            ["--policy", str(good), "--from", "-1h", "--to", "-2h", "--prometheus", closed],
            "comes after",
        ),
        "unreachable": (["--policy", str(good), "--from", "-10m", "--prometheus", closed], "unreachable"),
        "no prometheus": (["--policy", str(good), "--from", "-10m"], "no Prometheus to query"),
        "no workers": (["--policy", str(good), "--from", "-10m", "--workers", "0"], "must be at least 1"),
    }
    env = {"AJAN_PROMETHEUS_URL": ""}
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = dict(zip(cases, pool.map(lambda c: _run(c[0], env), cases.values()), strict=True))
    for name, (_, expected) in cases.items():
        res = runs[name]
        assert res.returncode == 2, (name, res.stderr)
        assert res.stdout == "", name
        assert res.stderr.count("\n") == 1 and res.stderr.startswith("ajan backtest: error: "), (
            name,
            res.stderr,
        )
        assert expected in res.stderr, (name, res.stderr)
        assert "Traceback" not in res.stderr


# --- against a real Prometheus --------------------------------------------------------------------

LIVE_WINDOW_S: Final = 30
RATE_S: Final = 10


def _live_policy() -> dict[str, Any]:
    canary = 'service="checkout",track="canary"'
    return {
        "apiVersion": "aiops.ajan.dev/v1alpha1",
        "kind": "CorrelationPolicy",
        "metadata": {"name": "live"},
        "spec": {
            "targetRef": {"kind": "Rollout", "name": "checkout"},
            "interval": "5s",
            "window": f"{LIVE_WINDOW_S}s",
            "step": "1s",
            "metrics": [
                {
                    "name": "latency-p99",
                    "query": "histogram_quantile(0.99, sum(rate("
                    f"http_request_duration_seconds_bucket{{{canary}}}[{RATE_S}s])) by (le))",
                    "role": "slo",
                },
                {
                    "name": "errors",
                    "query": f'sum(rate(http_requests_total{{{canary},code="500"}}[{RATE_S}s]))',
                    "role": "slo",
                },
                {"name": "requests", "query": f"sum(rate(http_requests_total{{{canary}}}[{RATE_S}s]))"},
            ],
        },
    }


def test_backtest_against_real_prometheus(prometheus_with_history: StartWithHistory, tmp_path: Path) -> None:
    """Over real Prometheus data: a healthy stretch proposes nothing; a real fault is found."""
    # A real day's length: a 10-minute "day" would ramp the load faster than any canary changes.
    stack = prometheus_with_history(300, seed=31, day_seconds=86400)
    policy = _write(tmp_path, "live.yaml", _live_policy())
    args = ["--policy", str(policy), "--prometheus", stack.url, "--output", "json"]
    healthy = _run([*args, "--from", f"{stack.history_end - 200:.0f}", "--to", f"{stack.history_end:.0f}"])
    assert healthy.returncode == 0, healthy.stderr
    data = json.loads(healthy.stdout)
    assert data["summary"]["assessed"] == data["summary"]["evaluations"] > 30, data["gaps"]
    assert data["plans"] == [] and data["summary"]["incidents"] == 0, data["plans"]
    table = _run([*args[:4], "--from", f"{stack.history_end - 60:.0f}", "--to", f"{stack.history_end:.0f}"])
    assert table.returncode == 0 and table.stderr == "", table.stderr
    assert "SUMMARY" in table.stdout and "none: the policy would not have proposed any plan" in table.stdout

    fault = stack.post_fault(kind="error_burst", rate=0.5, duration_s=600)
    stack.wait_for_scrapes(LIVE_WINDOW_S)
    started = float(str(fault["started_at"]))

    def scraped_since_fault() -> bool:
        query = f'count_over_time(up{{job="checkout"}}[{LIVE_WINDOW_S}s])'
        result = httpx.get(f"{stack.url}/api/v1/query", params={"query": query}, timeout=5).json()
        return time.time() - started > LIVE_WINDOW_S and bool(result["data"]["result"])

    wait_for(scraped_since_fault, timeout=120, what="the fault in Prometheus", interval=1.0)
    faulty = _run([*args, "--from", f"{started - 20:.0f}"])
    assert faulty.returncode == 0, faulty.stderr
    data = json.loads(faulty.stdout)
    assert data["summary"]["incidents"] == 1, data
    first = data["plans"][0]
    assert first["top_metrics"][0]["metric"] == "errors", first
    assert datetime.fromisoformat(first["time"]).timestamp() > started


# --- the long-run spread: the operator's week, sampled as the operator samples it ------------------

LONG_ROWS: Final = int(36 * 3600 / STEP)
QUIET_FROM: Final = T0 + 34 * 3600  # latency sits at 0.2 from here
MOVE: Final = T0 + 35 * 3600  # ... steps to a level it often held before
FAULT_LATE: Final = T0 + 35.5 * 3600  # ... then breaks for real


def _wandering_history() -> dict[str, FloatArray]:
    """36 hours in which latency moved between 0.2, 0.26 and 0.32 every two hours, then sat at 0.2
    for an hour, stepped to 0.26, and half an hour later rose to 0.65."""
    rng = np.random.default_rng(17)
    ts = T0 + np.arange(LONG_ROWS) * STEP
    levels = np.array([0.2, 0.26, 0.32])[np.arange(LONG_ROWS) // int(7200 / STEP) % 3]
    levels[ts >= QUIET_FROM] = 0.2
    levels[ts >= MOVE] = 0.26
    levels[ts >= FAULT_LATE] = 0.65
    return {
        "latency": levels * (1 + 0.03 * rng.standard_normal(LONG_ROWS)),
        "errors": 0.01 + 0.001 * rng.standard_normal(LONG_ROWS),
        "cpu": 1.0 + 0.05 * rng.standard_normal(LONG_ROWS),
    }


def test_the_replay_samples_the_spread_the_operator_fetches() -> None:
    series = _wandering_history()
    history = asyncio.run(fetch_history(SeriesSource(series), POLICY.spec, Grid(T0, STEP, LONG_ROWS)))
    grid = spread_bounds(POLICY.spec, MOVE + 600)
    fetched, answered = asyncio.run(fetch_spread(SeriesSource(series), POLICY.spec, grid))
    assert answered and np.isfinite(fetched).all()
    np.testing.assert_array_equal(spread_at(history, grid), fetched)
    assert grid.current_from <= MOVE + 600 and grid.end < grid.current_from and grid.start % grid.step == 0


def test_an_unanswered_spread_query_bounds_nothing_and_is_asked_again() -> None:
    series = _wandering_history()
    grid = spread_bounds(POLICY.spec, MOVE)
    down = FailingSource(series, "latency", PrometheusUnavailable("connection refused", query="latency"))
    spread, answered = asyncio.run(fetch_spread(down, POLICY.spec, grid))
    assert not answered and np.isnan(spread[0]) and np.isfinite(spread[1:]).all()
    # Too short a history is an answer (cached for the hour): that metric has no known spread.
    short = {name: values[-200:] for name, values in series.items()}
    spread, answered = asyncio.run(
        fetch_spread(SeriesSource(short, start=T0 + (LONG_ROWS - 200) * STEP), POLICY.spec, grid)
    )
    assert answered and np.isnan(spread).all()


def test_a_move_the_metric_often_made_opens_nothing_and_a_real_fault_still_does() -> None:
    series = _wandering_history()
    start, end = MOVE - 1800, T0 + (LONG_ROWS - 1) * STEP
    history = asyncio.run(fetch_history(SeriesSource(series), POLICY.spec, Grid(T0, STEP, LONG_ROWS)))
    with_week = replay(POLICY, history, start, end)
    assert [p.outcome for p in with_week.plans][:1] == ["open"], with_week.plans
    assert with_week.plans[0].time.timestamp() >= FAULT_LATE
    # The same evaluations seeing only the last hours (no spread known): the step alone opens one.
    recent = asyncio.run(
        fetch_history(SeriesSource(series), POLICY.spec, history_grid(POLICY.spec, start, end))
    )
    alone = replay(POLICY, recent, start, end)
    assert alone.plans and MOVE <= alone.plans[0].time.timestamp() < FAULT_LATE, alone.plans
    # `ajan backtest` over a MetricSource fetches the week on the coarse grid: the same replay.
    fetched = asyncio.run(backtest(SeriesSource(series), POLICY, start, end))
    assert [(p.time, p.plan, p.confidence) for p in fetched.plans] == [
        (p.time, p.plan, p.confidence) for p in with_week.plans
    ]


# --- ajan backtest --history: exported metrics as a CSV -------------------------------------------


def _history_csv(path: Path, series: dict[str, FloatArray], *, iso: bool = False) -> Path:
    """The series as a user's export: a timestamp column, one column per metric, one extra column."""
    stamps = [_at(T0 + i * STEP).isoformat() if iso else f"{T0 + i * STEP:.0f}" for i in range(ROWS)]
    lines = ["timestamp,latency,errors,cpu,hostname"]
    lines += [
        f"{stamps[i]},{float(series['latency'][i])!r},{float(series['errors'][i])!r},{float(series['cpu'][i])!r},web-1"
        for i in range(ROWS)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_backtest_history_csv_is_the_same_replay(tmp_path: Path) -> None:
    """A CSV export replays exactly as the same series served by a MetricSource."""
    series = _healthy(5)
    series["latency"][_rows(FAULT, FAULT + 1800)] *= 5.0
    policy = _write(tmp_path, "policy.yaml", _policy_doc())
    args = ["--policy", str(policy), "--from", f"{REPLAY_FROM:.0f}", "--to", f"{REPLAY_TO:.0f}"]
    args += ["--format", "json"]
    for iso in (False, True):
        csv = _history_csv(tmp_path / f"history-{iso}.csv", series, iso=iso)
        done = _run([*args, "--history", str(csv)])
        assert done.returncode == 0, done.stderr
        data = json.loads(done.stdout)
        expected = _backtest(series)
        assert [datetime.fromisoformat(p["time"]) for p in data["plans"]] == [p.time for p in expected.plans]
        assert [p["action"] for p in data["plans"]] == [p.action for p in expected.plans]
        assert data["summary"]["incidents"] == expected.summary.incidents >= 1
        assert {"plans", "resolutions", "gaps", "summary", "metrics_without_data"} <= set(data)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda rows: [r.replace(",cpu,", ",cpu_usage,") for r in rows], "cpu"),
        (lambda rows: [rows[0], rows[1].replace(",", ",abc,", 1), *rows[2:]], "abc"),
        (lambda rows: [rows[0], rows[2], rows[1], *rows[3:]], "order"),
        (lambda rows: [rows[0], rows[1], rows[1], *rows[2:]], "repeat"),
        (lambda rows: [rows[0], "yesterday" + rows[1][rows[1].index(",") :], *rows[2:]], "yesterday"),
        (lambda rows: [r.replace("timestamp,", "time,") for r in rows], "timestamp"),
        (lambda rows: [], "empty"),
    ],
    ids=["missing-column", "non-numeric", "unsorted", "repeated", "bad-timestamp", "no-timestamp", "empty"],
)
def test_backtest_history_bad_csv_is_one_line_and_exit_2(
    tmp_path: Path, edit: Callable[[list[str]], list[str]], message: str
) -> None:
    csv = _history_csv(tmp_path / "history.csv", _healthy(6))
    csv.write_text("\n".join(edit(csv.read_text(encoding="utf-8").splitlines())) + "\n", encoding="utf-8")
    policy = _write(tmp_path, "policy.yaml", _policy_doc())
    done = _run(["--policy", str(policy), "--history", str(csv)])
    assert done.returncode == 2, (done.returncode, done.stdout[-500:], done.stderr)
    assert done.stdout == "" and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert message in done.stderr.lower() or str(csv) in done.stderr, done.stderr


def test_backtest_history_starts_at_the_first_full_window_by_default(tmp_path: Path) -> None:
    csv = _history_csv(tmp_path / "history.csv", _healthy(8))
    policy = _write(tmp_path, "policy.yaml", _policy_doc())
    done = _run(["--policy", str(policy), "--history", str(csv), "--format", "json"])
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    first_full = T0 + (nominal_rows(POLICY.spec) - 1) * STEP
    assert datetime.fromisoformat(data["start"]).timestamp() == first_full
    assert datetime.fromisoformat(data["end"]).timestamp() == REPLAY_TO
    short = tmp_path / "short.csv"
    short.write_text("\n".join(csv.read_text(encoding="utf-8").splitlines()[:50]) + "\n", encoding="utf-8")
    done = _run(["--policy", str(policy), "--history", str(short)])
    assert done.returncode == 2 and "less than the policy's window" in done.stderr, done.stderr


def test_a_window_reaching_before_a_csv_history_is_missing_samples() -> None:
    """An incident's frozen baseline may reach back before the first row of an export: the operator
    would have found no samples there, so the replay's window holds NaN, not an error."""
    series = _healthy(9)
    history = MetricWindow(
        tuple(series), T0 + np.arange(ROWS) * STEP, np.column_stack(list(series.values())), STEP
    )
    at = T0 + 1800.0
    opened_at = T0 + 600.0  # the frozen baseline starts before T0
    bounds = window_bounds(POLICY.spec, at, opened_at)
    assert bounds.start < T0
    got = window_at(POLICY.spec, history, at, opened_at)
    assert got.timestamps[0] == bounds.start and got.timestamps[-1] == bounds.end
    before = got.timestamps < T0
    assert before.any() and np.isnan(got.values[before]).all()
    np.testing.assert_array_equal(got.values[~before], history.values[: int((~before).sum())])


def test_a_csv_history_carries_the_stable_track_of_a_metric_that_has_one(tmp_path: Path) -> None:
    doc = _policy_doc()
    doc["spec"]["metrics"][0]["stableQuery"] = 'latency{track="stable"}'
    spec = CorrelationPolicySpec.model_validate(doc["spec"])
    csv = tmp_path / "history.csv"
    rows = [f"{T0 + k * STEP:.0f},{0.1 + k},{0.2 + k},0.01,5" for k in range(4)]
    csv.write_text("timestamp,latency@stable,latency,errors,cpu\n" + "\n".join(rows) + "\n", encoding="utf-8")
    history = load_history(csv, spec)
    assert history.stable is not None
    np.testing.assert_allclose(history.stable[:, 0], 0.1 + np.arange(4))
    np.testing.assert_allclose(history.values[:, 0], 0.2 + np.arange(4))
    assert np.isnan(history.stable[:, 1:]).all()  # no stable track: judged on their own
    assert load_history(csv, POLICY.spec).stable is None  # the column is only read when asked for
