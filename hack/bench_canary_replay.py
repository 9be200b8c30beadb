"""Benchmark: ajan's decisions on generated canaries, replayed offline in minutes (no stack).

    .venv/bin/python hack/bench_canary_replay.py [--seeds 11,12,13] [--jobs 2]

The generator's canary and stable tracks (`ajan.simulate.generator`, one-second ticks) become the
answers of the canary policy's queries, as Prometheus would give them: p99 is histogram_quantile's
linear interpolation inside the generator's buckets over a 15 s window of its per-second counts,
the error ratio the errors over the requests of that window, the queue and memory the gauges. That
CSV is replayed by ``ajan backtest --history`` under the demo's policy (`canary_policy` with p99's
SLO at 0.5 s, horizon 20 s, default ladder), alone and with p99 and the error ratio judged against
the stable track. Not emulated: scrape jitter, rate()'s extrapolation, a real Prometheus's gaps.

Scenarios, each for every seed: healthy canaries at six times of the simulated day, four of them
where p99 sits at the 0.25 s bucket bound (the nuisance of issue 14); the leading indicator, the
latency creep and the error burst of ``tests/argo/bench_leadtime.py`` at midnight and at 08:00,
each starting after four minutes of healthy data. Printed: false plans and false pauses on the
healthy runs; on the faults, runs acted on before the breach (p99 >= 0.5 s or errors >= 5 %) and
the median lead, in seconds.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import yaml
from scipy.stats import norm

ROOT: Final = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "operator"))

from ajan.simulate.generator import BUCKETS, LATENCY_SIGMA, FaultSpec, GeneratorConfig, Simulator  # noqa: E402
from ajan.simulate.stack import canary_policy, slo_metrics  # noqa: E402

SLO_P99_S: Final = 0.5
SLO_ERROR_RATIO: Final = 0.05
#: Healthy seconds before a fault: the 3-minute window is full and a minute of quiet follows.
QUIET_S: Final = 240
#: Seconds replayed per run.
SPAN_S: Final = 600
RATE_WINDOW_S: Final = 15
ORIGIN: Final = 1.7e9
HEALTHY_PHASES: Final = (0.0, 0.2, 0.205, 0.21, 0.22, 1 / 3)
BOUNDARY_PHASES: Final = (0.2, 0.205, 0.21, 0.22)
FAULT_PHASES: Final = (0.0, 1 / 3)
FAULTS: Final[dict[str, dict[str, Any]]] = {
    "leading-indicator": {"kind": "leading_indicator", "rate": 0.02, "lead_s": 30.0},
    "latency-creep": {"kind": "latency_creep", "rate": 0.005},
    "error-burst": {"kind": "error_burst", "rate": 0.2},
}


@dataclass(frozen=True)
class Run:
    scenario: str
    phase: float
    seed: int
    stable: bool


def p99(counts: np.ndarray, total: float) -> float:
    """histogram_quantile(0.99) of cumulative bucket ``counts`` (without +Inf) over ``total``."""
    rank = 0.99 * total
    k = int(np.searchsorted(counts, rank))
    if k >= len(BUCKETS):
        return BUCKETS[-1]
    low, below = (BUCKETS[k - 1], counts[k - 1]) if k > 0 else (0.0, 0.0)
    return float(low + (BUCKETS[k] - low) * (rank - below) / (counts[k] - below))


def answers(run: Run) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Times (epoch s) and each column of the replayed CSV."""
    start = ORIGIN + run.phase * 86400.0
    clock = [start + QUIET_S]
    config = GeneratorConfig(seed=run.seed, day_seconds=86400.0, day_origin_s=ORIGIN)
    simulator = Simulator(config, clock=lambda: clock[0], origin=start)
    if run.scenario in FAULTS:
        simulator.add_fault(FaultSpec(**{"duration_s": 900.0, **FAULTS[run.scenario]}))
    ticks = start + np.arange(SPAN_S + RATE_WINDOW_S, dtype=float)
    columns: dict[str, np.ndarray] = {}
    for track, suffix in (("canary", ""), ("stable", "@stable")):
        samples = [simulator.instant(track, t) for t in ticks]  # type: ignore[arg-type]
        rps = np.array([s.rps for s in samples])
        median = np.array([s.latency_median_s for s in samples])
        cumulative = rps[:, None] * norm.cdf(
            (np.log(BUCKETS)[None, :] - np.log(median)[:, None]) / LATENCY_SIGMA
        )
        errors = rps * np.array([s.error_ratio for s in samples])
        windows = range(RATE_WINDOW_S, len(ticks))
        columns[f"latency-p99{suffix}"] = np.array(
            [p99(cumulative[i - RATE_WINDOW_S : i].sum(0), rps[i - RATE_WINDOW_S : i].sum()) for i in windows]
        )
        columns[f"error-ratio{suffix}"] = np.array(
            [errors[i - RATE_WINDOW_S : i].sum() / rps[i - RATE_WINDOW_S : i].sum() for i in windows]
        )
        if track == "canary":
            columns["queue-depth"] = np.array([s.queue_depth for s in samples])[RATE_WINDOW_S:]
            columns["memory"] = np.array([s.memory_bytes for s in samples])[RATE_WINDOW_S:]
    return ticks[RATE_WINDOW_S:], columns


