"""Prometheus as a metric source, behind the `MetricSource` protocol.

Shaped like Flagger's metric providers (``RunQuery``/``IsOnline``): the backend is a small
protocol, and `PrometheusSource` takes an injected ``httpx.AsyncClient`` so that tests hand it a
real Prometheus or a faulty server, and the operator shares one connection pool across all its
evaluations.

Every failure is one of the `MetricSourceError` subclasses below, or `ajan.errors.InsufficientData`
(no series, too few points); each carries the ``reason`` that the policy's Degraded condition will
show (CamelCase, as Kubernetes condition reasons are).

Concurrency: many evaluations run on one event loop. Nothing here blocks or takes a lock; each
request has its own deadline (`PrometheusSource.timeout_s`, enforced both per network operation by
httpx and over the whole request by ``asyncio.timeout``), so a hanging server costs only the
queries sent to it. The injected client's connection limits must exceed the number of concurrent
queries, or waiting for a pooled connection counts against a query's own deadline.

Example
-------
>>> async def p95(base_url: str) -> float:  # doctest: +SKIP
...     async with httpx.AsyncClient() as http:
...         source = PrometheusSource(http, base_url)
...         result = await source.query_range("histogram_quantile(0.95, ...)", t - 600, t, 15)
...         return float(np.nanmax(result.values))
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Final, Protocol, runtime_checkable

import httpx
import numpy as np
import numpy.typing as npt

from ajan import tracing
from ajan.errors import DataError, InsufficientData

#: Default deadline of one request, in seconds: well under a typical analysis interval (30 s+).
DEFAULT_TIMEOUT_S: Final = 10.0
#: Prometheus's own cap on points per series in a range query.
MAX_POINTS: Final = 11_000
#: The most of an answer that is read. One series of MAX_POINTS points is about half a MiB of JSON;
#: an answer this large holds many series (a query that forgot to aggregate over 10,000 pods), and
#: reading and parsing all of it would cost the operator hundreds of MiB for a query it must refuse.
MAX_ANSWER_BYTES: Final = 8 * 2**20


class MetricSourceError(DataError):
    """A metric source failed to answer usefully. ``reason`` is the Degraded condition's reason."""

    reason: ClassVar[str] = "MetricSourceError"


class PrometheusUnavailable(MetricSourceError):  # noqa: N818 (named as the condition reasons they map to)
    """Prometheus could not be reached: connection refused, DNS failure, timeout, gateway error."""

    reason: ClassVar[str] = "PrometheusUnavailable"


class QueryTimedOut(PrometheusUnavailable):
    """Prometheus took longer than the query timeout to answer (hung, or overloaded)."""


class QueryFailed(MetricSourceError):  # noqa: N818 (named as the condition reasons they map to)
    """Prometheus answered with an error (bad PromQL, execution error); ``error_type`` is its errorType."""

    reason: ClassVar[str] = "QueryFailed"

    def __init__(
        self,
        message: str,
        *,
        query: str | None = None,
        status_code: int | None = None,
        error_type: str | None = None,
    ) -> None:
        super().__init__(message, query=query)
        self.status_code = status_code
        self.error_type = error_type


class AmbiguousResult(QueryFailed):
    """The query returned more than one series; a policy's query must return exactly one."""


class MalformedResponse(QueryFailed):
    """The answer was not Prometheus's API JSON (a proxy's page, a truncated body, a wrong shape)."""


@dataclass(frozen=True)
class RangeResult:
    """One series on the requested step grid.

    ``timestamps`` are seconds since the epoch, shape (n,), ``start + k * step``; ``values`` has the
    same shape, NaN where Prometheus returned no point (a gap) or a non-finite value ("NaN", "+Inf",
    "-Inf", counted in ``non_finite``: e.g. `histogram_quantile` over an empty window, or a
    quantile in the +Inf bucket). A frozen dataclass rather than a pydantic model: it holds numpy
    arrays, which pydantic would copy or refuse, and it is built only here from validated input.
    """

    timestamps: npt.NDArray[np.float64]
    values: npt.NDArray[np.float64]
    labels: Mapping[str, str] = field(default_factory=dict)
    non_finite: int = 0

    @property
    def finite_points(self) -> int:
        """How many grid points hold a finite value."""
        return int(np.count_nonzero(np.isfinite(self.values)))


