"""Benchmarks of the analysis core, each beside what a user would otherwise call and a numpy floor.

Run: ``.venv/bin/python hack/bench_analysis.py [--repeat 7] [--markdown]``

Every figure is the median wall time of ``--repeat`` runs in this one process,
reported with its ratio to the floor measured in the same run, so that the
ratios stay meaningful on a busier or faster machine. Nothing here is asserted:
speed is measured, never tested.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from ajan.analysis.anomaly import residual_zscore, zscore_to_score
from ajan.analysis.correlation import lagged_correlation
from ajan.analysis.robust import robust_zscore


@dataclass(frozen=True)
class Timing:
    name: str
    seconds: float
    peak_bytes: int


def _measure(fn: Callable[[], object], repeat: int) -> tuple[float, int]:
    """Median wall time of ``repeat`` runs, and the peak of memory allocated during one run.

    numpy reports its buffers to tracemalloc, so the peak counts the temporaries a
    call makes (the input arrays, allocated before, are not counted). The peak is
    taken on a separate run: tracing slows Python-level code down.
    """
    fn()  # warm-up: first-call allocation and BLAS thread start-up are not what we measure
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return statistics.median(runs), peak


def bench_scoring(repeat: int, n_series: int = 10_000, n_times: int = 1_440) -> list[Timing]:
    """Robust z-score and anomaly score of every point of 10,000 series x 1,440 points."""
    rng = np.random.default_rng(0)
    baseline = rng.gamma(2.0, 1.0, (n_series, n_times))
    current = rng.gamma(2.0, 1.0, (n_series, n_times))
    loc = np.median(baseline, axis=1, keepdims=True)
    scale = np.ones((n_series, 1))

    def ajan_scoring() -> object:
        return zscore_to_score(robust_zscore(current, baseline))

    def scipy_loop() -> object:
        out = np.empty_like(current)
        for i in range(n_series):
            med = np.median(baseline[i])
            mad = stats.median_abs_deviation(baseline[i], scale="normal")
            out[i] = np.abs(current[i] - med) / mad
        return out

    def pandas_rolling() -> object:
        # What a pandas user writes: median/MAD of the baseline per column, then broadcast.
        frame = pd.DataFrame(baseline.T)
        med = frame.median()
        mad = (frame - med).abs().median() * 1.4826
        return ((pd.DataFrame(current.T) - med) / mad).abs()

    def floor_elementwise() -> object:
        return np.abs(current - loc) / scale

    def floor_median() -> object:
        return np.median(baseline, axis=1)

    return [
        _timing("ajan robust_zscore + zscore_to_score", _measure(ajan_scoring, repeat)),
        _timing(
            "per-series loop (numpy median + scipy.stats.median_abs_deviation)",
            _measure(scipy_loop, max(1, repeat // 3)),
        ),
        _timing("pandas median/MAD per column", _measure(pandas_rolling, repeat)),
        _timing(
            "floor: one np.median over the baseline (the unavoidable selection)",
            _measure(floor_median, repeat),
        ),
        _timing("floor: one elementwise pass |x - m| / s", _measure(floor_elementwise, repeat)),
    ]


def bench_detector(repeat: int, n_series: int = 1_000, n_times: int = 1_440) -> list[Timing]:
    """The full causal residual detector (forecast, trailing scale) on 1,000 x 1,440."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n_series, n_times)).cumsum(axis=1)
    return [
        _timing(
            "ajan residual_zscore (causal, adaptive), 1,000 x 1,440",
            _measure(lambda: residual_zscore(x, scale_window=1440), max(1, repeat // 2)),
        )
    ]


def bench_correlation(
    repeat: int, n_series: int = 200, n_times: int = 1_440, max_lag: int = 10
) -> list[Timing]:
    """Pearson and Spearman matrices of 200 x 1,440 at lags 0..10."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(n_series, n_times)).cumsum(axis=1)

    def pandas_lags(method: str) -> Callable[[], object]:
        def run() -> object:
            out = []
            for lag in range(max_lag + 1):
                a = pd.DataFrame(x[:, : n_times - lag].T)
                b = pd.DataFrame(x[:, lag:].T)
                out.append(pd.concat([a, b], axis=1, ignore_index=True).corr(method=method))
            return out

        return run

    def scipy_spearman_lags() -> object:
        return [stats.spearmanr(x[:, : n_times - lag], x[:, lag:], axis=1) for lag in range(max_lag + 1)]

    def floor_matmul() -> object:
        return [x[:, : n_times - lag] @ x[:, lag:].T for lag in range(max_lag + 1)]

    return [
        _timing(
            "ajan lagged_correlation pearson, lags 0..10 (both directions)",
            _measure(lambda: lagged_correlation(x, max_lag=max_lag), repeat),
        ),
        _timing(
            "ajan lagged_correlation spearman, lags 0..10 (both directions)",
            _measure(lambda: lagged_correlation(x, max_lag=max_lag, method="spearman"), repeat),
        ),
        _timing(
            "pandas DataFrame.corr pearson, per lag", _measure(pandas_lags("pearson"), max(1, repeat // 3))
        ),
        _timing(
            "pandas DataFrame.corr spearman, per lag", _measure(pandas_lags("spearman"), max(1, repeat // 3))
        ),
        _timing("scipy.stats.spearmanr, per lag", _measure(scipy_spearman_lags, max(1, repeat // 3))),
        _timing("floor: raw numpy matmul (200x1440 @ 1440x200) x 11 lags", _measure(floor_matmul, repeat)),
    ]


def _timing(name: str, measured: tuple[float, int]) -> Timing:
    return Timing(name, measured[0], measured[1])


def _table(title: str, timings: list[Timing], floor: str, input_bytes: int) -> str:
    ref = next(t.seconds for t in timings if t.name.startswith(floor))
    lines = [
        f"### {title}",
        "",
        "| what | median ms | x floor | peak MiB allocated | x input size |",
        "|---|---:|---:|---:|---:|",
    ]
    for t in timings:
        lines.append(
            f"| {t.name} | {t.seconds * 1e3:.1f} | {t.seconds / ref:.2f} | "
            f"{t.peak_bytes / 2**20:.0f} | {t.peak_bytes / input_bytes:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--markdown", action="store_true", help="print markdown tables")
    args = parser.parse_args()
    env = (
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"numpy {np.__version__}, pandas {pd.__version__}"
    )
    scoring = bench_scoring(args.repeat)
    detector = bench_detector(args.repeat)
    corr = bench_correlation(args.repeat)
    print(f"Environment: {env}\n")
    print("Peak memory: bytes allocated during one call (tracemalloc), against the size of its")
    print("input arrays (for scoring: the current window and the baseline together).\n")
    print(
        _table(
            "Anomaly scoring, 10,000 series x 1,440 points (baseline of the same shape)",
            scoring,
            "floor: one elementwise",
            2 * 10_000 * 1_440 * 8,
        )
    )
    print(_table("Causal adaptive detector", detector, "ajan residual", 1_000 * 1_440 * 8))
    print(
        _table(
            "Correlation matrices, 200 metrics x 1,440 points, lags 0..10",
            corr,
            "floor: raw",
            200 * 1_440 * 8,
        )
    )


if __name__ == "__main__":
    main()
