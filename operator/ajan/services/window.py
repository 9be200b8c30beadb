"""Fetching a policy's metrics from a `MetricSource` onto one time grid.

All of a policy's queries go out at once (``asyncio.gather``); a policy with ten metrics waits for
its slowest query, not for the sum. When several fail, the error a person should see first wins:
an unreachable Prometheus before a refused query before missing data.
"""

from __future__ import annotations

import asyncio
import math
from typing import Final

import numpy as np

from ajan.clients.prometheus import (
    InsufficientData,
    MetricSource,
    MetricSourceError,
    PrometheusUnavailable,
    QueryFailed,
    RangeResult,
)
from ajan.models import CorrelationPolicySpec, parse_duration
from ajan.services.assessment import MetricWindow

#: Which error is reported when several queries fail (lower first).
_PRECEDENCE: Final = {PrometheusUnavailable: 0, QueryFailed: 1, InsufficientData: 2}


def _rank(error: MetricSourceError) -> int:
    return next((rank for kind, rank in _PRECEDENCE.items() if isinstance(error, kind)), 3)


def window_bounds(spec: CorrelationPolicySpec, now: float) -> tuple[float, float, float]:
    """``(start, end, step)`` of the window ending at ``now``, aligned down to the step.

    Aligned so that successive evaluations share one grid (and Prometheus's results cache).
    """
    step = parse_duration(spec.step).total_seconds()
    window = parse_duration(spec.window).total_seconds()
    end = math.floor(now / step) * step
    return end - window + step, end, step


async def fetch_window(
    source: MetricSource, spec: CorrelationPolicySpec, start: float, end: float, step: float
) -> MetricWindow:
    """The policy's metrics over ``[start, end]`` every ``step`` seconds, one column per metric.

    Raises
    ------
    MetricSourceError
        The most telling of the queries' errors; its message names the metric.
    """
    results = await asyncio.gather(
        *(source.query_range(m.query, start, end, step) for m in spec.metrics), return_exceptions=True
    )
    errors: list[tuple[str, MetricSourceError]] = []
    for metric, result in zip(spec.metrics, results, strict=True):
        if isinstance(result, MetricSourceError):
            errors.append((metric.name, result))
        elif isinstance(result, BaseException):
            raise result
    if errors:
        name, error = min(errors, key=lambda item: _rank(item[1]))
        error.message = f"metric {name}: {error.message}"
        error.args = (error.message,)
        raise error
    series = [r for r in results if isinstance(r, RangeResult)]
    values = np.column_stack([r.values for r in series])
    return MetricWindow(tuple(m.name for m in spec.metrics), series[0].timestamps, values, step)
