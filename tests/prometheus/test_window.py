"""`fetch_window` with stable tracks, against a real Prometheus scraping the generator's two tracks."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any, Final

import httpx
import numpy as np
import pytest

from ajan.clients import PrometheusSource, QueryFailed
from ajan.models import CorrelationPolicySpec
from ajan.services.assessment import MetricWindow
from ajan.services.window import fetch_window
from support.prometheus import PrometheusServer, wait_for

RATE: Final = 'sum(rate(http_requests_total{{service="checkout",track="{track}"}}[5s]))'


def policy(stable: str) -> CorrelationPolicySpec:
    """A request rate of the canary with ``stable`` as its stable track, and a signal without one."""
    return CorrelationPolicySpec.model_validate(
        {"targetRef": {"name": "checkout"}, "window": "1m", "step": "1s", "metrics": [
            {"name": "rate", "query": RATE.format(track="canary"), "role": "slo", "stableQuery": stable},
            {"name": "queue", "query": 'sum(queue_depth{service="checkout",track="canary"})'},
        ]}
    )  # fmt: skip


def fetch(url: str, spec: CorrelationPolicySpec, seconds: float = 10.0) -> MetricWindow:
    async def go() -> MetricWindow:
        async with httpx.AsyncClient() as http:
            end = math.floor(time.time())
            return await fetch_window(
                PrometheusSource(http, url, timeout_s=10), spec, end - seconds, end, 1.0
            )

    return asyncio.run(go())


@pytest.fixture(scope="module")
def rates_ready(prometheus: PrometheusServer) -> str:
    """The session's Prometheus once it holds 10 s of both tracks' rates."""

    def both() -> Any:
        got = fetch(prometheus.url, policy(RATE.format(track="stable")))
        assert got.stable is not None
        counts = np.isfinite(got.stable[:, 0]).sum(), np.isfinite(got.values[:, 0]).sum()
        return min(counts) >= 9 or None  # None: not yet (a NumPy False would count as an answer)

    wait_for(both, timeout=60, what="10 s of both tracks' request rates")
    return prometheus.url


def test_the_stable_track_comes_with_the_canary_on_one_grid(rates_ready: str) -> None:
    got = fetch(rates_ready, policy(RATE.format(track="stable")))
    assert got.stable is not None and got.stable.shape == got.values.shape
    stable = got.stable[:, 0][np.isfinite(got.stable[:, 0])]
    canary = got.values[:, 0][np.isfinite(got.values[:, 0])]
    # The generator sends stable ten times the canary's traffic (50 rps against 5 at the daily mean).
    assert np.median(stable) > 3 * np.median(canary) > 0
    assert np.isnan(got.stable[:, 1]).all()  # the signal has no stable track


def test_a_stable_track_without_data_is_no_error(rates_ready: str) -> None:
    got = fetch(rates_ready, policy(RATE.format(track="retired")))
    assert got.stable is not None and np.isnan(got.stable).all()
    assert np.isfinite(got.values[:, 0]).sum() >= 9


def test_a_refused_stable_query_names_the_stable_track(rates_ready: str) -> None:
    with pytest.raises(QueryFailed, match=r"metric rate \(stable track\): Prometheus rejected the query"):
        fetch(rates_ready, policy('sum(rate(http_requests_total{track="stable"'))