@runtime_checkable
class MetricSource(Protocol):
    """A backend that answers range queries (Flagger's ``RunQuery``/``IsOnline``)."""

    async def query_range(
        self, query: str, start: float, end: float, step: float, *, min_points: int = 1
    ) -> RangeResult:
        """One series of ``query`` on the grid ``start, start + step, ..., <= end`` (epoch seconds).

        Raises a `MetricSourceError` subclass when there is no usable answer, including fewer than
        ``min_points`` finite points.
        """
        ...

    async def is_online(self) -> bool:
        """Whether the backend answers a trivial query now. Never raises."""
        ...


def _grid(start: float, end: float, step: float) -> npt.NDArray[np.float64]:
    n = math.floor((end - start) / step + 1e-9) + 1
    return start + np.arange(n, dtype=np.float64) * step


def _parse_value(raw: object) -> float:
    # Prometheus writes every value as a string ("NaN" and "+Inf" too, which float() reads): a number
    # in its place means the answer is not Prometheus's.
    if not isinstance(raw, str):
        raise ValueError(f"sample value {raw!r} is not a string")
    value = float(raw)
    return value if math.isfinite(value) else math.nan


class PrometheusSource:
    """`MetricSource` over Prometheus's HTTP API (``/api/v1/query_range``, ``/api/v1/query``).

    Parameters
    ----------
    client
        The shared ``httpx.AsyncClient``: its pool, TLS and auth settings are the caller's.
    base_url
        Prometheus's root URL, e.g. ``http://prometheus.monitoring:9090`` (a path prefix is kept).
    timeout_s
        Deadline of one request, in seconds, from sending to the parsed answer.
    """

    def __init__(
        self, client: httpx.AsyncClient, base_url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self._client = client
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s

    async def _post(self, path: str, form: dict[str, str], query: str) -> dict[str, object]:
        """POST a form (long PromQL does not fit a URL) and return the API's ``data`` object."""
        url = f"{self.base_url}{path}"
        try:
            async with (
                asyncio.timeout(self.timeout_s),
                self._client.stream(
                    "POST", url, data=form, timeout=httpx.Timeout(self.timeout_s)
                ) as response,
            ):
                body = await self._read_capped(response, query)
                status_code = response.status_code
        except (TimeoutError, httpx.TimeoutException) as err:
            raise QueryTimedOut(
                f"Prometheus at {self.base_url} timed out after {self.timeout_s:g}s", query=query
            ) from err
        except httpx.TransportError as err:
            # ConnectError covers refused connections and DNS failures; the rest are broken connections.
            raise PrometheusUnavailable(
                f"Prometheus at {self.base_url} is unreachable: {type(err).__name__}: {err or 'no detail'}",
                query=query,
            ) from err
        return self._decode(status_code, body, query)

    @staticmethod
    async def _read_capped(response: httpx.Response, query: str) -> bytes:
        """The answer's body, or `AmbiguousResult` as soon as it passes :data:`MAX_ANSWER_BYTES`."""
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > MAX_ANSWER_BYTES:
                raise AmbiguousResult(
                    f"Prometheus's answer passed {MAX_ANSWER_BYTES // 2**20} MiB and was not read further: "
                    f"a policy's query must return one series (aggregate it): {query}",
                    query=query,
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def _decode(self, status_code: int, body: bytes, query: str) -> dict[str, object]:
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            payload = None
        if status_code >= 400:
            if isinstance(payload, dict) and payload.get("status") == "error":
                error_type = str(payload.get("errorType", "unknown"))
                raise QueryFailed(
                    f"Prometheus rejected the query ({status_code} {error_type}): {payload.get('error', '')}",
                    query=query,
                    status_code=status_code,
                    error_type=error_type,
                )
            snippet = body[:200].decode("utf-8", "replace").strip()
            if status_code in (502, 503, 504):
                # Without Prometheus's error JSON these come from a proxy or load balancer in front of it.
                raise PrometheusUnavailable(
                    f"Prometheus at {self.base_url}: HTTP {status_code}: {snippet}", query=query
                )
            raise QueryFailed(
                f"Prometheus answered HTTP {status_code}: {snippet}", query=query, status_code=status_code
            )
        if payload is None:
            snippet = body[:80].decode("utf-8", "replace").strip()
            raise MalformedResponse(
                f"Prometheus's answer (HTTP {status_code}) is not JSON: {snippet!r}",
                query=query,
                status_code=status_code,
            )
        if (
            not isinstance(payload, dict)
            or payload.get("status") != "success"
            or not isinstance(payload.get("data"), dict)
        ):
            raise MalformedResponse(
                "Prometheus's answer is not an API response (expected status 'success' and a data object)",
                query=query,
                status_code=status_code,
            )
        data: dict[str, object] = payload["data"]
        return data

    async def query_range(
        self, query: str, start: float, end: float, step: float, *, min_points: int = 1
    ) -> RangeResult:
        """One series of ``query`` on the grid ``start + k * step <= end`` (epoch seconds).

        Raises `PrometheusUnavailable`, `QueryFailed`, `AmbiguousResult` (more than one series),
        `MalformedResponse`, or `InsufficientData` (no series, or fewer than ``min_points`` finite
        points, so an all-NaN series is insufficient too).
        """
        if (
            not (math.isfinite(start) and math.isfinite(end) and math.isfinite(step))
            or step <= 0
            or end < start
        ):
            raise ValueError(f"bad range: start={start}, end={end}, step={step}")
        grid = _grid(start, end, step)
        if len(grid) > MAX_POINTS:
            raise ValueError(
                f"{len(grid)} points exceed Prometheus's limit of {MAX_POINTS}; use a larger step"
            )
        if min_points > len(grid):
            raise ValueError(f"min_points={min_points} exceeds the {len(grid)} points of the grid")
        form = {
            "query": query,
            "start": repr(float(start)),
            "end": repr(float(end)),
            "step": repr(float(step)),
        }
        data = await self._post("/api/v1/query_range", form, query)

        if data.get("resultType") != "matrix" or not isinstance(data.get("result"), list):
            raise MalformedResponse(
                f"expected a matrix result, got resultType {data.get('resultType')!r}", query=query
            )
        series = data["result"]
        assert isinstance(series, list)
        if not series:
            raise InsufficientData(f"query returned no series: {query}", query=query)
        if len(series) > 1:
            shown = ", ".join(
                json.dumps(s.get("metric", {}), sort_keys=True) for s in series[:3] if isinstance(s, dict)
            )
            raise AmbiguousResult(
                f"query returned {len(series)} series, expected exactly one (aggregate it): {shown}"
                + (" ..." if len(series) > 3 else ""),
                query=query,
            )
        return self._to_grid(series[0], grid, start, step, query, min_points)

    def _to_grid(
        self,
        item: object,
        grid: npt.NDArray[np.float64],
        start: float,
        step: float,
        query: str,
        min_points: int,
    ) -> RangeResult:
        if not isinstance(item, dict) or not isinstance(item.get("values"), list):
            raise MalformedResponse("a series in the answer has no 'values' list", query=query)
        labels = item.get("metric", {})
        if not isinstance(labels, dict):
            raise MalformedResponse("a series' 'metric' is not an object", query=query)
        values = np.full(len(grid), np.nan)
        non_finite = 0
        for point in item["values"]:
            try:
                ts_raw, value_raw = point
                ts = float(ts_raw)
                value = _parse_value(value_raw)
            except (TypeError, ValueError) as err:
                raise MalformedResponse(f"bad sample {point!r}: {err}", query=query) from err
            # Prometheus evaluates exactly at start + k * step; rounding absorbs its millisecond precision.
            index = round((ts - start) / step)
            if not 0 <= index < len(grid) or abs(grid[index] - ts) > min(step / 2, 0.001 + 1e-9 * abs(ts)):
                raise MalformedResponse(f"sample at {ts} is off the requested step grid", query=query)
            if math.isnan(value):
                non_finite += 1
            values[index] = value
        result = RangeResult(
            timestamps=grid,
            values=values,
            labels={str(k): str(v) for k, v in labels.items()},
            non_finite=non_finite,
        )
        if result.finite_points < min_points:
            raise InsufficientData(
                f"query returned {result.finite_points} finite points of {len(grid)}, fewer than the "
                f"{min_points} required ({non_finite} were NaN or infinite): {query}",
                query=query,
            )
        return result

    async def is_online(self) -> bool:
        """Whether Prometheus evaluates ``vector(1)`` to 1 now (Flagger's ``IsOnline``). Never raises."""
        try:
            data = await self._post("/api/v1/query", {"query": "vector(1)"}, "vector(1)")
        except MetricSourceError:
            return False
        result = data.get("result")
        try:
            return bool(isinstance(result, list) and len(result) == 1 and float(result[0]["value"][1]) == 1.0)
        except (KeyError, IndexError, TypeError, ValueError):
            return False


class ThrottledSource:
    """A `MetricSource` that holds one of a Prometheus's query slots while it waits for an answer,
    and that stops asking a Prometheus that has stopped answering.

    One slow Prometheus then fills its own slots only: policies on other servers are not starved.
    A hung one would still hold every slot for a whole timeout per query, and the policies queued
    behind the slots would go on showing their last good status for minutes (measured: of a hundred
    policies, 8 Degraded after a minute of a hung Prometheus). So when a query times out and no
    other query was answered since it was sent (one heavy query timing out on a Prometheus that
    answers the rest is that query's problem only), for one more timeout's length every query to
    that Prometheus fails at once with the same error, and so does one that was waiting for a slot;
    then queries are sent again. A refused connection fails fast by itself and opens no such pause:
    a restarted Prometheus is asked again at once.
    """

    def __init__(
        self,
        source: PrometheusSource,
        slots: asyncio.Semaphore,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._slots = slots
        self._clock = clock
        #: Until when queries fail at once, and the timeout that started the pause.
        self._paused: tuple[float, QueryTimedOut] | None = None
        self._answered_at = -math.inf

    def _refuse_while_paused(self, query: str) -> None:
        if self._paused is None:
            return
        until, cause = self._paused
        left = until - self._clock()
        if left <= 0:
            self._paused = None
            return
        raise QueryTimedOut(f"{cause.message}; not asked again for {left:.0f}s", query=query)

    async def query_range(
        self, query: str, start: float, end: float, step: float, *, min_points: int = 1
    ) -> RangeResult:
        # Waiting for a slot is part of the span: a saturated Prometheus shows as slow queries.
        with tracing.span("ajan.query", query=query, range_seconds=end - start, step_seconds=step) as span:
            self._refuse_while_paused(query)
            async with self._slots:
                self._refuse_while_paused(query)  # it may have timed out while this one waited
                sent = self._clock()
                try:
                    result = await self._source.query_range(query, start, end, step, min_points=min_points)
                except QueryTimedOut as err:
                    if self._answered_at < sent:
                        self._paused = (self._clock() + self._source.timeout_s, err)
                    raise
                except PrometheusUnavailable:
                    raise
                except DataError:
                    self._answered_at = self._clock()  # an answer, if not a useful one: it is alive
                    raise
                self._answered_at = self._clock()
            span.set_attribute("points", len(result.timestamps))
            return result

    async def is_online(self) -> bool:
        return await self._source.is_online()
