"""Labelled decisions for the severity model: :func:`~ajan.services.assessment.assess` over sliding windows.

Every sample is one decision the operator could have taken: a window of ``rows`` rows ending at some
row ``e`` (exclusive) of a labelled series, assessed as the operator would (its newest
:func:`~ajan.services.assessment.current_rows` rows scored against the rest), giving the features of
:class:`ajan.services.features.DecisionFeatures`.

Labels: severity as *time to incident*
---------------------------------------
``critical`` (2)
    A labelled incident lies in the scored (newest) rows ``[e - current_rows(rows), e)``: the
    incident is happening now.
``warning`` (1)
    None in the scored rows, but one lies within one window after the window's end, in rows
    ``[e, e + rows)``: the predictive case, where pausing early is worth it.
``info`` (0)
    Neither (also when an incident lies only in the baseline part: it is over).

What counts as an incident, per dataset:

``nab``
    NAB's labelled anomaly windows (``labels/combined_windows.json``). NAB's windows are wide on
    purpose (10 % of a file shared by its anomalies, centred on each), so they begin before the
    anomaly itself: a ``critical`` window may show little yet. The single metric is the SLO metric,
    in two views (``value-up``, objective max, and ``value-down``, objective min), because NAB labels
    drops as well as rises and a policy scores only its bad direction.
``smd``
    The Server Machine Dataset's test labels (``test_label``). Of the 38 unnamed metrics, the policy
    holds :data:`SMD_SLO_METRICS` SLO metrics and :data:`SMD_SIGNALS` signals: the dimensions most
    often named responsible in ``interpretation_label`` *of the training machines only* (so the
    held-out machines do not inform the choice), the most blamed as SLO metrics. SMD has no
    latency or error metric, and those blamed most are what an incident on these machines moves;
    the rest of the 38 are left out to keep an assessment at tens of milliseconds. An anomaly
    that moves only other metrics is still labelled: label noise, reported as such.
``generator``
    Offline series from :class:`ajan.simulate.generator.Simulator` (the canary track; no server),
    one run per seed with zero to two faults of random kind, size and time. The incident is an SLO
    breach, known exactly from a fault-free twin of the same seed (the noise is a pure function of
    the seed and the tick): the canary's median latency at least :data:`LATENCY_BREACH` times its
    fault-free value, or its error ratio at least :data:`ERROR_BREACH`. A memory leak or a small
    error burst is anomalous but breaches nothing: ``info``, which the model must learn too.

Windows where ``assess`` raises :class:`~ajan.errors.InsufficientData` are skipped and
counted. The split is by *group* (NAB file, SMD machine, generator seed), never by window: within each
dataset the sorted groups are shuffled with a fixed seed and cut 70/15/15 into train, calibration and
test.

Run ``python -m ajan.evaluation.severity_data --help``; the default writes
``build/severity/severity-data.npz`` (arrays ``features``, ``labels``, ``dataset``, ``group``,
``split``, ``end_row``, and ``meta``, a JSON string with the counts and the settings).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from ajan.errors import InsufficientData
from ajan.evaluation import SHARED_DATA
from ajan.evaluation.nab import load_corpus
from ajan.evaluation.smd import available_machines, load_machine
from ajan.models import CorrelationPolicySpec
from ajan.services.assessment import MetricWindow, assess, current_rows
from ajan.services.features import FEATURE_NAMES
from ajan.simulate.generator import FaultSpec, GeneratorConfig, Simulator

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

#: Class indices of the labels, the model's output order.
CLASS_NAMES: Final[tuple[str, ...]] = ("info", "warning", "critical")
INFO: Final = 0
WARNING: Final = 1
CRITICAL: Final = 2
SPLITS: Final[tuple[str, ...]] = ("train", "calibration", "test")
#: Shares of the groups in train and calibration; test gets the rest.
SPLIT_SHARES: Final = (0.70, 0.15)
SPLIT_SEED: Final = 20261123
#: Rows per window: an hour of the default policy's 30 s step; 10 h of NAB's 5 min, 2 h of SMD's minute.
WINDOW_ROWS: Final = 120
#: Windows per dataset, spread evenly over its groups (assess costs tens of milliseconds).
WINDOWS_PER_DATASET: Final = 4000
SMD_SLO_METRICS: Final = 3
SMD_SIGNALS: Final = 5
GENERATOR_SEEDS: Final = 60
GENERATOR_ROWS: Final = 960
GENERATOR_STEP_S: Final = 30.0
LATENCY_BREACH: Final = 1.5
ERROR_BREACH: Final = 0.02
DEFAULT_OUTPUT: Final = Path(__file__).resolve().parents[3] / "build" / "severity" / "severity-data.npz"


@dataclass(frozen=True)
class Series:
    """One labelled multivariate series and the policy that watches it.

    dataset, group: where it comes from (the group is the unit of the split).
    values: shape (T, N), NaN where missing; step_s: seconds between rows.
    incident: shape (T,), True on the rows of a labelled incident (or SLO breach).
    spec: the policy (metric names, roles, objectives; window = ``WINDOW_ROWS`` steps).
    """

    dataset: str
    group: str
    values: FloatArray
    step_s: float
    incident: BoolArray
    spec: CorrelationPolicySpec


def policy_spec(
    metrics: Sequence[tuple[str, str, str]], step_s: float, rows: int = WINDOW_ROWS
) -> CorrelationPolicySpec:
    """A policy over ``metrics`` ((name, role, objective) triples) with a ``rows``-step window."""
    return CorrelationPolicySpec.model_validate(
        {
            "targetRef": {"name": "severity-data"},
            "window": f"{round(rows * step_s)}s",
            "step": f"{round(step_s)}s",
            "metrics": [
                {"name": name, "query": name, "role": role, "objective": objective}
                for name, role, objective in metrics
            ],
        }
    )


def window_label(incident: BoolArray, end: int, rows: int) -> int:
    """Severity label of the window of ``rows`` rows ending before row ``end`` (see the module docstring).

    Examples
    --------
    >>> incident = np.zeros(400, dtype=bool); incident[200:220] = True
    >>> [window_label(incident, e, 120) for e in (100, 150, 205, 300, 360)]
    [1, 1, 2, 0, 0]
    """
    scored = current_rows(rows)
    if incident[max(0, end - scored) : end].any():
        return CRITICAL
    if incident[end : end + rows].any():
        return WARNING
    return INFO


def assign_splits(groups: Sequence[str], dataset: str) -> dict[str, str]:
    """Group -> split, 70/15/15, deterministic: a seeded shuffle of the sorted groups.

    Every split gets at least one group when there are three or more.
    """
    ordered = sorted(set(groups))
    rng = np.random.default_rng([SPLIT_SEED, zlib.crc32(dataset.encode())])
    shuffled = [ordered[i] for i in rng.permutation(len(ordered))]
    n = len(shuffled)
    n_train = max(1, round(SPLIT_SHARES[0] * n))
    n_cal = max(1, round(SPLIT_SHARES[1] * n)) if n >= 3 else 0
    n_train = min(n_train, n - n_cal - (1 if n >= 3 else 0))
    out = {}
    for i, g in enumerate(shuffled):
        out[g] = SPLITS[0] if i < n_train else SPLITS[1] if i < n_train + n_cal else SPLITS[2]
    return out


# --- the datasets ------------------------------------------------------------------------------


def nab_series(root: Path) -> Iterator[Series]:
    """Every NAB file as one series (see the module docstring for the policy)."""
    for f in load_corpus(root):
        ticks = f.timestamps.astype("datetime64[s]").astype(np.int64)
        step = float(np.median(np.diff(ticks))) if ticks.size > 1 else 300.0
        spec = policy_spec([("value-up", "slo", "max"), ("value-down", "slo", "min")], step)
        values = np.column_stack([f.values, f.values])
        yield Series("nab", f.path, values, step, f.window_mask.copy(), spec)


def smd_dimensions(root: Path, machines: Sequence[str]) -> tuple[list[int], list[int]]:
    """SLO and signal columns of SMD: the most blamed in the given machines' ``interpretation_label``."""
    blamed: Counter[int] = Counter()
    for name in machines:
        for _, _, dims in load_machine(root, name).interpretation:
            blamed.update(dims)
    ranked = [d for d, _ in sorted(blamed.items(), key=lambda kv: (-kv[1], kv[0]))]
    return ranked[:SMD_SLO_METRICS], ranked[SMD_SLO_METRICS : SMD_SLO_METRICS + SMD_SIGNALS]


