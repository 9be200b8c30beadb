"""``ajan backtest``: replay a CorrelationPolicy over Prometheus history, to tune it before enabling it.

The history is fetched once (every metric over ``[from - window, to]`` at the policy's step, in
requests of at most :data:`~ajan.clients.prometheus.MAX_POINTS` points) or read from a CSV file of
exported metrics (:func:`load_history`), then replayed: every
``interval`` from ``from`` to ``to`` the window ending then is cut out of it, assessed with
:func:`~ajan.services.assessment.assess` and decided on with :func:`~ajan.services.incident.decide`,
the very functions the operator calls. So a backtest shows what the operator would have done, with
the same grid alignment (:func:`~ajan.services.window.window_bounds`) and the same fail-safe: an
evaluation without enough data changes no incident and proposes no plan.

Layers: :func:`load_policy` and :func:`parse_time` read the user's input; :func:`fetch_history` is the
only I/O; :func:`replay` is pure and returns a :class:`BacktestResult` of dataclasses;
:func:`render_table` and :func:`render_json` turn it into text.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import multiprocessing
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
import yaml
from pydantic import ValidationError

from ajan.clients.feedback_store import DEFAULT_TTL_S, FeedbackHistory, FeedbackRecord
from ajan.clients.prometheus import MAX_POINTS, MetricSource
from ajan.errors import DataError, InsufficientData
from ajan.models import CorrelationPolicy, CorrelationPolicySpec, Incident, Verdict, parse_duration
from ajan.models.common import validation_message
from ajan.services.assessment import (
    Assessment,
    FloatArray,
    MetricWindow,
    long_run_spread,
    nominal_rows,
)
from ajan.services.feedback import assessment_shifts, signature
from ajan.services.incident import Decision, Outcome
from ajan.services.severity import SeverityClassifier, load_classifier
from ajan.services.step import assess_window, conclude, evaluate
from ajan.services.window import Bounds, raise_most_telling, spread_bounds, stable_columns, window_bounds
from ajan.table import TIMESTAMP_COLUMN, InputError, read_table

#: Requests in flight at once: a long backtest must not flood the user's Prometheus.
CONCURRENT_QUERIES: Final = 4
#: Anomalous metrics and predicted impacts shown per plan.
TOP_METRICS: Final = 3
TOP_IMPACTS: Final = 3
#: Gaps listed in the table (all of them are in the JSON).
TABLE_GAPS: Final = 10
#: A CSV history's column of a metric's stable track is the metric's name with this suffix.
STABLE_SUFFIX: Final = "@stable"
#: Below this many evaluations a replay stays in one process: starting workers costs more.
PARALLEL_MIN_EVALUATIONS: Final = 256
#: Quiet windows a worker assesses per task (fewer round trips, little run-ahead wasted).
QUIET_CHUNK: Final = 16
#: Which error of several failed queries a person should see first (lower first).
_RELATIVE: Final = re.compile(r"^-(?:(\d+)d)?((?:\d+(?:ms|s|m|h))*)$")


class BacktestError(InputError):
    """Bad input to a backtest (policy file, times, Prometheus), reported as one line."""

    def __init__(self, message: str) -> None:
        # One line whatever the source said (YAML marks, Prometheus error bodies span lines).
        super().__init__(" ".join(message.split()))


# --- input ----------------------------------------------------------------------------------------


def _yaml_problem(err: yaml.YAMLError) -> str:
    if isinstance(err, yaml.MarkedYAMLError) and err.problem_mark is not None:
        mark = err.problem_mark
        return f"{err.problem or err.context} (line {mark.line + 1}, column {mark.column + 1})"
    return str(err)


def load_policy(path: str | Path) -> CorrelationPolicy:
    """The one CorrelationPolicy in a YAML file (a single object or a multi-document file).

    Raises
    ------
    BacktestError
        When the file is not YAML, holds no CorrelationPolicy or several, or the policy is invalid
        (the message names the field, e.g. ``spec.metrics[1].query: ...``).
    OSError
        When the file cannot be read.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise BacktestError(f"{path}: not UTF-8 text: {err.reason}") from None
    try:
        documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as err:
        raise BacktestError(f"{path}: not valid YAML: {_yaml_problem(err)}") from None
    policies = [d for d in documents if isinstance(d, dict) and d.get("kind") == "CorrelationPolicy"]
    if not policies:
        kinds = sorted({str(d.get("kind")) for d in documents if isinstance(d, dict)})
        found = f"found kinds: {', '.join(kinds)}" if kinds else "found no Kubernetes object"
        raise BacktestError(f"{path}: no object of kind CorrelationPolicy ({found})")
    if len(policies) > 1:
        names = ", ".join(str((p.get("metadata") or {}).get("name", "?")) for p in policies)
        raise BacktestError(
            f"{path}: {len(policies)} CorrelationPolicy objects ({names}); a backtest replays one, "
            "put it in a file of its own"
        )
    try:
        return CorrelationPolicy.model_validate(policies[0])
    except ValidationError as err:
        raise BacktestError(f"{path}: {validation_message(err)}") from None


