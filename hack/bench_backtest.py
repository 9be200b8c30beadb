"""Benchmark: replay speed of `ajan backtest` for a 38-metric policy, beside one operator evaluation.

    nice -n 10 .venv/bin/python hack/bench_backtest.py [--hours 24] [--interval 60] [--repeats 30] \
        [--workers 2]

The history is SMD's machine-1-2 (38 server metrics, one-minute rows, train then test), replayed
with the generated policy of ``python -m ajan.evaluation.replay`` but evaluated every
``--interval`` seconds (default: every row, as a 1-minute ``spec.interval`` would). The reference,
in the same process, is the operator's own step (:func:`ajan.services.step.evaluate`) on one
window of the same policy, healthy and during an incident (a frozen baseline makes the window
longer): the replay's cost per evaluation over that reference says what replaying adds to the
step itself. The replay runs twice, in one process and with ``--workers`` processes assessing the
quiet windows ahead (``ajan backtest --workers``), and must give the same result. A week of
one-minute evaluations is extrapolated from the measured rate (``--hours 168`` measures it);
issue 16's goal is <= 60 s for it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "operator"))

from ajan.backtest import replay, window_at
from ajan.evaluation import replay as datasets
from ajan.models import CorrelationPolicy, Incident
from ajan.services.assessment import MetricWindow
from ajan.services.severity import load_classifier
from ajan.services.step import evaluate
from ajan.services.window import window_bounds

WEEK_S = 7 * 86400.0
GOAL_WEEK_S = 60.0


def step_seconds(policy: CorrelationPolicy, history: MetricWindow, at: float, incident: Incident | None,
                 repeats: int) -> float:  # fmt: skip
    """Median wall time of the operator's step on the window ending at ``at``."""
    classifier, _ = load_classifier()
    spec = policy.spec
    opened = incident.opened_at.timestamp() if incident else None
    bounds = window_bounds(spec, at, opened)
    window = window_at(spec, history, at, opened)
    stamp = datetime.fromtimestamp(at, tz=UTC)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        evaluate("bench", spec, window, bounds.current_from, incident, stamp, classifier)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hours", type=float, default=24.0, help="hours replayed (default 24)")
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between evaluations")
    parser.add_argument("--repeats", type=int, default=30, help="repeats of the reference step (default 30)")
    parser.add_argument("--workers", type=int, default=2, help="processes of the second replay (default 2)")
    args = parser.parse_args()

    series = datasets.smd_series(machines=["machine-1-2"])[0]
    doc = datasets.policy_for(series)
    doc["spec"]["interval"] = f"{args.interval:g}s"  # type: ignore[index]
    policy = CorrelationPolicy.model_validate(doc)
    history = MetricWindow(series.names, series.timestamps, series.values, series.step_s)
    start = series.start
    end = min(start + args.hours * 3600.0, float(series.timestamps[-1]))

    healthy = step_seconds(policy, history, start, None, args.repeats)
    # An incident opened 8 hours before: the window reaches back to the frozen baseline.
    opened = datetime.fromtimestamp(start - 8 * 3600.0, tz=UTC)
    incident = Incident(id="bench", opened_at=opened, action="pause", plan="bench-pause", peak_confidence=0.8)
    frozen = step_seconds(policy, history, start, incident, max(3, args.repeats // 3))

    runs = {}
    for workers in sorted({1, args.workers}):
        started = time.perf_counter()
        result = replay(policy, history, start, end, workers=workers)
        runs[workers] = (time.perf_counter() - started, result)
    if runs[1][1] != runs[args.workers][1]:
        print("the replays with and without workers differ", file=sys.stderr)
        return 1
    evaluations = result.summary.evaluations
    share = result.summary.time_in_incidents_s / (end - start)

    print(f"policy: {len(series.names)} metrics, window {doc['spec']['window']}, step {series.step_s:g}s, "  # type: ignore[index]
          f"interval {args.interval:g}s; history {series.dataset}/{series.name}")  # fmt: skip
    print("| measure | seconds | x healthy step |")
    print("|---|---:|---:|")
    print(f"| operator step, healthy window (reference) | {healthy:.4f} | 1.00 |")
    print(f"| operator step, incident opened 8 h before | {frozen:.4f} | {frozen / healthy:.2f} |")
    for workers, (seconds, _) in runs.items():
        per_eval = seconds / evaluations
        what = f"{workers} process(es), per evaluation ({evaluations} in {args.hours:g} h"
        what += f", {share:.0%} in incidents)"
        print(f"| replay, {what} | {per_eval:.4f} | {per_eval / healthy:.2f} |")
    print()
    for workers, (seconds, _) in runs.items():
        week = WEEK_S / args.interval * seconds / evaluations
        print(f"replay, {workers} process(es): {evaluations / seconds:.1f} evaluations/s in {seconds:.1f} s; "
              f"a week at this interval: about {week:.0f} s (goal <= {GOAL_WEEK_S:g} s)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
