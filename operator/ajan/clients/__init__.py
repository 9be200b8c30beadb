"""Clients at the edges of the operator: each backend behind a small protocol, its HTTP client injected."""

from __future__ import annotations

from ajan.clients.prometheus import (
    AmbiguousResult,
    MalformedResponse,
    MetricSource,
    MetricSourceError,
    PrometheusSource,
    PrometheusUnavailable,
    QueryFailed,
    QueryTimedOut,
    RangeResult,
)

__all__ = [
    "AmbiguousResult",
    "MalformedResponse",
    "MetricSource",
    "MetricSourceError",
    "PrometheusSource",
    "PrometheusUnavailable",
    "QueryFailed",
    "QueryTimedOut",
    "RangeResult",
]