def smd_series(root: Path, slo: Sequence[int], signals: Sequence[int]) -> Iterator[Series]:
    """Every SMD machine's test rows as one series over the chosen dimensions."""
    dims = [*slo, *signals]
    metrics = [(f"d{d + 1}", "slo" if d in slo else "signal", "max") for d in dims]
    spec = policy_spec(metrics, 60.0)
    for name in available_machines(root):
        m = load_machine(root, name)
        yield Series("smd", m.name, m.test[:, dims].copy(), 60.0, m.labels.copy(), spec)


GENERATOR_METRICS: Final = (
    ("latency", "slo", "max"),
    ("errors", "slo", "max"),
    ("queue", "signal", "max"),
    ("memory", "signal", "max"),
    ("cpu", "signal", "max"),
    ("throughput", "signal", "min"),
)


def _random_faults(rng: np.random.Generator) -> list[tuple[float, FaultSpec]]:
    """Zero to two faults (offset from the run's start in seconds, spec) of random kind and size."""
    faults = []
    run_s = GENERATOR_ROWS * GENERATOR_STEP_S
    for _ in range(int(rng.choice([0, 1, 1, 2], p=[0.2, 0.35, 0.25, 0.2]))):
        kind = str(rng.choice(["latency_creep", "error_burst", "memory_leak", "leading_indicator"]))
        start = float(rng.uniform(0.25, 0.85) * run_s)
        duration = float(rng.uniform(10, 90) * 60)
        to_breach = float(rng.uniform(5, 60) * 60)  # seconds until the latency is LATENCY_BREACH x
        if kind == "error_burst":
            rate = float(np.exp(rng.uniform(np.log(0.003), np.log(0.1))))
        elif kind == "memory_leak":
            rate = float(np.exp(rng.uniform(np.log(2e3), np.log(1e5))))
        else:
            rate = (LATENCY_BREACH - 1.0) / to_breach
        lead = float(rng.uniform(300, 1800))
        spec = FaultSpec.model_validate(
            {"kind": kind, "rate": rate, "duration_s": duration, "lead_s": lead, "track": "canary"}
        )
        faults.append((start, spec))
    return faults


