"""Fetching a policy's metrics from a `MetricSource` onto one time grid.

All of a policy's queries go out at once (``asyncio.gather``); a policy with ten metrics waits for
its slowest query, not for the sum. When several fail, the error a person should see first wins:
an unreachable Prometheus before a refused query before missing data.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

from ajan.clients.prometheus import MAX_POINTS, MetricSource, PrometheusUnavailable, QueryFailed, RangeResult
from ajan.errors import DataError, InsufficientData
from ajan.models import CorrelationPolicySpec, Metric, parse_duration
from ajan.services.assessment import (
    MIN_SPREAD_POINTS,
    FloatArray,
    MetricWindow,
    current_rows,
    long_run_spread,
    nominal_rows,
)

#: During an incident the baseline stays frozen for at most this many windows.
FREEZE_WINDOWS: Final = 4
#: A metric's long-run spread looks back a week: long enough to hold its daily pattern and the
#: level changes it makes in normal operation, short enough to forget an old regime.
SPREAD_HORIZON_S: Final = 7 * 86400.0
#: ... sampled at about this many points: one range query per metric, no heavier than a window's.
SPREAD_POINTS: Final = 1000
#: ... and refreshed on the hour, so that the operator (which caches it) and a backtest agree.
SPREAD_REFRESH_S: Final = 3600.0
#: Which error is reported when several queries fail (lower first).
_PRECEDENCE: Final = {PrometheusUnavailable: 0, QueryFailed: 1, InsufficientData: 2}


def _rank(error: DataError) -> int:
    return next((rank for kind, rank in _PRECEDENCE.items() if isinstance(error, kind)), 3)


def most_telling(errors: Sequence[DataError]) -> DataError:
    """Of several queries' ``errors`` (at least one), the one a person should act on first: an
    unreachable Prometheus before a refused query before missing data; the first of equals."""
    return min(errors, key=_rank)


@dataclass(frozen=True)
class Bounds:
    """The grid of one evaluation: ``start, start + step, ..., end``; rows from ``current_from`` on
    are scored, the rows before them are the baseline."""

    start: float
    end: float
    step: float
    current_from: float

    @property
    def rows(self) -> int:
        """Points on the grid."""
        return round((self.end - self.start) / self.step) + 1


def raise_most_telling(
    spec: CorrelationPolicySpec, results: Sequence[object], *, stable_of: Sequence[Metric] = ()
) -> None:
    """Of the per-metric ``results`` (as ``gather(..., return_exceptions=True)`` gives them), raise the
    error a person should see first, its message naming the metric and every other metric that
    failed the same way; any other exception as is.

    ``results`` may go on with the stable-track queries of the metrics ``stable_of``: one that found
    no data is no error (the canary is then judged on its own), any other failure is.
    """
    named = [*((m.name, False) for m in spec.metrics), *((m.name, True) for m in stable_of)]
    errors: list[tuple[str, DataError]] = []
    for (name, stable), result in zip(named, results, strict=True):
        if isinstance(result, InsufficientData) and stable:
            continue
        if isinstance(result, DataError):
            errors.append((f"{name} (stable track)" if stable else name, result))
        elif isinstance(result, BaseException):
            raise result
    if errors:
        rank = min(_rank(error) for _, error in errors)
        # Every metric failing the same way, so that a user fixes all of their queries in one go.
        same = [(name, error) for name, error in errors if _rank(error) == rank]
        error = same[0][1]
        error.message = "; ".join(f"metric {name}: {e.message}" for name, e in same)
        error.args = (error.message,)
        raise error


def window_bounds(spec: CorrelationPolicySpec, now: float, opened_at: float | None = None) -> Bounds:
    """The window ending at ``now``, aligned down to the step, and its scored part.

    Aligned so that successive evaluations share one grid (and Prometheus's results cache). Without
    an incident the window is ``spec.window`` long and its newest quarter is scored. During an
    incident opened at ``opened_at`` the baseline stays where it was then, and everything since is
    scored against it: a sliding baseline would learn a long incident as the new normal and
    resolve it while the canary is still broken. The baseline is frozen for at most
    :data:`FREEZE_WINDOWS` windows (a lasting change of level becomes normal after that) and within
    Prometheus's limit on points per query.
    """
    step = parse_duration(spec.step).total_seconds()
    rows = nominal_rows(spec)
    current = current_rows(rows)
    end = math.floor(now / step) * step
    sliding = Bounds(end - (rows - 1) * step, end, step, end - (current - 1) * step)
    if opened_at is None:
        return sliding
    anchor = math.floor(opened_at / step) * step - (current - 1) * step
    frozen = Bounds(anchor - (rows - current) * step, end, step, anchor)
    if not anchor < sliding.current_from:
        return sliding
    if end - anchor > FREEZE_WINDOWS * rows * step or frozen.rows > MAX_POINTS:
        return sliding
    return frozen


def spread_bounds(spec: CorrelationPolicySpec, current_from: float) -> Bounds:
    """The coarse grid over which the long-run spread of an evaluation scored from ``current_from``
    is taken: the :data:`SPREAD_HORIZON_S` before the last full hour (``current_from`` of the
    result), at the multiple of the policy's step that gives about :data:`SPREAD_POINTS` points.

    Its points are multiples of that coarse step since the epoch, so that the grids of successive
    hours are parts of one grid (a backtest fetches that grid once).
    """
    step = parse_duration(spec.step).total_seconds()
    coarse = math.ceil(SPREAD_HORIZON_S / SPREAD_POINTS / step) * step
    until = math.floor(current_from / SPREAD_REFRESH_S) * SPREAD_REFRESH_S
    first = math.ceil((until - SPREAD_HORIZON_S) / coarse) * coarse
    last = (math.ceil(until / coarse) - 1) * coarse
    return Bounds(first, last, coarse, until)


async def fetch_spread(
    source: MetricSource, spec: CorrelationPolicySpec, grid: Bounds
) -> tuple[FloatArray, bool]:
    """Each metric's long-run spread over ``grid`` (:func:`spread_bounds`), and whether every query
    was answered (a short history is an answer: NaN for that metric).

    Never raises a `DataError`: the spread only bounds a score, so a metric whose long
    history is unknown is scored without the bound rather than not at all.
    """
    results = await asyncio.gather(
        *(
            source.query_range(m.query, grid.start, grid.end, grid.step, min_points=MIN_SPREAD_POINTS)
            for m in spec.metrics
        ),
        return_exceptions=True,
    )
    columns = []
    answered = True
    for result in results:
        if isinstance(result, RangeResult):
            columns.append(result.values)
            continue
        if not isinstance(result, DataError):
            raise result
        answered &= isinstance(result, InsufficientData)
        columns.append(np.full(grid.rows, np.nan))
    return long_run_spread(np.column_stack(columns)), answered


async def fetch_window(
    source: MetricSource, spec: CorrelationPolicySpec, start: float, end: float, step: float
) -> MetricWindow:
    """The policy's metrics over ``[start, end]`` every ``step`` seconds, one column per metric.

    ``fetch_window(source, spec, bounds.start, bounds.end, bounds.step)`` for a `Bounds`.

    Raises
    ------
    DataError
        The most telling of the queries' errors; its message names the metric.
    """
    tracked = [m for m in spec.metrics if m.stable_query is not None]
    results = await asyncio.gather(
        *(source.query_range(m.query, start, end, step) for m in spec.metrics),
        *(source.query_range(m.stable_query or "", start, end, step) for m in tracked),
        return_exceptions=True,
    )
    canary, stable = results[: len(spec.metrics)], results[len(spec.metrics) :]
    raise_most_telling(spec, results, stable_of=tracked)
    series = [r for r in canary if isinstance(r, RangeResult)]
    values = np.column_stack([r.values for r in series])
    columns = {m.name: r.values for m, r in zip(tracked, stable, strict=True) if isinstance(r, RangeResult)}
    return MetricWindow(
        tuple(m.name for m in spec.metrics), series[0].timestamps, values, step,
        stable_columns(spec, columns, values.shape[0]),
    )  # fmt: skip


def stable_columns(
    spec: CorrelationPolicySpec, columns: dict[str, FloatArray], rows: int
) -> FloatArray | None:
    """The stable tracks of the policy's metrics as one (rows, n_metrics) array, NaN for a metric
    without one (or without data), or None when no metric has a ``stableQuery``."""
    if not any(m.stable_query is not None for m in spec.metrics):
        return None
    return np.column_stack([columns.get(m.name, np.full(rows, np.nan)) for m in spec.metrics])
