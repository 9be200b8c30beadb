"""Regenerate samples/: a canary's metrics, three normal days and a day with a slow incident.

Run: ``.venv/bin/python hack/make_sample.py`` (deterministic: seeded).

The incident is the kind single-metric thresholds catch late: a memory leak
starts at 14:00, GC pressure lifts CPU, and p99 latency and the error ratio follow
minutes later, each metric moving only moderately at first.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
STEP = timedelta(minutes=1)
COLUMNS = ("requests_per_second", "latency_p99_seconds", "error_ratio", "cpu_cores", "memory_bytes")


def _day_shape(minutes: np.ndarray) -> np.ndarray:
    # Traffic peaks mid-afternoon and bottoms out at night, like most user-facing services.
    return 1.0 + 0.45 * np.sin(2 * np.pi * (minutes / 1440.0 - 0.375))


def generate(start: datetime, n: int, rng: np.random.Generator, leak_at: int | None) -> np.ndarray:
    minute = (np.arange(n) + start.hour * 60 + start.minute) % 1440
    rps = 220.0 * _day_shape(minute) * rng.lognormal(0, 0.05, n)
    cpu = 0.35 + rps / 400.0 + rng.normal(0, 0.03, n)
    memory = 512e6 + rng.normal(0, 4e6, n)
    latency = 0.180 + 0.0002 * rps + rng.gamma(2.0, 0.01, n)
    errors = rng.beta(1.5, 1500, n)
    if leak_at is not None:
        since = np.clip(np.arange(n) - leak_at, 0, None)
        memory += 1.2e6 * since  # ~70 MB an hour
        pressure = np.clip((memory - 600e6) / 300e6, 0, None)
        cpu += 0.5 * pressure
        lagged = np.concatenate([np.zeros(8), pressure[:-8]])  # latency follows CPU by ~8 min
        latency += 0.25 * lagged
        errors += 0.01 * np.clip(lagged - 0.3, 0, None)
    return np.column_stack([rps, latency, errors, cpu, memory])


def write(path: Path, start: datetime, rows: np.ndarray) -> None:
    with path.open("w", newline="") as handle:
        out = csv.writer(handle, lineterminator="\n")
        out.writerow(("timestamp", *COLUMNS))
        for i, row in enumerate(rows):
            ts = (start + i * STEP).strftime("%Y-%m-%dT%H:%M:%SZ")
            out.writerow((ts, *(f"{v:.6g}" for v in row)))


def main() -> None:
    rng = np.random.default_rng(20261123)
    base_start = datetime(2026, 11, 20, tzinfo=UTC)
    write(ROOT / "samples" / "canary-baseline.csv", base_start, generate(base_start, 3 * 1440, rng, None))
    day = base_start + timedelta(days=3)
    write(ROOT / "samples" / "canary.csv", day, generate(day, 1440, rng, leak_at=14 * 60))


if __name__ == "__main__":
    main()
