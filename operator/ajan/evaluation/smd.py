"""Evaluation of ajan's detector and metric ranking on the Server Machine Dataset (SMD).

Data layout (``../shared/data/smd`` next to the repository): ``train/`` and
``test/`` hold gzip'd header-less CSV files, one row per minute and 38 metrics in
[0, 1]; ``test_label/`` one 0/1 per test row; ``interpretation_label/`` lines
``start-end:d1,d2,...``.

Reading of ``interpretation_label``: ``start`` is the 0-based first test row and
``end`` is **exclusive**. This was checked against ``test_label`` rather than
assumed: on machines 1-2 … 1-8, 99 of the 100 lines coincide exactly with a
maximal run of label 1 under that reading (none under the inclusive one); the
exception, ``22923-23019`` on machine 1-3, ends one row before its label run
``[22923, 23020)`` and is kept as written. The metric numbers ``d`` are 1-based.
One labelled segment (machine 1-3, rows ``[18460, 18471)``) has no
interpretation line: it counts for detection but not for the ranking.

Detection is scored event-wise **without point adjustment**: a labelled segment
is detected when any alert falls inside it, and every maximal run of alerts that
shares no row with a labelled segment is one false alarm.

The named references of :mod:`ajan.evaluation.baselines` (``floor``, the rolling
robust z floor, and ``pca``, PCA reconstruction error) are scored in the same run
by the same rules, with the training rows as their baseline too, and printed
beside ajan.

Run ``python -m ajan.evaluation.smd --help`` for the command line.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ajan.evaluation import SHARED_DATA, pool_map

if TYPE_CHECKING:
    from ajan.analysis.detector import DetectorConfig

BoolArray = NDArray[np.bool_]
FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

N_METRICS = 38

DEFAULT_DATA = SHARED_DATA / "smd"

_INTERPRETATION_LINE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*:\s*([\d\s,]+?)\s*$")


@dataclass(frozen=True)
class SmdMachine:
    """One SMD machine, fully loaded.

    Attributes
    ----------
    name : str
        Machine name, e.g. ``"machine-1-2"``.
    train : ndarray, shape (Tt, 38)
        Training rows; the detector's baseline (mostly normal, unlabelled).
    test : ndarray, shape (T, 38)
        Test rows.
    labels : ndarray of bool, shape (T,)
        True where the test row belongs to a labelled anomaly.
    segments : list of (int, int)
        Maximal runs of ``labels``, as ``(start, end_exclusive)``.
    interpretation : list of (int, int, tuple of int)
        ``(start, end_exclusive, metrics)`` from ``interpretation_label``, with the
        responsible metrics as sorted 0-based column indices, sorted by start.
    """

    name: str
    train: FloatArray
    test: FloatArray
    labels: BoolArray
    segments: list[tuple[int, int]]
    interpretation: list[tuple[int, int, tuple[int, ...]]]


@dataclass(frozen=True)
class EventMetrics:
    """Event-wise detection quality, without point adjustment.

    Attributes
    ----------
    segments : int
        Labelled segments (maximal runs of label 1).
    detected : int
        Segments with at least one alert inside.
    false_alarms : int
        Maximal runs of alerts that share no row with any labelled segment.
    normal_points : int
        Rows labelled 0.
    normal_flagged_points : int
        Rows labelled 0 with an alert.
    precision : float
        ``detected / (detected + false_alarms)``; 0 when there is no alert at all.
    recall : float
        ``detected / segments``; 0 when there is no segment.
    f1 : float
        Harmonic mean of precision and recall; 0 when both are 0.
    normal_flagged : float
        ``normal_flagged_points / normal_points``; 0 when there is no normal row.
    """

    segments: int
    detected: int
    false_alarms: int
    normal_points: int
    normal_flagged_points: int
    precision: float
    recall: float
    f1: float
    normal_flagged: float

    @classmethod
    def from_counts(
        cls,
        segments: int,
        detected: int,
        false_alarms: int,
        normal_points: int,
        normal_flagged_points: int,
    ) -> EventMetrics:
        """Derive the ratios from counts, which is also how machines are pooled.

        Examples
        --------
        >>> EventMetrics.from_counts(4, 3, 1, 100, 5).f1
        0.75
        """
        precision = _ratio(detected, detected + false_alarms)
        recall = _ratio(detected, segments)
        f1 = _ratio(2.0 * precision * recall, precision + recall)
        return cls(
            segments=int(segments),
            detected=int(detected),
            false_alarms=int(false_alarms),
            normal_points=int(normal_points),
            normal_flagged_points=int(normal_flagged_points),
            precision=precision,
            recall=recall,
            f1=f1,
            normal_flagged=_ratio(normal_flagged_points, normal_points),
        )


@dataclass(frozen=True)
class BestThreshold:
    """Detection quality at the score threshold that maximises event F1.

    Attributes
    ----------
    threshold : float
        Alerts are ``score >= threshold``.
    event : EventMetrics
        Event-wise metrics at that threshold.
    point_f1 : float
        Best point-wise F1 (each row a sample, no adjustment) over the same
        candidate thresholds; its own best threshold may differ from ``threshold``.
    point_threshold : float
        The threshold reaching ``point_f1``.
    """

    threshold: float
    event: EventMetrics
    point_f1: float
    point_threshold: float


@dataclass(frozen=True)
class MachineResult:
    """Everything measured on one machine.

    Attributes
    ----------
    name : str
        Machine name.
    event : EventMetrics
        At ajan's own alert decision (``DetectionResult.alert``).
    best : BestThreshold
        At the best threshold on ``DetectionResult.score``.
    interpreted_segments : int
        Segments with an interpretation line (the ranking's sample size).
    hit_sum_100, hit_sum_150 : float
        Sums over interpreted segments of the per-segment HitRate@100% / @150%,
        kept as sums so that machines can be pooled.
    hit_rate_100, hit_rate_150 : float
        The per-machine means (NaN without interpreted segments).
    detect_seconds, rank_seconds : float
        Wall time of the detector and of all ranking calls.
    detector : str
        ``"ajan"``, or the name of a reference of :mod:`ajan.evaluation.baselines`.
    references : tuple of MachineResult
        On ajan's result, the same figures of each named reference on this machine
        (their ``event`` at their own alert decision); empty on a reference's.
    """

    name: str
    event: EventMetrics
    best: BestThreshold
    interpreted_segments: int
    hit_sum_100: float
    hit_sum_150: float
    hit_rate_100: float
    hit_rate_150: float
    detect_seconds: float
    rank_seconds: float
    detector: str = "ajan"
    references: tuple[MachineResult, ...] = ()

    def by_detector(self) -> dict[str, MachineResult]:
        """This result and its references, by detector name (ajan first)."""
        return {self.detector: self, **{r.detector: r for r in self.references}}


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den > 0 else 0.0


def runs(mask: ArrayLike) -> tuple[IntArray, IntArray]:
    """Maximal runs of True in a 1-D boolean array.

    Parameters
    ----------
    mask : array_like of bool, shape (T,)

    Returns
    -------
    starts, ends : ndarray of int64
        ``mask[starts[i]:ends[i]]`` is the i-th run; ``ends`` is exclusive.

    Examples
    --------
    >>> s, e = runs([0, 1, 1, 0, 1])
    >>> s.tolist(), e.tolist()
    ([1, 4], [3, 5])
    """
    m = np.asarray(mask, dtype=bool)
    if m.ndim != 1:
        raise ValueError(f"mask must be 1-D, got shape {m.shape}")
    edges = np.diff(np.concatenate(([0], m.astype(np.int8), [0])))
    return (
        np.flatnonzero(edges == 1).astype(np.int64),
        np.flatnonzero(edges == -1).astype(np.int64),
    )


def parse_interpretation(text: str) -> list[tuple[int, int, tuple[int, ...]]]:
    """Parse an SMD ``interpretation_label`` file.

    Parameters
    ----------
    text : str
        Lines ``start-end:d1,d2,...``; blank lines are ignored.

    Returns
    -------
    list of (int, int, tuple of int)
        ``(start, end_exclusive, metrics)`` sorted by start: ``end`` is taken as
        exclusive (see the module docstring for the check against
        ``test_label``), the metrics converted to sorted 0-based indices.

    Raises
    ------
    ValueError
        On a malformed line, an empty range or a metric number below 1.

    Examples
    --------
    >>> parse_interpretation("15-18:3,1\\n")
    [(15, 18, (0, 2))]
    """
    out: list[tuple[int, int, tuple[int, ...]]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        match = _INTERPRETATION_LINE.match(line)
        if match is None:
            raise ValueError(f"line {lineno}: cannot parse {line!r}")
        start, end = int(match.group(1)), int(match.group(2))
        dims = [int(d) for d in match.group(3).replace(" ", "").split(",") if d]
        if end <= start or not dims or min(dims) < 1:
            raise ValueError(f"line {lineno}: bad range or metric numbers in {line!r}")
        out.append((start, end, tuple(sorted({d - 1 for d in dims}))))
    return sorted(out)


def _load_matrix(path: Path) -> FloatArray:
    with gzip.open(path, "rt") as fh:
        x = np.loadtxt(fh, delimiter=",", dtype=float, ndmin=2)
    if x.shape[1] != N_METRICS:
        raise ValueError(f"{path}: expected {N_METRICS} columns, got {x.shape[1]}")
    return x


def load_machine(root: Path, name: str) -> SmdMachine:
    """Load one machine's train, test, labels and interpretation.

    Parameters
    ----------
    root : Path
        The ``smd`` directory.
    name : str
        ``"machine-1-2"`` or the short form ``"1-2"``.

    Raises
    ------
    ValueError
        When the label count differs from the test rows, or an interpretation
        range leaves the test set or a metric index is out of range.
    """
    if not name.startswith("machine-"):
        name = f"machine-{name}"
    root = Path(root)
    train = _load_matrix(root / "train" / f"{name}.txt.gz")
    test = _load_matrix(root / "test" / f"{name}.txt.gz")
    labels = np.loadtxt(root / "test_label" / f"{name}.txt", dtype=np.int64, ndmin=1) != 0
    if labels.shape[0] != test.shape[0]:
        raise ValueError(f"{name}: {labels.shape[0]} labels for {test.shape[0]} test rows")
    starts, ends = runs(labels)
    text = (root / "interpretation_label" / f"{name}.txt").read_text()
    interpretation = parse_interpretation(text)
    for start, end, dims in interpretation:
        if end > test.shape[0] or max(dims) >= N_METRICS:
            raise ValueError(f"{name}: interpretation {start}-{end}:{dims} out of range")
    return SmdMachine(
        name=name,
        train=train,
        test=test,
        labels=labels,
        segments=[(int(s), int(e)) for s, e in zip(starts, ends, strict=True)],
        interpretation=interpretation,
    )


def event_metrics(alerts: ArrayLike, labels: ArrayLike) -> EventMetrics:
    """Event-wise precision, recall and F1 without point adjustment.

    A labelled segment (maximal run of label 1) counts as detected when at least
    one alert falls inside it, however many do. Every maximal run of alerts that
    shares no row with any labelled segment counts as one false alarm; a run that
    overlaps a segment and extends beyond it is not one (even if it also runs into
    a second segment). An alert run that only ends right before a segment starts
    shares no row with it and is a false alarm.

    Precision is ``detected / (detected + false_alarms)``: each detected segment
    is one true positive event and each false-alarm run one false positive event,
    the standard event-wise precision for this rule. Recall is
    ``detected / segments``.

    Parameters
    ----------
    alerts, labels : array_like of bool, shape (T,)

    Returns
    -------
    EventMetrics
        Also ``normal_flagged``, the share of label-0 rows with an alert, which
        exposes what the event rule cannot see: one long alert run over normal
        rows that happens to touch a segment costs nothing in precision.

    Examples
    --------
    >>> m = event_metrics([0, 1, 0, 0, 1, 1], [0, 1, 1, 0, 0, 0])
    >>> m.detected, m.false_alarms, m.f1
    (1, 1, 0.6666666666666666)
    """
    al = np.asarray(alerts, dtype=bool)
    lab = np.asarray(labels, dtype=bool)
    if al.shape != lab.shape or al.ndim != 1:
        raise ValueError(f"alerts {al.shape} and labels {lab.shape} must be equal 1-D shapes")
    seg_s, seg_e = runs(lab)
    alert_cum = np.concatenate(([0], np.cumsum(al, dtype=np.int64)))
    detected = int(np.count_nonzero(alert_cum[seg_e] > alert_cum[seg_s]))
    run_s, run_e = runs(al)
    label_cum = np.concatenate(([0], np.cumsum(lab, dtype=np.int64)))
    false_alarms = int(np.count_nonzero(label_cum[run_e] == label_cum[run_s]))
    normal = ~lab
    return EventMetrics.from_counts(
        segments=len(seg_s),
        detected=detected,
        false_alarms=false_alarms,
        normal_points=int(np.count_nonzero(normal)),
        normal_flagged_points=int(np.count_nonzero(al & normal)),
    )


def candidate_thresholds(scores: ArrayLike, n: int = 200) -> FloatArray:
    """Thresholds worth trying on ``scores``: the unique values, or ``n`` quantiles.

    The quantile levels are ``1 - q`` with ``q`` geometrically spaced from 1 down
    to ``1 / len(scores)``, plus the maximum: anomalies are rare, so every
    sensible operating point flags well under 1% of the rows, where evenly
    spaced levels would leave only one or two candidates. Each step flags a
    roughly constant fraction more rows (about 5% for 200 levels on 24 000 rows).
    Quantiles are taken as observed values (``method="higher"``). NaN scores are
    ignored. The result is sorted ascending and unique.

    Examples
    --------
    >>> candidate_thresholds([0.0, 0.5, 0.5, 1.0]).tolist()
    [0.0, 0.5, 1.0]
    """
    s = np.asarray(scores, dtype=float).ravel()
    s = s[np.isfinite(s)]
    if s.size == 0:
        return np.zeros(0)
    unique = np.unique(s)
    if unique.size <= n:
        return unique
    levels = np.append(1.0 - np.geomspace(1.0, 1.0 / s.size, n - 1), 1.0)
    return np.unique(np.quantile(s, levels, method="higher"))


def _point_f1(alerts: BoolArray, labels: BoolArray) -> float:
    tp = int(np.count_nonzero(alerts & labels))
    precision = _ratio(tp, int(np.count_nonzero(alerts)))
    recall = _ratio(tp, int(np.count_nonzero(labels)))
    return _ratio(2.0 * precision * recall, precision + recall)


def best_threshold_f1(
    scores: ArrayLike,
    labels: ArrayLike,
    n_thresholds: int = 200,
    max_normal_flagged: float = 0.5,
) -> BestThreshold:
    """Event F1 at the threshold on ``scores`` that maximises it (an oracle figure).

    Alerts are ``scores >= threshold``; candidates come from
    :func:`candidate_thresholds`. Ties in F1 go to the highest threshold, which
    flags the fewest normal rows. NaN scores never alert.

    This is the figure published detectors are compared on, and it peeks at the
    labels, so it is an upper bound on what any fixed operating point reaches.

    The event rule has a blind spot that a threshold search finds at once: a
    threshold low enough to alert on every row makes one alert run that touches
    every segment, so all segments count as detected with no false alarm and
    F1 = 1. Thresholds that flag more than ``max_normal_flagged`` of the normal
    rows are therefore not eligible for the event F1 (the default, half of them,
    is far from any operating point anyone would run, so it removes the blind
    spot without choosing among realistic thresholds); the share actually
    flagged at the chosen threshold is reported in ``event.normal_flagged``.
    ``point_f1`` (every row a sample) has no such blind spot and searches all
    candidates.

    Parameters
    ----------
    scores : array_like of float, shape (T,)
    labels : array_like of bool, shape (T,)
    n_thresholds : int
        Number of quantiles tried when the scores have more unique values.
    max_normal_flagged : float
        Largest share of normal rows an eligible threshold may flag, in [0, 1].

    Examples
    --------
    >>> best_threshold_f1([0.1, 0.9, 0.2, 0.8], [0, 1, 0, 1]).threshold
    0.8
    """
    s = np.asarray(scores, dtype=float)
    lab = np.asarray(labels, dtype=bool)
    if s.shape != lab.shape or s.ndim != 1:
        raise ValueError(f"scores {s.shape} and labels {lab.shape} must be equal 1-D shapes")
    cands = candidate_thresholds(s, n_thresholds)
    filled = np.where(np.isfinite(s), s, -np.inf)
    best_thr, best = math.inf, event_metrics(np.zeros_like(lab), lab)
    best_point, best_point_thr = 0.0, math.inf
    # Descending, and only strict improvements replace: ties keep the higher threshold.
    for thr in cands[::-1]:
        alerts = filled >= thr
        m = event_metrics(alerts, lab)
        if m.f1 > best.f1 and m.normal_flagged <= max_normal_flagged:
            best, best_thr = m, float(thr)
        pf1 = _point_f1(alerts, lab)
        if pf1 > best_point:
            best_point, best_point_thr = pf1, float(thr)
    return BestThreshold(best_thr, best, best_point, best_point_thr)


def segment_hit(scores: ArrayLike, truth: Sequence[int], k_percent: float) -> float:
    """HitRate@P% of one segment: share of ``truth`` in the top ⌈P/100·|truth|⌉.

    Ties at the cut-off are resolved by their expectation under a uniformly random
    order (a true metric tied with others for the last slots counts fractionally),
    so neither the metric order nor a detector returning constant scores can earn
    credit by luck. NaN scores rank last. The cut-off is capped at the number of
    metrics.

    Parameters
    ----------
    scores : array_like of float, shape (N,)
        Responsibility per metric, higher = more likely responsible.
    truth : sequence of int
        0-based indices of the responsible metrics (non-empty).
    k_percent : float
        P, e.g. 100 or 150.

    Examples
    --------
    >>> segment_hit([0.9, 0.1, 0.8, 0.2], [0, 1], 100)
    0.5
    """
    s = np.asarray(scores, dtype=float).ravel()
    t = np.unique(np.asarray(truth, dtype=np.int64))
    if t.size == 0:
        raise ValueError("truth must not be empty")
    if t.min() < 0 or t.max() >= s.size:
        raise ValueError(f"truth indices {t.tolist()} out of range for {s.size} metrics")
    # A tiny epsilon guards the ceil against 1.5 * 2 = 3.0000000000000004.
    k = min(s.size, math.ceil(k_percent / 100.0 * t.size - 1e-9))
    if k <= 0:
        return 0.0
    s = np.where(np.isnan(s), -np.inf, s)
    cutoff = np.sort(s)[::-1][k - 1]
    is_truth = np.zeros(s.size, dtype=bool)
    is_truth[t] = True
    above = s > cutoff
    tied = s == cutoff
    slots = k - int(np.count_nonzero(above))
    expected = int(np.count_nonzero(above & is_truth)) + slots * (
        np.count_nonzero(tied & is_truth) / np.count_nonzero(tied)
    )
    return float(expected) / t.size


def hit_rate(
    ranking_scores_per_segment: Sequence[ArrayLike],
    interpretation: Sequence[tuple[int, int, tuple[int, ...]]],
    k_percent: float,
) -> float:
    """HitRate@P% averaged over segments (see :func:`segment_hit`).

    Parameters
    ----------
    ranking_scores_per_segment : sequence of array_like, each shape (N,)
        The ranking of segment ``i`` of ``interpretation``.
    interpretation : sequence of (start, end, metrics)
        As in :attr:`SmdMachine.interpretation`.
    k_percent : float
        P, e.g. 100 or 150.

    Returns
    -------
    float
        The mean over segments; NaN when there is none.
    """
    if len(ranking_scores_per_segment) != len(interpretation):
        raise ValueError(f"{len(ranking_scores_per_segment)} rankings for {len(interpretation)} segments")
    if not interpretation:
        return math.nan
    hits = [
        segment_hit(scores, dims, k_percent)
        for scores, (_, _, dims) in zip(ranking_scores_per_segment, interpretation, strict=True)
    ]
    return float(np.mean(hits))


def _machine_result(
    machine: SmdMachine,
    detector: str,
    alerts: ArrayLike,
    score: ArrayLike,
    rankings: Sequence[ArrayLike],
    seconds: tuple[float, float],
    references: tuple[MachineResult, ...] = (),
) -> MachineResult:
    n = len(machine.interpretation)
    h100 = hit_rate(rankings, machine.interpretation, 100) if n else math.nan
    h150 = hit_rate(rankings, machine.interpretation, 150) if n else math.nan
    return MachineResult(
        name=machine.name,
        event=event_metrics(np.asarray(alerts, dtype=bool), machine.labels),
        best=best_threshold_f1(np.asarray(score, dtype=float), machine.labels),
        interpreted_segments=n,
        hit_sum_100=h100 * n if n else 0.0,
        hit_sum_150=h150 * n if n else 0.0,
        hit_rate_100=h100,
        hit_rate_150=h150,
        detect_seconds=seconds[0],
        rank_seconds=seconds[1],
        detector=detector,
        references=references,
    )


def evaluate_reference(machine: SmdMachine, detector: str) -> MachineResult:
    """Score one named reference of :mod:`ajan.evaluation.baselines` on one machine.

    Its baseline is the training rows, as ajan's. Each interpretation segment is
    ranked by the reference's ranking over the segment's rows, computed once for
    the whole test set and averaged per segment: exactly what
    ``floor_rank(test[:end], start, end, train)`` or ``pca_rank(...)`` return,
    since both judge a row against the baseline only.
    """
    from ajan.evaluation import baselines

    t0 = time.perf_counter()
    if detector == "floor":
        res = baselines.floor_detect(machine.test, machine.train)
    elif detector == "pca":
        res = baselines.pca_detect(machine.test, machine.train)
    else:
        raise ValueError(f"unknown reference {detector!r}; known: {', '.join(baselines.REFERENCES)}")
    t1 = time.perf_counter()
    if detector == "floor":
        cells = baselines.floor_deviation(machine.test, machine.train)
    else:
        cells = baselines.pca_fit(machine.train).residuals(machine.test)
    rankings = [cells[start:end].mean(axis=0) for start, end, _ in machine.interpretation]
    t2 = time.perf_counter()
    return _machine_result(machine, detector, res.alert, res.score, rankings, (t1 - t0, t2 - t1))


def evaluate_machine(
    machine: SmdMachine,
    config: DetectorConfig | None = None,
    references: Sequence[str] | None = None,
) -> MachineResult:
    """Run ajan's detector and ranking on one machine and score them.

    ``detect(test, baseline=train)`` gives the alerts (ajan's own operating
    point) and the score (for :func:`best_threshold_f1`). Each interpretation
    segment ``[start, end)`` is ranked from the detector's per-metric z-scores
    over that segment, exactly what ``rank_metrics(test[:end], start, end,
    baseline=train)`` returns: the z-scores are causal, so the rows after the
    segment (which would not exist yet when an operator asks for the cause) have
    no influence, and computing them once saves re-running the detector per segment.

    ``references`` names the references of :mod:`ajan.evaluation.baselines` to
    score too (:func:`evaluate_reference`), by default all of them; ``()`` for none.
    """
    from ajan.analysis.detector import DEFAULT_CONFIG, detect
    from ajan.analysis.rootcause import rank_root_causes
    from ajan.evaluation.baselines import REFERENCES

    t0 = time.perf_counter()
    result = detect(machine.test, baseline=machine.train, config=config or DEFAULT_CONFIG)
    t1 = time.perf_counter()
    z = np.asarray(result.zscores, dtype=float).T
    rankings = [rank_root_causes(z, start, end).score for start, end, _ in machine.interpretation]
    t2 = time.perf_counter()
    refs = tuple(
        evaluate_reference(machine, name) for name in (REFERENCES if references is None else references)
    )
    return _machine_result(machine, "ajan", result.alert, result.score, rankings, (t1 - t0, t2 - t1), refs)


def pool_events(events: Sequence[EventMetrics]) -> EventMetrics:
    """Pool event metrics: counts summed, ratios recomputed (also used for NAB's files)."""
    return EventMetrics.from_counts(
        segments=sum(e.segments for e in events),
        detected=sum(e.detected for e in events),
        false_alarms=sum(e.false_alarms for e in events),
        normal_points=sum(e.normal_points for e in events),
        normal_flagged_points=sum(e.normal_flagged_points for e in events),
    )


def pool(results: Sequence[MachineResult]) -> EventMetrics:
    """Event metrics of all machines pooled: counts summed, ratios recomputed."""
    return pool_events([r.event for r in results])


def _fmt(x: float, pct: bool = False) -> str:
    if math.isnan(x):
        return "n/a"
    return f"{100 * x:.2f}%" if pct else f"{x:.3f}"


def format_table(results: Sequence[MachineResult]) -> str:
    """Markdown table: one row per machine, then pooled and per-machine-mean rows.

    The pooled row sums counts before computing precision, recall and F1 (for the
    best-threshold column, the counts at each machine's own best threshold), and
    averages HitRate over all interpreted segments of all machines. The mean row
    averages the per-machine figures.
    """
    header = (
        "| machine | segments | detected | false alarms | precision | recall | F1 "
        "| normal flagged | best-thr event F1 (normal flagged) | best-thr point F1 "
        "| interpreted | HitRate@100% | HitRate@150% |"
    )
    lines = [header, "|" + "---|" * 13]
    for r in results:
        e = r.event
        lines.append(
            f"| {r.name} | {e.segments} | {e.detected} | {e.false_alarms} | {_fmt(e.precision)} "
            f"| {_fmt(e.recall)} | {_fmt(e.f1)} | {_fmt(e.normal_flagged, pct=True)} "
            f"| {_fmt(r.best.event.f1)} ({_fmt(r.best.event.normal_flagged, pct=True)}) "
            f"| {_fmt(r.best.point_f1)} | {r.interpreted_segments} "
            f"| {_fmt(r.hit_rate_100)} | {_fmt(r.hit_rate_150)} |"
        )
    if results:
        p = pool(results)
        n_int = sum(r.interpreted_segments for r in results)
        h100 = sum(r.hit_sum_100 for r in results) / n_int if n_int else math.nan
        h150 = sum(r.hit_sum_150 for r in results) / n_int if n_int else math.nan
        # Counts at each machine's own best threshold, pooled like ajan's alerts.
        pb = pool_events([r.best.event for r in results])
        lines.append(
            f"| **pooled** | {p.segments} | {p.detected} | {p.false_alarms} "
            f"| {_fmt(p.precision)} | {_fmt(p.recall)} | {_fmt(p.f1)} "
            f"| {_fmt(p.normal_flagged, pct=True)} "
            f"| {_fmt(pb.f1)} ({_fmt(pb.normal_flagged, pct=True)}) | n/a "
            f"| {n_int} | {_fmt(h100)} | {_fmt(h150)} |"
        )

        def mean(values: list[float]) -> float:
            finite = [v for v in values if not math.isnan(v)]
            return float(np.mean(finite)) if finite else math.nan

        lines.append(
            f"| **mean of machines** | | | | {_fmt(mean([r.event.precision for r in results]))} "
            f"| {_fmt(mean([r.event.recall for r in results]))} "
            f"| {_fmt(mean([r.event.f1 for r in results]))} "
            f"| {_fmt(mean([r.event.normal_flagged for r in results]), pct=True)} "
            f"| {_fmt(mean([r.best.event.f1 for r in results]))} "
            f"| {_fmt(mean([r.best.point_f1 for r in results]))} | "
            f"| {_fmt(mean([r.hit_rate_100 for r in results]))} "
            f"| {_fmt(mean([r.hit_rate_150 for r in results]))} |"
        )
    return "\n".join(lines)


def by_detector(results: Sequence[MachineResult]) -> dict[str, list[MachineResult]]:
    """Per detector (ajan first, then the references), its result on every machine."""
    out: dict[str, list[MachineResult]] = {}
    for r in results:
        for name, res in r.by_detector().items():
            out.setdefault(name, []).append(res)
    return out


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def figures(results: Sequence[MachineResult]) -> dict[str, dict[str, float]]:
    """The headline figures of every detector, pooled over the machines, as plain data.

    Returns
    -------
    dict
        ``{detector: {figure: value}}`` with, at the detector's own alert decision
        and counts pooled over machines, ``segments``, ``detected``,
        ``false_alarms``, ``precision``, ``recall``, ``f1``, ``normal_flagged``;
        ``best_event_f1`` (counts at each machine's own best threshold, pooled),
        ``mean_best_event_f1`` and ``mean_best_point_f1`` (means of machines);
        ``hit_rate_100`` and ``hit_rate_150`` over all interpreted segments;
        ``detect_seconds`` summed over machines.
    """
    out: dict[str, dict[str, float]] = {}
    for name, rs in by_detector(results).items():
        p = pool_events([r.event for r in rs])
        pb = pool_events([r.best.event for r in rs])
        n_int = sum(r.interpreted_segments for r in rs)
        out[name] = {
            "segments": p.segments,
            "detected": p.detected,
            "false_alarms": p.false_alarms,
            "precision": p.precision,
            "recall": p.recall,
            "f1": p.f1,
            "normal_flagged": p.normal_flagged,
            "best_event_f1": pb.f1,
            "mean_best_event_f1": _nanmean([r.best.event.f1 for r in rs]),
            "mean_best_point_f1": _nanmean([r.best.point_f1 for r in rs]),
            "hit_rate_100": sum(r.hit_sum_100 for r in rs) / n_int if n_int else math.nan,
            "hit_rate_150": sum(r.hit_sum_150 for r in rs) / n_int if n_int else math.nan,
            "detect_seconds": sum(r.detect_seconds for r in rs),
        }
    return out


def format_comparison(results: Sequence[MachineResult]) -> str:
    """Markdown: ajan beside the named references, pooled, then F1 per machine.

    Empty when the results carry no reference.
    """
    groups = by_detector(results)
    if len(groups) < 2:
        return ""
    figs = figures(results)
    lines = [
        "ajan beside the named references (ajan.evaluation.baselines), same run, same rules: "
        "floor = rolling robust z floor, alert at z >= 20; pca = PCA reconstruction error "
        "(90% variance), alert above the 99.9th percentile of the train rows' own scores "
        "(label-free). All three learn from the train rows.",
        "",
        "| detector | segments | detected | false alarms | precision | recall | F1 | normal flagged "
        "| best-thr event F1 | mean best-thr point F1 | HitRate@100% | HitRate@150% | detect s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, f in figs.items():
        lines.append(
            f"| {name} | {f['segments']:.0f} | {f['detected']:.0f} | {f['false_alarms']:.0f} "
            f"| {_fmt(f['precision'])} | {_fmt(f['recall'])} | {_fmt(f['f1'])} "
            f"| {_fmt(f['normal_flagged'], pct=True)} | {_fmt(f['best_event_f1'])} "
            f"| {_fmt(f['mean_best_point_f1'])} | {_fmt(f['hit_rate_100'])} "
            f"| {_fmt(f['hit_rate_150'])} | {f['detect_seconds']:.1f} |"
        )
    names = list(groups)
    lines += [
        "",
        "| machine | "
        + " | ".join(f"{n} F1" for n in names)
        + " | "
        + " | ".join(f"{n} best-thr F1" for n in names)
        + " | "
        + " | ".join(f"{n} HitRate@100%" for n in names)
        + " |",
        "|---|" + "---|" * (3 * len(names)),
    ]
    for r in results:
        each = r.by_detector()
        rs = [each[n] for n in names]
        lines.append(
            f"| {r.name} | "
            + " | ".join(_fmt(x.event.f1) for x in rs)
            + " | "
            + " | ".join(_fmt(x.best.event.f1) for x in rs)
            + " | "
            + " | ".join(_fmt(x.hit_rate_100) for x in rs)
            + " |"
        )
    lines.append(
        "| **mean of machines** | "
        + " | ".join(_fmt(_nanmean([x.event.f1 for x in groups[n]])) for n in names)
        + " | "
        + " | ".join(_fmt(_nanmean([x.best.event.f1 for x in groups[n]])) for n in names)
        + " | "
        + " | ".join(_fmt(_nanmean([x.hit_rate_100 for x in groups[n]])) for n in names)
        + " |"
    )
    return "\n".join(lines)


def available_machines(root: Path) -> list[str]:
    """Machine names with a test file under ``root``, in natural order (1-2 before 1-10)."""
    names = [p.name.removesuffix(".txt.gz") for p in (Path(root) / "test").glob("*.txt.gz")]

    def key(name: str) -> list[int | str]:
        return [int(tok) if tok.isdigit() else tok for tok in re.split(r"(\d+)", name)]

    return sorted(names, key=key)


def _run_one(args: tuple[str, str, DetectorConfig | None, tuple[str, ...] | None]) -> MachineResult:
    root, name, config, references = args
    return evaluate_machine(load_machine(Path(root), name), config, references)


def run(
    root: Path,
    machines: Sequence[str],
    processes: int = 2,
    config: DetectorConfig | None = None,
    references: Sequence[str] | None = None,
) -> list[MachineResult]:
    """Evaluate ``machines`` in at most ``processes`` forked worker processes.

    Results come back in the order of ``machines``; ``config`` defaults to the
    detector's defaults, ``references`` to every named reference (``()``: none).
    """
    refs = None if references is None else tuple(references)
    jobs = [(str(root), m if m.startswith("machine-") else f"machine-{m}", config, refs) for m in machines]
    return pool_map(_run_one, jobs, processes)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: evaluate machines and print a markdown table.

    Returns the process exit status.
    """
    parser = argparse.ArgumentParser(
        prog="python -m ajan.evaluation.smd",
        description="Evaluate ajan's detector and metric ranking on SMD (no point adjustment).",
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"default {DEFAULT_DATA}")
    parser.add_argument(
        "--machines",
        default=None,
        help="comma-separated, e.g. 1-2,1-3 (default: every machine under DATA/test)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--processes", type=int, default=2, help="worker processes, 1 or 2 (default 2)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a detector setting (DetectorConfig), repeatable",
    )
    parser.add_argument(
        "--no-references",
        action="store_true",
        help="skip the named references (floor, pca) printed beside ajan",
    )
    args = parser.parse_args(argv)
    from ajan.analysis.detector import config_with

    try:
        config = config_with(args.set)
    except ValueError as exc:
        parser.error(str(exc))
    if not (args.data / "test").is_dir():
        parser.error(f"no SMD data under {args.data}")
    machines = (
        [m.strip() for m in args.machines.split(",") if m.strip()]
        if args.machines
        else available_machines(args.data)
    )
    if not machines:
        parser.error("no machines to evaluate")
    t0 = time.perf_counter()
    results = run(
        args.data,
        machines,
        processes=min(2, max(1, args.processes)),
        config=config,
        references=() if args.no_references else None,
    )
    wall = time.perf_counter() - t0
    print(format_table(results))
    comparison = format_comparison(results)
    if comparison:
        print()
        print(comparison)
    print()
    for r in results:
        times = ", ".join(
            f"{name} detect {x.detect_seconds:.1f}s rank {x.rank_seconds:.1f}s"
            for name, x in r.by_detector().items()
        )
        print(f"- {r.name}: {times}")
    print(f"- wall time {wall:.1f}s")
    if args.json is not None:
        payload = {
            "data": str(args.data),
            "machines": [asdict(r) for r in results],
            "pooled": asdict(pool(results)),
            "figures": figures(results),
            "wall_seconds": wall,
        }
        args.json.write_text(json.dumps(payload, indent=2, allow_nan=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