def _relative_seconds(text: str) -> float | None:
    """``-2h``, ``-30m``, ``-1d12h``: seconds before now, or None if ``text`` is not relative."""
    match = _RELATIVE.match(text)
    if match is None or not (match.group(1) or match.group(2)):
        return None
    days = int(match.group(1) or 0)
    rest = parse_duration(match.group(2)).total_seconds() if match.group(2) else 0.0
    return days * 86400.0 + rest


def parse_time(text: str, now: float, flag: str = "time") -> float:
    """Epoch seconds of ``now``, RFC 3339 (``2026-11-23T10:00:00Z``), epoch seconds, or ``-2h``/``-30m``.

    Relative times count back from ``now``; RFC 3339 needs its offset (``Z`` or ``+01:00``).
    """
    s = text.strip()
    if s == "now":
        return now
    relative = _relative_seconds(s)
    if relative is not None:
        return now - relative
    try:
        value = float(s)
    except ValueError:
        pass
    else:
        if not math.isfinite(value) or value < 0:
            raise BacktestError(f"{flag} {text!r}: epoch seconds must be a finite, positive number")
        return value
    try:
        moment = datetime.fromisoformat(s.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise BacktestError(
            f"{flag} {text!r} is not a time: use RFC 3339 (2026-11-23T10:00:00Z), epoch seconds, "
            "'now', or a time before now such as -2h or -30m"
        ) from None
    if moment.tzinfo is None:
        raise BacktestError(f"{flag} {text!r} has no time zone: add Z (UTC) or an offset such as +01:00")
    return moment.timestamp()


def parse_range(start: str, end: str, now: float) -> tuple[float, float]:
    """``(from, to)`` in epoch seconds; ``from`` must not come after ``to``, nor ``to`` after now."""
    t0 = parse_time(start, now, "--from")
    t1 = parse_time(end, now, "--to")
    if t0 > t1:
        raise BacktestError(f"--from ({start}, {_iso(t0)}) comes after --to ({end}, {_iso(t1)})")
    if t1 > now:
        raise BacktestError(f"--to ({end}, {_iso(t1)}) is in the future; history ends now ({_iso(now)})")
    return t0, t1


# --- the history ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grid:
    """The history's time grid: ``count`` points ``start + k * step``."""

    start: float
    step: float
    count: int

    @property
    def timestamps(self) -> np.ndarray:
        """Epoch seconds of the points."""
        return self.start + np.arange(self.count, dtype=np.float64) * self.step


def _points(start: float, end: float, step: float) -> int:
    """Points of the grid ``start + k * step <= end`` (as the Prometheus client counts them)."""
    return math.floor((end - start) / step + 1e-9) + 1


def history_grid(spec: CorrelationPolicySpec, start: float, end: float) -> Grid:
    """The grid holding the windows of every evaluation from ``start`` to ``end``.

    It starts where the window of the first evaluation starts, so every evaluation's window (aligned
    as the operator aligns it) is a run of its rows.
    """
    first, step = window_bounds(spec, start).start, window_bounds(spec, start).step
    last = window_bounds(spec, end).end
    return Grid(first, step, _points(first, last, step))


def chunks(grid: Grid, max_points: int = MAX_POINTS) -> list[tuple[int, float, float]]:
    """``(offset, start, end)`` of requests of at most ``max_points`` points that cover the grid."""
    return [
        (
            offset,
            grid.start + offset * grid.step,
            grid.start + (min(offset + max_points, grid.count) - 1) * grid.step,
        )
        for offset in range(0, grid.count, max_points)
    ]


async def _fetch_metric(
    source: MetricSource, query: str, grid: Grid, slots: asyncio.Semaphore, max_points: int
) -> np.ndarray:
    """One metric over the grid; a chunk without data is a gap (NaN), not an error."""
    values = np.full(grid.count, np.nan)
    for offset, start, end in chunks(grid, max_points):
        try:
            async with slots:
                result = await source.query_range(query, start, end, grid.step)
        except InsufficientData:
            continue  # no series or no finite point in this slice: the evaluations there will say so
        n = min(result.values.size, grid.count - offset)
        values[offset : offset + n] = result.values[:n]
    return values


async def fetch_history(
    source: MetricSource,
    spec: CorrelationPolicySpec,
    grid: Grid,
    *,
    max_points: int = MAX_POINTS,
    concurrency: int = CONCURRENT_QUERIES,
) -> MetricWindow:
    """Every metric of the policy over ``grid``, one column each, NaN where there is no sample.

    Raises
    ------
    DataError
        A query failed outright (Prometheus unreachable, PromQL refused, several series); the message
        names the metric. Missing data is not an error: it is kept as NaN.
    """
    slots = asyncio.Semaphore(concurrency)
    tracked = [m for m in spec.metrics if m.stable_query is not None]
    results = await asyncio.gather(
        *(_fetch_metric(source, m.query, grid, slots, max_points) for m in spec.metrics),
        *(_fetch_metric(source, m.stable_query or "", grid, slots, max_points) for m in tracked),
        return_exceptions=True,
    )
    raise_most_telling(spec, results, stable_of=tracked)
    canary, stable = results[: len(spec.metrics)], results[len(spec.metrics) :]
    columns = [r for r in canary if isinstance(r, np.ndarray)]
    values = np.column_stack(columns) if columns else np.zeros((grid.count, 0))
    tracks = {m.name: r for m, r in zip(tracked, stable, strict=True) if isinstance(r, np.ndarray)}
    return MetricWindow(
        tuple(m.name for m in spec.metrics), grid.timestamps, values, grid.step,
        stable_columns(spec, tracks, grid.count),
    )  # fmt: skip


def load_history(path: str | Path, spec: CorrelationPolicySpec) -> MetricWindow:
    """A policy's metrics from a CSV file: a ``timestamp`` column (RFC 3339 / ISO 8601, or epoch
    seconds) and one column per metric of the policy, named as in the spec (other columns are
    ignored); empty cells and ``NaN`` are missing samples. A metric with a ``stableQuery`` may have
    its stable track in a column named ``<metric>@stable``; without one it is judged on its own.

    Rows are placed on the policy's step grid from the first timestamp (to the nearest point): a
    grid point without a row is a gap, which the replay reports as evaluations without enough data.

    Raises
    ------
    BacktestError
        A missing file, column or timestamp column, a non-numeric value, timestamps out of order or
        repeated, two rows on one grid point, or an empty file: one line naming it.
    """
    names = tuple(m.name for m in spec.metrics)
    tracks = tuple(f"{m.name}{STABLE_SUFFIX}" for m in spec.metrics if m.stable_query is not None)
    try:
        table = read_table(path, columns=names, allow_extra=True, optional=tracks)
    except InputError as err:
        raise BacktestError(str(err)) from None
    if table.epochs is None:
        raise BacktestError(f"{path}: no {TIMESTAMP_COLUMN!r} column: a history needs the time of each row")
    epochs, stamps = table.epochs, table.timestamps or ()
    order = np.diff(epochs)
    bad = np.flatnonzero(order <= 0)
    if bad.size:
        k = int(bad[0])  # data rows k and k + 1: file lines k + 2 and k + 3
        what = "is repeated" if order[k] == 0 else f"comes after {stamps[k]} (line {k + 2})"
        raise BacktestError(
            f"{path}: timestamp {stamps[k + 1]} (line {k + 3}) {what}: rows must be in time order, "
            "one per time"
        )
    step = parse_duration(spec.step).total_seconds()
    rows = np.rint((epochs - epochs[0]) / step).astype(np.int64)
    clash = np.flatnonzero(np.diff(rows) == 0)
    if clash.size:
        k = int(clash[0])
        raise BacktestError(
            f"{path}: rows {k + 2} and {k + 3} fall on one point of the policy's {spec.step} grid: "
            "export the metrics at spec.step, or set spec.step to the file's spacing"
        )
    grid = np.full((int(rows[-1]) + 1, len(table.names)), np.nan)
    grid[rows] = table.values
    values = grid[:, : len(names)]
    stable = {
        name.removesuffix(STABLE_SUFFIX): grid[:, j] for j, name in enumerate(table.names) if j >= len(names)
    }
    timestamps = epochs[0] + np.arange(values.shape[0], dtype=np.float64) * step
    return MetricWindow(names, timestamps, values, step, stable_columns(spec, stable, values.shape[0]))


# --- the replay -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricZ:
    """An anomalous metric of a plan's evidence and its calibrated z-score now."""

    metric: str
    z: float


@dataclass(frozen=True)
class Impact:
    """A predicted impact on an SLO metric: expected z, breach probability, lead time."""

    metric: str
    expected_z: float
    breach_probability: float
    lag_seconds: float


@dataclass(frozen=True)
class PlanEvent:
    """A plan the operator would have proposed: on opening an incident, or on escalating it."""

    time: datetime
    outcome: str  # "open" or "escalate"
    plan: str
    incident: str
    action: str
    severity: str
    confidence: float
    supersedes: str | None
    top_metrics: tuple[MetricZ, ...]
    predicted_impact: tuple[Impact, ...]
    severity_estimate: dict[str, float | str] | None = None
    """The severity model's advisory probabilities (``info``, ``warning``, ``critical``, ``source``)."""
    probability_real: float | None = None
    """How often an incident opened at this confidence was real in the replays of labelled data
    (:data:`ajan.analysis.calibration.OPENING_MAP`); advisory, as in the plan's evidence."""


@dataclass(frozen=True)
class Resolution:
    """An incident ended after ``recoveryEvaluations`` healthy evaluations; ``plan`` was its last."""

    time: datetime
    plan: str
    incident: str
    opened_at: datetime


@dataclass(frozen=True)
class DataGap:
    """Consecutive evaluations without enough data (no action taken), with the first one's message."""

    start: datetime
    end: datetime
    evaluations: int
    reason: str
    message: str


@dataclass(frozen=True)
class Summary:
    """Counts over the whole replay."""

    evaluations: int
    assessed: int
    insufficient_data: dict[str, int]
    incidents: int
    open_at_end: bool
    plans: int
    plans_by_action: dict[str, int]
    time_in_incidents_s: float
    max_confidence: float | None
    max_confidence_at: datetime | None


@dataclass(frozen=True)
class BacktestResult:
    """What a policy would have done over ``[start, end]``: its plans, resolutions, gaps and summary."""

    policy: str
    namespace: str | None
    start: datetime
    end: datetime
    interval_s: float
    window_s: float
    step_s: float
    plans: tuple[PlanEvent, ...]
    resolutions: tuple[Resolution, ...]
    gaps: tuple[DataGap, ...]
    summary: Summary
    metrics_without_data: tuple[str, ...] = field(default=())


def evaluation_times(start: float, end: float, interval: float) -> list[float]:
    """``start, start + interval, ...`` up to ``end`` included."""
    return [start + k * interval for k in range(_points(start, end, interval))]


def _stamp(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, tz=UTC)


def window_at(
    spec: CorrelationPolicySpec, history: MetricWindow, at: float, opened_at: float | None = None
) -> MetricWindow:
    """The rows the operator would have fetched at ``at`` (see `window_bounds`), an incident
    opened at ``opened_at`` being open."""
    bounds = window_bounds(spec, at, opened_at)
    first, last, step = bounds.start, bounds.end, bounds.step
    offset = round((first - float(history.timestamps[0])) / step) if history.timestamps.size else 0
    rows = _points(first, last, step)
    if offset < 0:
        # A CSV history may start inside the window (an incident's frozen baseline reaches back
        # further than --from): the rows before it are missing samples, as a gap in Prometheus is.
        missing = min(-offset, rows)
        known = history.tail(rows - missing, rows - missing)
        gap = np.full((missing, len(history.names)), np.nan)
        return MetricWindow(
            history.names,
            first + np.arange(rows, dtype=np.float64) * step,
            np.vstack([gap, known.values]),
            step,
            None if known.stable is None else np.vstack([gap, known.stable]),
        )
    return history.tail(offset + rows, rows)


def _plan_event(at: datetime, decision: Decision, severity: str, assessment: Assessment) -> PlanEvent:
    """The plan of an opening or escalating decision, with the evidence a person judges it by."""
    incident = decision.incident
    assert incident is not None
    evidence = assessment.evidence
    return PlanEvent(
        time=at,
        outcome=decision.outcome.value,
        plan=incident.plan,
        incident=incident.id,
        action=incident.action.value,
        severity=severity,
        confidence=assessment.confidence,
        supersedes=decision.previous_plan,
        top_metrics=tuple(MetricZ(a.metric, a.z_score) for a in evidence.anomalies[:TOP_METRICS]),
        predicted_impact=tuple(
            Impact(p.metric, p.expected_z, p.breach_probability, p.lag_seconds)
            for p in sorted(evidence.predicted_impact, key=lambda p: -p.breach_probability)[:TOP_IMPACTS]
        ),
        severity_estimate=evidence.severity.model_dump() if evidence.severity else None,
        probability_real=evidence.probability_real,
    )


def _judge(
    verdicts: Callable[[PlanEvent], Verdict | None],
    plans: Sequence[PlanEvent],
    moved: dict[str, float],
    policy: str,
    namespace: str,
    at: datetime,
) -> list[FeedbackRecord]:
    """The verdicts given on an incident's plans when it resolved."""
    records = []
    for plan in plans:
        verdict = verdicts(plan)
        if verdict is not None:
            records.append(
                FeedbackRecord(
                    namespace=namespace, policy=policy, plan=plan.plan, signature=signature(moved),
                    verdict=verdict, at=at, shifts=moved, confidence=plan.confidence, action=plan.action,
                )
            )  # fmt: skip
    return records


#: How far back Prometheus looks for a sample at each point of a range query (its default
#: ``--query.lookback-delta``).
LOOKBACK_S: Final = 300.0


def spread_at(history: MetricWindow, grid: Bounds) -> FloatArray:
    """The long-run spread the operator would have fetched over ``grid``
    (:func:`ajan.services.window.fetch_spread`): at each point of the grid, the newest row of
    ``history`` at or before it and at most :data:`LOOKBACK_S` older, as Prometheus answers a range
    query."""
    points = grid.start + np.arange(grid.rows, dtype=np.float64) * grid.step
    ts = history.timestamps
    index = np.searchsorted(ts, points + 1e-6, side="right") - 1
    found = (index >= 0) & (points - ts[np.maximum(index, 0)] <= LOOKBACK_S + 1e-6)
    values = np.where(found[:, None], history.values[np.maximum(index, 0)], np.nan)
    return long_run_spread(values)


@dataclass(frozen=True)
class _Inputs:
    """What the operator would have fetched for one evaluation."""

    current_from: float
    window: MetricWindow
    spread: FloatArray


class _Fetcher:
    """The window (and the long-run spread, cached per grid as the operator caches it per hour) at
    each evaluation, cut out of the history."""

    def __init__(
        self, spec: CorrelationPolicySpec, history: MetricWindow, long_history: MetricWindow
    ) -> None:
        self.spec, self.history, self.long_history = spec, history, long_history
        self._spread: tuple[Bounds, FloatArray] | None = None

    def at(self, t: float, opened_at: float | None) -> _Inputs:
        bounds = window_bounds(self.spec, t, opened_at)
        window = window_at(self.spec, self.history, t, opened_at)
        grid = spread_bounds(self.spec, bounds.current_from)
        if self._spread is None or self._spread[0] != grid:
            self._spread = (grid, spread_at(self.long_history, grid))
        return _Inputs(bounds.current_from, window, self._spread[1])

    def quiet(self, t: float) -> Assessment | InsufficientData:
        """The assessment the operator's step makes at ``t`` when no incident is open."""
        try:
            got = self.at(t, None)
            return assess_window(
                self.spec, got.window, got.current_from, incident_open=False, spread=got.spread
            )
        except InsufficientData as err:
            return err


#: A worker's fetcher, set once when the pool forks it (inherited, never pickled: the history is
#: megabytes). Only worker processes set it.
_WORKER_FETCHER: _Fetcher | None = None


def _start_worker(fetcher: _Fetcher) -> None:
    global _WORKER_FETCHER
    _WORKER_FETCHER = fetcher


def _quiet_chunk(times: Sequence[float]) -> list[Assessment | InsufficientData]:
    assert _WORKER_FETCHER is not None
    return [_WORKER_FETCHER.quiet(t) for t in times]


@contextmanager
def _quiet_ahead(
    fetcher: _Fetcher, times: Sequence[float], workers: int
) -> Iterator[Iterator[Assessment | InsufficientData | None]]:
    """Per evaluation time, in order: the quiet assessment, made ahead by ``workers`` forked
    processes, or None (one process: the loop assesses every window itself).

    Whether an incident is open at a time depends on every decision before it, but the assessment
    of a window without one does not: it depends on the window alone. Most evaluations are quiet,
    so workers assess them all ahead while the loop decides in order and assesses itself only the
    windows of open incidents (whose quiet assessment it throws away).
    """
    if workers < 2 or len(times) < PARALLEL_MIN_EVALUATIONS:
        yield itertools.repeat(None)
        return
    chunks = [times[i : i + QUIET_CHUNK] for i in range(0, len(times), QUIET_CHUNK)]
    with multiprocessing.get_context("fork").Pool(workers, _start_worker, (fetcher,)) as pool:
        yield itertools.chain.from_iterable(pool.imap(_quiet_chunk, chunks))


def replay(
    policy: CorrelationPolicy,
    history: MetricWindow,
    start: float,
    end: float,
    *,
    verdicts: Callable[[PlanEvent], Verdict | None] | None = None,
    feedback_ttl_s: float = DEFAULT_TTL_S,
    classifier: SeverityClassifier | None = None,
    long_history: MetricWindow | None = None,
    workers: int = 1,
) -> BacktestResult:
    """Evaluate the policy every ``interval`` from ``start`` to ``end`` over ``history``.

    Pure. ``history`` must cover the window of every evaluation (see `history_grid`). Each evaluation
    is the operator's own step (:func:`ajan.services.step.evaluate`, with the severity model the
    operator loads unless ``classifier`` is given): an `InsufficientData` assessment changes nothing
    and is counted; otherwise the step moves the in-memory incident on, and an opening or escalation
    is a plan.

    With ``verdicts`` (a stand-in for the person who judges each plan of an incident once it has
    resolved), every decision is refined by the live verdicts, exactly as the operator's is with
    Redis (:func:`ajan.services.feedback.refine`). A verdict is recorded as the operator records one
    on a plan whose evidence grew: with every metric the incident involved and how far each moved.

    Each metric's long-run spread (:func:`ajan.services.window.spread_bounds`) is sampled from
    ``long_history`` (by default ``history``), which should then reach a week before ``start``.

    With ``workers`` > 1 (and at least :data:`PARALLEL_MIN_EVALUATIONS` evaluations) the windows
    of quiet evaluations are assessed ahead in that many forked processes; the result is the same.
    Not from inside a pool's worker: those cannot fork.
    """
    spec = policy.spec
    if classifier is None:
        classifier, _ = load_classifier()
    name = str(policy.metadata.get("name") or "backtest")
    namespace = policy.metadata.get("namespace")
    interval = parse_duration(spec.interval).total_seconds()
    severities = {rung.action: rung.severity.value for rung in spec.remediation.ladder}

    incident: Incident | None = None
    given: list[FeedbackRecord] = []
    # The open incident's plans, and how far each metric it involved moved so far.
    judged: list[PlanEvent] = []
    moved: dict[str, float] = {}
    tally = _Tally()
    times = evaluation_times(start, end, interval)
    fetcher = _Fetcher(spec, history, history if long_history is None else long_history)
    with _quiet_ahead(fetcher, times, workers) as ahead:
        for t, quiet in zip(times, ahead, strict=False):
            at = _stamp(t)
            live = None
            if verdicts is not None:
                live = FeedbackHistory(tuple(r for r in given if t - r.at.timestamp() < feedback_ttl_s))
            try:
                if incident is None and quiet is not None:
                    if isinstance(quiet, InsufficientData):
                        raise quiet
                    step = conclude(name, spec, quiet, None, at, classifier, live)
                else:
                    opened_at = incident.opened_at.timestamp() if incident else None
                    got = fetcher.at(t, opened_at)
                    step = evaluate(
                        name, spec, got.window, got.current_from, incident, at, classifier, live, got.spread
                    )
            except InsufficientData as err:
                tally.gap(at, err, interval)
                continue
            assessment, decision = step.assessment, step.decision
            tally.assessed_at(at, assessment.confidence)
            if decision.outcome in (Outcome.OPEN, Outcome.ESCALATE):
                assert decision.incident is not None
                tally.incidents += decision.outcome is Outcome.OPEN
                severity = severities.get(decision.incident.action, "warning")
                event = _plan_event(at, decision, severity, assessment)
                tally.plans.append(event)
                judged.append(event)
            elif decision.outcome is Outcome.RESOLVE:
                assert incident is not None
                tally.resolutions.append(Resolution(at, incident.plan, incident.id, incident.opened_at))
                tally.incident_seconds += t - incident.opened_at.timestamp()
                if verdicts is not None:
                    given += _judge(verdicts, judged, moved, name, str(namespace or "default"), at)
                judged, moved = [], {}
            if decision.incident is not None:
                for metric, shift in assessment_shifts(assessment).items():
                    moved[metric] = max(moved.get(metric, 0.0), shift)
            incident = decision.incident
    if incident is not None:
        # Still open when the replay ends: it counts until the end of the range.
        tally.incident_seconds += end - incident.opened_at.timestamp()
    empty = tuple(
        n for n, column in zip(history.names, history.values.T, strict=True) if not np.isfinite(column).any()
    )
    return BacktestResult(
        policy=name,
        namespace=str(namespace) if namespace else None,
        start=_stamp(start),
        end=_stamp(end),
        interval_s=interval,
        window_s=parse_duration(spec.window).total_seconds(),
        step_s=parse_duration(spec.step).total_seconds(),
        plans=tuple(tally.plans),
        resolutions=tuple(tally.resolutions),
        gaps=tuple(tally.gaps),
        summary=tally.summary(len(times), open_at_end=incident is not None),
        metrics_without_data=empty,
    )


@dataclass
class _Tally:
    """What a replay has counted so far."""

    plans: list[PlanEvent] = field(default_factory=list)
    resolutions: list[Resolution] = field(default_factory=list)
    gaps: list[DataGap] = field(default_factory=list)
    insufficient: dict[str, int] = field(default_factory=dict)
    incident_seconds: float = 0.0
    incidents: int = 0
    assessed: int = 0
    max_confidence: tuple[float, datetime] | None = None

    def gap(self, at: datetime, err: InsufficientData, interval: float) -> None:
        """An evaluation lost to missing data: it extends the last gap of the same reason, if the
        gap ended one interval before."""
        self.insufficient[err.reason] = self.insufficient.get(err.reason, 0) + 1
        last = self.gaps[-1] if self.gaps else None
        if last is not None and last.reason == err.reason and _follows(last.end, at, interval):
            self.gaps[-1] = DataGap(last.start, at, last.evaluations + 1, last.reason, last.message)
        else:
            self.gaps.append(DataGap(at, at, 1, err.reason, err.message))

    def assessed_at(self, at: datetime, confidence: float) -> None:
        self.assessed += 1
        if self.max_confidence is None or confidence > self.max_confidence[0]:
            self.max_confidence = (confidence, at)

    def summary(self, evaluations: int, *, open_at_end: bool) -> Summary:
        by_action: dict[str, int] = {}
        for plan in self.plans:
            by_action[plan.action] = by_action.get(plan.action, 0) + 1
        return Summary(
            evaluations=evaluations,
            assessed=self.assessed,
            insufficient_data=self.insufficient,
            incidents=self.incidents,
            open_at_end=open_at_end,
            plans=len(self.plans),
            plans_by_action=by_action,
            time_in_incidents_s=self.incident_seconds,
            max_confidence=self.max_confidence[0] if self.max_confidence else None,
            max_confidence_at=self.max_confidence[1] if self.max_confidence else None,
        )


def _follows(previous: datetime, at: datetime, interval: float) -> bool:
    return abs(at.timestamp() - previous.timestamp() - interval) < 1e-6 * max(interval, 1.0)


async def backtest(
    source: MetricSource, policy: CorrelationPolicy, start: float, end: float, *, workers: int = 1
) -> BacktestResult:
    """Fetch the history the replay needs from ``source`` once, then `replay` it (with ``workers``).

    Raises
    ------
    DataError
        A query failed for the whole range (see `fetch_history`).
    """
    grid = history_grid(policy.spec, start, end)
    history = await fetch_history(source, policy.spec, grid)
    # The week before each evaluation, on the coarse grid the operator samples it on: one grid for
    # the whole range, as the spread grids of successive hours are parts of one.
    first, last = spread_bounds(policy.spec, start), spread_bounds(policy.spec, end)
    coarse = Grid(first.start, first.step, _points(first.start, last.end, first.step))
    long_history = await fetch_history(source, policy.spec, coarse)
    return replay(policy, history, start, end, long_history=long_history, workers=workers)


def run(
    policy_path: str,
    prometheus_url: str | None,
    start: str | None,
    end: str,
    *,
    timeout_s: float,
    now: float | None = None,
    history_path: str | None = None,
    workers: int = 1,
) -> BacktestResult:
    """The whole command: read the policy and the range, read the history (Prometheus, or the CSV
    file ``history_path``), replay (in ``workers`` processes, see `replay`).

    With a CSV history, times before "now" count back from the file's last row, ``start`` defaults
    to the first time the policy's window is full, and ``end`` "now" is the file's last row.

    Raises
    ------
    BacktestError
        For any bad input, and when Prometheus cannot answer (unreachable, query refused).
    """
    policy = load_policy(policy_path)
    if history_path is not None:
        history = load_history(history_path, policy.spec)
        last = float(history.timestamps[-1])
        first_full = float(history.timestamps[0]) + (nominal_rows(policy.spec) - 1) * history.step_s
        if last < first_full:
            raise BacktestError(
                f"{history_path}: the history holds {history.timestamps.size} rows at {policy.spec.step}, "
                f"less than the policy's window ({policy.spec.window}): nothing to evaluate"
            )
        t0, t1 = parse_range(start or _iso(first_full), end, last)
        return replay(policy, history, max(t0, first_full), t1, workers=workers)

    import httpx

    from ajan.clients.prometheus import PrometheusSource

    now = time.time() if now is None else now
    if start is None:
        raise BacktestError(
            "--from is required with Prometheus (with --history it defaults to the file's start)"
        )
    t0, t1 = parse_range(start, end, now)
    url = prometheus_url or (policy.spec.prometheus.url if policy.spec.prometheus else None)
    if not url:
        raise BacktestError(
            "no Prometheus to query: pass --prometheus URL (or --history FILE.csv), set "
            "AJAN_PROMETHEUS_URL, or set spec.prometheus.url in the policy"
        )
    if not re.match(r"^https?://", url):
        raise BacktestError(f"--prometheus {url!r}: expected an http:// or https:// URL")
    if timeout_s <= 0:
        raise BacktestError(f"--timeout must be positive, got {timeout_s:g}")

    async def go() -> BacktestResult:
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=CONCURRENT_QUERIES + 1)) as http:
            source = PrometheusSource(http, url, timeout_s=timeout_s)
            return await backtest(source, policy, t0, t1, workers=workers)

    try:
        return asyncio.run(go())
    except DataError as err:
        raise BacktestError(f"{err.reason}: {err.message}") from None