def _run(seed: int, day_s: float, faults: list[tuple[float, FaultSpec]], t0: float) -> FloatArray:
    """The canary's metrics at every row of one run, shape (GENERATOR_ROWS, 6)."""
    now = [t0]
    sim = Simulator(GeneratorConfig(seed=seed, day_seconds=day_s), clock=lambda: now[0], origin=t0)
    for offset, spec in faults:
        now[0] = t0 + offset
        sim.add_fault(spec)
    rows = []
    for k in range(GENERATOR_ROWS):
        s = sim.instant("canary", t0 + k * GENERATOR_STEP_S)
        rows.append([s.latency_median_s, s.error_ratio, s.queue_depth, s.memory_bytes, s.cpu_rate, s.rps])
    return np.asarray(rows, dtype=float)


def generator_series(seeds: int = GENERATOR_SEEDS) -> Iterator[Series]:
    """One offline run of the metrics generator per seed, with random faults and missing scrapes."""
    spec = policy_spec(GENERATOR_METRICS, GENERATOR_STEP_S)
    for seed in range(seeds):
        rng = np.random.default_rng([SPLIT_SEED, seed])
        day_s = float(rng.choice([4 * 3600.0, 86400.0]))
        t0 = 1.7e9 + seed * 1e6
        faults = _random_faults(rng)
        values = _run(seed, day_s, faults, t0)
        healthy = _run(seed, day_s, [], t0)
        breach = (values[:, 0] >= LATENCY_BREACH * healthy[:, 0]) | (values[:, 1] >= ERROR_BREACH)
        # Missed scrapes, as Prometheus would show them: a few seeds lose 1-3 % of samples.
        if rng.random() < 0.3:
            values[rng.random(values.shape) < rng.uniform(0.01, 0.03)] = np.nan
        yield Series("generator", f"seed-{seed:03d}", values, GENERATOR_STEP_S, breach, spec)


# --- windows -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decisions:
    """The assessed windows of one series (``features`` shape (n, F)) and how many were skipped."""

    dataset: str
    group: str
    features: npt.NDArray[np.float32]
    labels: npt.NDArray[np.int8]
    end_row: npt.NDArray[np.int64]
    skipped: int