def policy(stable: bool) -> dict[str, Any]:
    metrics = slo_metrics(SLO_P99_S)
    if stable:
        metrics = [
            {**m, "stableQuery": m["query"].replace('track="canary"', 'track="stable"')}
            if m.get("role") == "slo"
            else m
            for m in metrics
        ]
    return canary_policy("canary", metrics=metrics, remediation={"mode": "auto", "horizon": "20s"})


def replay(run: Run) -> dict[str, Any]:
    """One run: the plans ``ajan backtest`` proposes, in seconds from the fault (or its time)."""
    times, columns = answers(run)
    names = ["latency-p99", "error-ratio", "queue-depth", "memory"]
    names += ["latency-p99@stable", "error-ratio@stable"] if run.stable else []
    with tempfile.TemporaryDirectory() as tmp:
        history, spec = Path(tmp) / "history.csv", Path(tmp) / "policy.yaml"
        with history.open("w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["timestamp", *names])
            out.writerows([int(t), *(repr(float(columns[n][i])) for n in names)] for i, t in enumerate(times))
        spec.write_text(yaml.safe_dump(policy(run.stable)))
        command = [sys.executable, "-m", "ajan", "backtest", "--policy", str(spec), "--history", str(history)]
        # This checkout's ajan, whatever the virtualenv has installed: so that a worktree of another
        # commit measures that commit.
        env = {**os.environ, "PYTHONPATH": str(ROOT / "operator")}
        done = subprocess.run(
            [*command, "--format", "json"], capture_output=True, text=True, check=True, cwd=ROOT, env=env
        )
    fault_at = times[0] - RATE_WINDOW_S + QUIET_S

    def since(stamp: str) -> float:
        return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() - fault_at

    plans = json.loads(done.stdout)["plans"]
    acted = [since(p["time"]) for p in plans if p["action"] in ("pause", "abort", "rollback")]
    crossed = np.flatnonzero(
        (columns["latency-p99"] >= SLO_P99_S) | (columns["error-ratio"] >= SLO_ERROR_RATIO)
    )
    return {
        **run.__dict__,
        "plans": len(plans),
        "actions": len(acted),
        "acted_s": min(acted, default=None),
        "breach_s": float(times[crossed[0]] - fault_at) if crossed.size else None,
    }


def false_alarms(runs: Sequence[dict[str, Any]]) -> str:
    return f"{sum(r['plans'] for r in runs)} / {sum(r['actions'] for r in runs)} ({len(runs)} runs)"


def table(records: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| judged | healthy runs: plans / pauses or aborts | at the bucket bound | "
        + " | ".join(f"{name}: before breach, median lead (s)" for name in FAULTS)
        + " |",
        "|---|---|---|" + "---|" * len(FAULTS),
    ]
    for stable in (False, True):
        mine = [r for r in records if r["stable"] == stable]
        healthy = [r for r in mine if r["scenario"] == "healthy"]
        bound = [r for r in healthy if r["phase"] in BOUNDARY_PHASES]
        cells = ["against stable" if stable else "alone", false_alarms(healthy), false_alarms(bound)]
        for name in FAULTS:
            runs = [r for r in mine if r["scenario"] == name]
            before = [
                r
                for r in runs
                if r["acted_s"] is not None and r["breach_s"] is not None and r["acted_s"] < r["breach_s"]
            ]
            leads = [r["breach_s"] - r["acted_s"] for r in before]
            lead = f"{statistics.median(leads):.0f}" if leads else "-"
            cells.append(f"{len(before)}/{len(runs)}, {lead}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", default="11,12,13", help="the generator's seeds, comma-separated")
    parser.add_argument("--jobs", type=int, default=2, help="replays at once")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = [
        Run(scenario, phase, seed, stable)
        for stable in (False, True)
        for seed in seeds
        for scenario, phases in (("healthy", HEALTHY_PHASES), *((name, FAULT_PHASES) for name in FAULTS))
        for phase in phases
    ]
    with ProcessPoolExecutor(args.jobs) as pool:
        records = list(pool.map(replay, runs))
    print(table(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