# --- rendering ------------------------------------------------------------------------------------


def _iso(at: datetime | float) -> str:
    moment = at if isinstance(at, datetime) else _stamp(at)
    text = moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return text.replace(".000Z", "Z")


def human_duration(seconds: float) -> str:
    """``1h2m3s``-style text of a duration (``0s`` for none)."""
    total = round(seconds)
    if total <= 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, total = divmod(total, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def to_dict(result: BacktestResult) -> dict[str, Any]:
    """The result as plain JSON data: the dataclasses' field names as keys, times in RFC 3339."""
    data: dict[str, Any] = _jsonable(asdict(result))
    return data


def render_json(result: BacktestResult) -> str:
    """``--output json``: the same as the table, machine-readable, with stable keys."""
    return json.dumps(to_dict(result), indent=2) + "\n"


def _columns(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def _plan_rows(result: BacktestResult) -> list[list[str]]:
    events: list[tuple[datetime, int, list[str]]] = []
    for p in result.plans:
        top = ", ".join(f"{m.metric} z={m.z:.1f}" for m in p.top_metrics) or "-"
        impact = (
            ", ".join(
                f"{i.metric} z={i.expected_z:.1f} p={i.breach_probability:.2f} "
                f"in {human_duration(i.lag_seconds)}"
                for i in p.predicted_impact
            )
            or "-"
        )
        row = [_iso(p.time), p.outcome, p.plan, p.action, p.severity, f"{p.confidence:.2f}", top, impact]
        events.append((p.time, 0, row))
    for r in result.resolutions:
        row = [
            _iso(r.time),
            "resolve",
            r.plan,
            "-",
            "-",
            "-",
            f"after {human_duration((r.time - r.opened_at).total_seconds())}",
            "-",
        ]
        events.append((r.time, 1, row))
    return [row for _, _, row in sorted(events, key=lambda e: (e[0], e[1]))]


def render_table(result: BacktestResult) -> str:
    """The human report: plans (and resolutions) in time order, gaps, then the summary."""
    s = result.summary
    name = f"{result.namespace}/{result.policy}" if result.namespace else result.policy
    lines = [
        f"Backtest of CorrelationPolicy {name} from {_iso(result.start)} to {_iso(result.end)}: "
        f"every {human_duration(result.interval_s)}, window {human_duration(result.window_s)}, "
        f"step {human_duration(result.step_s)}",
        "",
        "PLANS",
    ]
    rows = _plan_rows(result)
    if rows:
        header = [
            "TIME",
            "OUTCOME",
            "PLAN",
            "ACTION",
            "SEVERITY",
            "CONF",
            "TOP METRICS (z)",
            "PREDICTED IMPACT",
        ]
        lines += _columns([header, *rows])
    else:
        lines.append("none: the policy would not have proposed any plan")
    if result.gaps:
        lines += ["", "NO ACTION FOR LACK OF DATA"]
        shown = [
            [_iso(g.start), _iso(g.end), str(g.evaluations), g.reason, g.message]
            for g in result.gaps[:TABLE_GAPS]
        ]
        lines += _columns([["FROM", "TO", "EVALUATIONS", "REASON", "FIRST MESSAGE"], *shown])
        if len(result.gaps) > TABLE_GAPS:
            lines.append(f"... and {len(result.gaps) - TABLE_GAPS} more (see --output json)")
    if result.metrics_without_data:
        lines += ["", f"warning: no data at all for metric(s) {', '.join(result.metrics_without_data)}"]
    insufficient = sum(s.insufficient_data.values())
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(s.insufficient_data.items()))
    actions = ", ".join(f"{k} {v}" for k, v in sorted(s.plans_by_action.items()))
    peak = f"{s.max_confidence:.2f} at {_iso(s.max_confidence_at)}" if s.max_confidence_at else "-"
    summary = [
        ["evaluations", str(s.evaluations)],
        ["  assessed", str(s.assessed)],
        ["  without enough data", str(insufficient) + (f" ({reasons})" if reasons else "")],
        ["incidents", str(s.incidents) + (" (one still open at the end)" if s.open_at_end else "")],
        ["plans", str(s.plans) + (f" ({actions})" if actions else "")],
        ["time in incidents", human_duration(s.time_in_incidents_s)],
        ["max confidence", peak],
    ]
    lines += ["", "SUMMARY", *_columns(summary)]
    return "\n".join(lines) + "\n"
