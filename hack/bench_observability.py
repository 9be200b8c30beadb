"""Benchmark: what issue 6's instrumentation adds to one evaluation, against the assessment itself.

    nice -n 10 .venv/bin/python hack/bench_observability.py [--metrics 4,50] [--repeats 300]

Reference: `assess` (the analysis of one evaluation) on a synthetic window of N metrics, 120 rows.
Against it, in the same process: the per-evaluation metric updates (`metrics.record_evaluation`
with N anomaly scores and up to 10 correlation pairs), the evaluation's eight spans with tracing
off (no provider: the default) and on (sampled, into an in-memory exporter), and one JSON log
line with its context. Prints medians in microseconds and as a share of the assessment.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "operator"))

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

from ajan import logs, metrics, tracing
from ajan.models import CorrelationPolicySpec
from ajan.services.assessment import MetricWindow, assess

ROWS = 120
STEP = 30.0


def policy(n: int) -> tuple[CorrelationPolicySpec, MetricWindow]:
    """``n`` metrics (the first two SLO metrics), 5 % noise, a shift in the newest rows of two."""
    names = tuple(f"m{i}" for i in range(n))
    spec = CorrelationPolicySpec.model_validate(
        {
            "targetRef": {"name": "checkout"},
            "metrics": [
                {"name": name, "query": f"q{i}", "role": "slo" if i < 2 else "signal"}
                for i, name in enumerate(names)
            ],
        }
    )
    rng = np.random.default_rng(7)
    values = 1 + 0.05 * rng.normal(size=(ROWS, n))
    values[-20:, :2] *= 1.5
    return spec, MetricWindow(names, 1.7e9 + np.arange(ROWS, dtype=np.float64) * STEP, values, STEP)


def timed(fn: Callable[[], object], repeats: int) -> npt.NDArray[np.float64]:
    """Wall times of ``repeats`` calls in microseconds, after five warm-up calls."""
    for _ in range(5):
        fn()
    out = np.empty(repeats)
    for i in range(repeats):
        began = time.perf_counter()
        fn()
        out[i] = (time.perf_counter() - began) * 1e6
    return out


def spans() -> None:
    """The spans of one evaluation: evaluate > 4 queries, analyse, decide, act."""
    with tracing.span("ajan.evaluate", namespace="shop", policy="checkout") as root:
        for q in range(4):
            with tracing.span("ajan.query", query=f"q{q}", points=ROWS):
                pass
        with tracing.span("ajan.analyse", metrics=4):
            pass
        with tracing.span("ajan.decide", outcome="none"):
            pass
        with tracing.span("ajan.act", action="pause", dry_run=True):
            pass
        root.set_attribute("result", "evaluated")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--metrics", default="4,50", help="comma-separated policy sizes")
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args(argv)

    handler = logging.StreamHandler(open("/dev/null", "w"))  # noqa: SIM115 (lives as long as the run)
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("ajan.bench")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)

    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ALWAYS_ON)
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    print(f"`{' '.join(['hack/bench_observability.py', *(argv or sys.argv[1:])])}`\n")
    columns = ["assess µs (ref)", "record_evaluation", "spans, tracing off", "spans, sampled"]
    columns.append("JSON log line")
    print(f"| metrics | {' | '.join(columns)} |")
    print("|---|---|---|---|---|---|")
    for n in (int(x) for x in args.metrics.split(",")):
        spec, window = policy(n)
        result = assess(spec, window)
        pairs = [(c.leader, c.follower, c.r) for c in result.evidence.correlations[:10]]

        def analyse(spec: CorrelationPolicySpec = spec, window: MetricWindow = window) -> None:
            assess(spec, window)

        reference = np.median(timed(analyse, args.repeats))

        def record(result=result, pairs=pairs) -> None:  # type: ignore[no-untyped-def]
            metrics.record_evaluation(
                "shop", "bench", confidence=result.confidence, anomalous=len(result.evidence.anomalies),
                metric_scores=result.metric_scores, correlations=pairs,
            )  # fmt: skip

        def log_line() -> None:
            with logs.bind(namespace="shop", policy="bench", plan="bench-x-pause"):
                logger.info("evaluated: confidence %.2f", 0.5)

        tracing.install(None)
        off = np.median(timed(spans, args.repeats))
        tracing.install(provider)
        on = np.median(timed(spans, args.repeats))
        exporter.clear()
        tracing.install(None)
        cells = [np.median(timed(record, args.repeats)), off, on, np.median(timed(log_line, args.repeats))]
        print(
            f"| {n} | {reference:,.0f} | "
            + " | ".join(f"{c:,.1f} ({c / reference:.2%})" for c in cells)
            + " |"
        )
    metrics.forget_policy("shop", "bench")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
