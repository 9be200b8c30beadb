"""The metrics generator's past scrapes as an OpenMetrics file, to backfill a Prometheus with.

``promtool tsdb create-blocks-from openmetrics FILE DATA_DIR`` turns the file into TSDB blocks, so a
Prometheus started on ``DATA_DIR`` already holds minutes or hours of history instead of waiting for
live scrapes. The file holds what Prometheus would have stored had it scraped a `Simulator` every
``interval`` seconds since its origin: every sample with its timestamp, and the target labels
(``job``, ``instance``) Prometheus adds at scrape time, so that history and live scrapes are one
series each.

The samples come from the very `Simulator` that then serves the live scrapes (`Simulator.collect`
with ``at=``), so every counter goes on exactly from its last value in the history: no reset at the
boundary, and `rate()` across it is as smooth as anywhere else.

Names, help texts, types and label sets are those of the families `Simulator.collect` gives
``prometheus_client`` (so a counter family ``http_requests`` has samples ``http_requests_total``),
values are written so that they parse back to the same floats, and timestamps lie on a
whole-millisecond grid, which Prometheus stores exactly. One liberty with OpenMetrics 1.0: histogram
buckets and counts are the simulator's expected (fractional) request counts, not integers, as in the
live exposition; Prometheus's parser, which promtool uses, accepts them (``prometheus_client``'s
strict OpenMetrics parser would not).

Everything is built in memory: meant for minutes to hours of history (15 minutes at one scrape a
second is about 40,000 samples, 6 MB of text and a second of work), not for days.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ajan.simulate.generator import Simulator


def scrape_times_ms(end: float, seconds: float, interval: float) -> list[int]:
    """Scrape times over ``[end - seconds, end)`` every ``interval`` seconds, in epoch milliseconds.

    Multiples of the interval (whole seconds for the default of 1 s), so the first one is a clean
    origin for the counters, and whole milliseconds, Prometheus's resolution, so every timestamp is
    stored as written.

    Raises
    ------
    ValueError
        If ``seconds`` is negative or ``interval`` is below one millisecond.
    """
    step_ms = round(interval * 1000)
    if step_ms < 1 or not math.isfinite(interval):
        raise ValueError(f"scrape interval must be at least 1 ms, got {interval!r} s")
    if seconds < 0 or not math.isfinite(seconds):
        raise ValueError(f"history must be a finite number of seconds >= 0, got {seconds!r}")
    first = math.ceil((end - seconds) * 1000 / step_ms) * step_ms
    return list(range(first, math.ceil(end * 1000), step_ms))


def _timestamp(ms: int) -> str:
    # From integers: a float's repr could come out a millisecond off after Prometheus parses it.
    return f"{ms // 1000}.{ms % 1000:03d}"


def _value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    # repr round-trips: Prometheus stores the very float the simulator computed.
    return repr(value)


def _escape(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _series_key(labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    # A histogram's series is its label set without le: its buckets, count and sum share each point.
    return tuple(sorted((k, v) for k, v in labels.items() if k != "le"))


def openmetrics_history(simulator: Simulator, times_ms: Sequence[int], *, job: str, instance: str) -> bytes:
    """The simulator's scrapes at every time in ``times_ms`` (increasing) as OpenMetrics text.

    Lines are grouped as OpenMetrics wants them: by family, then by series, then by time; the file
    ends with ``# EOF``. Consumes the simulator's past: its counters end up integrated to the last
    time, so it must not have served a scrape after ``times_ms[0]`` yet.

    Written by hand rather than with ``prometheus_client``'s OpenMetrics writer, which escapes every
    label value of every line character by character: half a second per 15 minutes of history,
    where rendering each series' name and labels once costs nothing.
    """
    headers: dict[str, str] = {}
    # family name -> series key -> lines, in time order
    lines: dict[str, dict[tuple[tuple[str, str], ...], list[str]]] = {}
    prefixes: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}
    for ms in times_ms:
        timestamp = _timestamp(ms)
        for family in simulator.collect(at=ms / 1000):
            if family.name not in headers:
                headers[family.name] = (
                    f"# HELP {family.name} {_escape(family.documentation)}\n"
                    f"# TYPE {family.name} {family.type}\n"
                )
                lines[family.name] = {}
            by_series = lines[family.name]
            for sample in family.samples:
                labels = {**sample.labels, "job": job, "instance": instance}
                key = (sample.name, tuple(sorted(labels.items())))
                prefix = prefixes.get(key)
                if prefix is None:
                    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in key[1])
                    prefix = prefixes[key] = f"{sample.name}{{{inner}}} "
                by_series.setdefault(_series_key(sample.labels), []).append(
                    f"{prefix}{_value(sample.value)} {timestamp}\n"
                )
    out: list[str] = []
    for name, header in headers.items():
        out.append(header)
        for series in lines[name].values():
            out.extend(series)
    out.append("# EOF\n")
    return "".join(out).encode()


def write_history(
    path: Path, simulator: Simulator, times_ms: Sequence[int], *, job: str, instance: str
) -> None:
    """Write `openmetrics_history` to ``path``, whole or not at all (a temporary file renamed)."""
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(openmetrics_history(simulator, times_ms, job=job, instance=instance))
    partial.replace(path)