def window_ends(n_rows: int, per_series: int, rows: int = WINDOW_ROWS) -> npt.NDArray[np.int64]:
    """About ``per_series`` window ends spread evenly over a series of ``n_rows`` rows."""
    if n_rows < rows:
        return np.zeros(0, dtype=np.int64)
    stride = max(1, (n_rows - rows) // max(per_series, 1))
    return np.arange(rows, n_rows + 1, stride, dtype=np.int64)


def assess_series(job: tuple[Series, int]) -> Decisions:
    """Assess ``per_series`` windows of one series (a pool worker)."""
    series, per_series = job
    names = tuple(m.name for m in series.spec.metrics)
    t = np.arange(series.values.shape[0], dtype=float) * series.step_s + 1.7e9
    feats, labels, ends = [], [], []
    skipped = 0
    for end in window_ends(series.values.shape[0], per_series).tolist():
        start = end - WINDOW_ROWS
        window = MetricWindow(names, t[start:end], series.values[start:end], series.step_s)
        try:
            result = assess(series.spec, window)
        except InsufficientData:
            skipped += 1
            continue
        assert result.features is not None  # assessed with detail
        feats.append(result.features.as_array())
        labels.append(window_label(series.incident, end, WINDOW_ROWS))
        ends.append(end)
    return Decisions(
        dataset=series.dataset,
        group=series.group,
        features=np.asarray(feats, dtype=np.float32).reshape(-1, len(FEATURE_NAMES)),
        labels=np.asarray(labels, dtype=np.int8),
        end_row=np.asarray(ends, dtype=np.int64),
        skipped=skipped,
    )


def build(
    data: Path = SHARED_DATA,
    processes: int = 2,
    windows: int = WINDOWS_PER_DATASET,
    seeds: int = GENERATOR_SEEDS,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Assess every dataset's windows; return the arrays for the npz and the metadata.

    Returns
    -------
    (dict, dict)
        Arrays ``features`` (n, F) float32, ``labels`` (n,) int8, ``dataset``, ``group``, ``split``
        (n,) str, ``end_row`` (n,) int64; and the metadata (counts, skipped windows, settings).
    """
    smd_root = data / "smd"
    smd_machines = available_machines(smd_root)
    smd_splits = assign_splits(smd_machines, "smd")
    slo, signals = smd_dimensions(smd_root, [m for m in smd_machines if smd_splits[m] == "train"])
    sources: dict[str, list[Series]] = {
        "nab": list(nab_series(data / "nab")),
        "smd": list(smd_series(smd_root, slo, signals)),
        "generator": list(generator_series(seeds)),
    }
    jobs = [(s, max(1, windows // len(group))) for group in sources.values() for s in group]
    with multiprocessing.Pool(processes) as pool:
        results = pool.map(assess_series, jobs, chunksize=1)
    splits = {name: assign_splits([s.group for s in group], name) for name, group in sources.items()}
    arrays: dict[str, Any] = {
        "features": np.concatenate([r.features for r in results]),
        "labels": np.concatenate([r.labels for r in results]),
        "dataset": np.concatenate([np.full(r.labels.size, r.dataset) for r in results]).astype(str),
        "group": np.concatenate([np.full(r.labels.size, r.group) for r in results]).astype(str),
        "split": np.concatenate([np.full(r.labels.size, splits[r.dataset][r.group]) for r in results]).astype(
            str
        ),
        "end_row": np.concatenate([r.end_row for r in results]),
    }
    skipped: Counter[str] = Counter()
    for r in results:
        skipped[r.dataset] += r.skipped
    meta = {
        "feature_names": list(FEATURE_NAMES),
        "class_names": list(CLASS_NAMES),
        "window_rows": WINDOW_ROWS,
        "scored_rows": current_rows(WINDOW_ROWS),
        "skipped_insufficient_data": dict(skipped),
        "smd_slo_dimensions": [d + 1 for d in slo],
        "smd_signal_dimensions": [d + 1 for d in signals],
        "groups": {name: dict(sorted(s.items())) for name, s in splits.items()},
        "counts": count_table(arrays),
    }
    return arrays, meta


def count_table(arrays: dict[str, Any]) -> dict[str, dict[str, dict[str, int]]]:
    """Windows per dataset, split and class."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for ds in sorted(set(arrays["dataset"].tolist())):
        out[ds] = {}
        for sp in SPLITS:
            mask = (arrays["dataset"] == ds) & (arrays["split"] == sp)
            labels = arrays["labels"][mask]
            out[ds][sp] = {c: int(np.sum(labels == i)) for i, c in enumerate(CLASS_NAMES)}
    return out


def load(path: Path = DEFAULT_OUTPUT) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read an npz written by :func:`main`: the arrays and the metadata."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k != "meta"}
        meta = json.loads(str(z["meta"]))
    return arrays, meta


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: build the labelled decisions and write them as a compressed npz."""
    parser = argparse.ArgumentParser(
        prog="python -m ajan.evaluation.severity_data", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--data", type=Path, default=SHARED_DATA, help="the shared datasets directory")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--windows", type=int, default=WINDOWS_PER_DATASET, help="windows per dataset")
    parser.add_argument("--seeds", type=int, default=GENERATOR_SEEDS, help="generator runs")
    args = parser.parse_args(argv)
    began = time.monotonic()
    arrays, meta = build(args.data, args.processes, args.windows, args.seeds)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.output, **arrays, meta=np.array(json.dumps(meta, sort_keys=True)))
    print(f"wrote {args.output}: {arrays['labels'].size} windows in {time.monotonic() - began:.0f}s")
    print(f"skipped (InsufficientData): {meta['skipped_insufficient_data']}")
    for ds, by_split in meta["counts"].items():
        for sp, by_class in by_split.items():
            print(f"  {ds:10s} {sp:12s} " + " ".join(f"{c}={n}" for c, n in by_class.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
