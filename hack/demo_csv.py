"""The analysis core end to end on the bundled canary sample, from CSV files.

Run: ``.venv/bin/python hack/demo_csv.py`` (or ``hack/demo.py --csv``); ``hack/demo.sh`` runs the
operator's live demo instead.

It reads samples/canary.csv against samples/canary-baseline.csv and tells what
ajan sees: when it alerts, which metrics are critical and since when, which
metric most likely caused it, which metrics lead which, what will move next,
how the latency tail shifted and which distributions drifted.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "operator"))

from ajan.analysis.anomaly import critical_anomalies, percentile_shift
from ajan.analysis.correlation import lagged_correlation, top_correlations
from ajan.analysis.detector import DEFAULT_CONFIG, detect, rank_metrics
from ajan.analysis.drift import detect_drift
from ajan.analysis.impact import predict_impact
from ajan.analysis.robust import robust_location_scale
from ajan.table import read_table

ROOT = Path(__file__).resolve().parents[1]
SLO_METRICS = ("latency_p99_seconds", "error_ratio")
DAY = 1440  # rows: the sample is sampled once a minute and starts at midnight


def main() -> None:
    table = read_table(ROOT / "samples" / "canary.csv")
    base = read_table(ROOT / "samples" / "canary-baseline.csv", columns=table.names).values
    names = table.names
    stamps = table.timestamps or tuple(str(i) for i in range(len(table.values)))
    print(f"ajan demo: {len(table.values)} rows of {', '.join(names)}; baseline {len(base)} rows\n")

    result = detect(table.values, base)
    alerts = np.flatnonzero(result.alert)
    if alerts.size == 0:
        print("No alert: the canary looks healthy.")
        return
    first = int(alerts[0])
    print(
        f"1. First alert at {stamps[first]} (score {result.score[first]:.2f}); "
        f"{alerts.size} alerting rows in all.\n"
    )

    location = robust_location_scale(base.T).location
    crit = critical_anomalies(
        table.values[: first + 1].T,
        result.zscores[: first + 1].T,
        names,
        location,
        threshold=DEFAULT_CONFIG.z_half / 2,
    )
    print("2. Anomalous metrics at the alert:")
    for a in crit:
        print(
            f"   {a.metric:<22} value {a.value:.4g} vs baseline {a.baseline:.4g} "
            f"(z {a.zscore:+.1f}) since {stamps[a.since]}"
        )

    window = slice(max(0, first - 60), min(len(table.values), first + 60))
    scores = rank_metrics(table.values, window.start, window.stop, base)
    order = np.argsort(-scores)
    print(
        "\n3. Most likely cause (rows around the alert): "
        + ", ".join(f"{names[i]} {scores[i]:.2f}" for i in order[:3])
    )

    recent = table.values[max(0, first - 240) : min(len(table.values), first + 120)].T
    corr = lagged_correlation(np.diff(recent, axis=1), max_lag=15, method="spearman", min_abs_r=0.3)
    print("\n4. Significant relations in the last hours (first differences, Spearman, lags up to 15 min):")
    for pair in top_correlations(corr, k=5):
        lead = f"leads by {pair.lag} min" if pair.lag else "moves with"
        print(f"   {names[pair.leader]} {lead} {names[pair.follower]} (r {pair.r:+.2f})")

    z_now = np.nan_to_num(result.zscores[first])
    slo = [names.index(m) for m in SLO_METRICS]
    impacts = predict_impact(
        z_now, lagged_correlation(recent, max_lag=15, min_abs_r=0.3), anomalous_z=3.0, targets=slo
    )
    print("\n5. Predicted impact on the SLO metrics:")
    for p in impacts:
        print(
            f"   {names[p.target]} in ~{p.lag} min via {names[p.source]}: z {p.expected_z:+.1f} "
            f"[{p.low_z:+.1f}, {p.high_z:+.1f}], breach probability {p.breach_probability:.0%}"
        )
    if not impacts:
        print("   none credible yet")

    lat = names.index("latency_p99_seconds")
    tail = percentile_shift(table.values[first:, lat][None], base[:, lat][None])
    print(
        f"\n6. Latency tail since the alert: p95 {tail.current[0, 0]:.3f}s vs {tail.baseline[0, 0]:.3f}s, "
        f"p99 {tail.current[1, 0]:.3f}s vs {tail.baseline[1, 0]:.3f}s; "
        f"{tail.exceedance[1, 0]:.0%} of points above the baseline p99 (p = {tail.pvalue[1, 0]:.1e})"
    )

    # Compare with the same hours of the baseline days: traffic has a daily shape, and
    # an afternoon against a whole day would "drift" every day at 3 pm.
    same_hours = np.arange(len(base)) % DAY >= first % DAY
    drift = detect_drift(table.values[first:].T, base[same_hours].T)
    drifted = [f"{names[i]} (PSI {drift.psi[i]:.2f})" for i in np.flatnonzero(drift.drifted)]
    print(
        f"\n7. Drifted since the alert (against the same hours of the baseline days): "
        f"{', '.join(drifted) or 'nothing'}"
    )


if __name__ == "__main__":
    main()
