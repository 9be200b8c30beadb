"""Numenta Anomaly Benchmark (NAB) scoring, ported from numenta/NAB, and a runner for ajan.

The scoring is a port of the Sweeper-based scorer of NAB v1.1 (github.com/numenta/NAB,
master). The files ported, and what each contributed:

``nab/sweeper.py`` (commit d62afec4)
    ``scaledSigmoid``; ``Sweeper._getProbationaryLength``; ``Sweeper.calcSweepScore``
    (which window a row belongs to, the per-row weighted score, how rows are matched to
    window limits by timestamp); ``Sweeper.calcScoreByThreshold`` (the sweep over every
    distinct anomaly score, "only the best detection of a window counts", a missed window
    costs ``fnWeight``); ``Sweeper.scoreDataSet`` (score of one file at a given threshold).
``nab/optimizer.py`` (Sweeper version)
    ``optimizeThreshold``: one sweep over the rows of the *whole corpus* pooled together,
    keeping the threshold of the highest score (ties: the highest threshold).
``nab/scorer.py`` (Sweeper version)
    ``scoreCorpus``/``scoreDataSet``: every file is scored at the corpus threshold and the
    per-file scores and row counts are summed (the "Totals" row).
``nab/runner.py``
    ``Runner.normalize``: ``100 * (score - null) / (perfect - null)``, where ``null`` is the
    score of the null detector and ``perfect = tpWeight * number of labelled windows``.
``nab/util.py``
    ``getProbationPeriod``: ``min(floor(0.15 * n), 0.15 * 5000)`` rows are not scored.
``nab/labeler.py``
    ``CorpusLabel.getWindows``: every window limit must be a timestamp of the data file.
``config/profiles.json``
    The three cost matrices (:data:`PROFILES`).

The rules, as the source implements them (row ``i`` of a file of ``n`` rows):

* The first ``min(floor(0.15 n), 750)`` rows are probationary: never scored, and a window
  with no row after probation is neither a hit nor a miss.
* A window ``[start, end]`` is entered at the row whose timestamp equals ``start`` and left
  after the row whose timestamp equals ``end``; its right index ``R`` and width ``W`` are
  taken from the first occurrence of those timestamps in the file.
* A row inside a window is worth ``tpWeight * S(-(R - i + 1) / W) / S(-1)`` if detected,
  with ``S(x) = 2 / (1 + exp(5 x)) - 1`` (``-1`` beyond ``x > 3``). Detecting the first row
  of a window is therefore worth exactly ``tpWeight``, and later rows less. Only the best
  (earliest) detected row of a window counts; a window with no detection costs
  ``fnWeight``.
* A detected row outside every window costs ``fpWeight * S(|R' - i| / (W' - 1))`` where
  ``R'``, ``W'`` belong to the closest preceding window, or ``fpWeight`` when there is none:
  a false alarm right after a wide window costs almost nothing (``S(0) = 0``), one three
  window widths later or before any window costs the full weight. Every such row counts.
* A row is detected when its anomaly score is ``>=`` the threshold.

Deviations from the source, all in cases the NAB corpus does not contain:

* NAB divides by ``W' - 1`` and crashes after a one-row window; here that division gives
  ``+inf`` and the row costs the full ``fpWeight``, the limit of the formula.
* NAB's ``scoreDataSet`` finds no matching threshold row (and crashes) when the threshold is
  below every score of a file; here every scorable row is then detected, which is what
  ``>=`` means.
* NaN anomaly scores are rejected (NAB's sort would silently misplace them).

Runtime: the per-row window structure is computed once per file (:func:`load_corpus`),
and a profile's whole threshold curve costs one sort of the ~310k scorable rows.

Named references. ``--detector ajan`` and ``--detector ajan-onset`` also run, in the same
pass over the files (:func:`run_named`), the references of :mod:`ajan.evaluation.baselines`
and print them beside ajan: ``floor`` (rolling robust z floor) and ``pca`` (PCA
reconstruction error). NAB has no baseline: the floor learns from each series' own past,
and PCA is fitted on each file's probationary rows, which NAB does not score. Their raw
scores are mapped to [0, 1] by ``s / (1 + s)``, which keeps their order and so their NAB
score, and each gets NAB's own threshold optimisation per profile, as ajan does.

NAB's threshold is chosen on the labels, so a second, label-free view is printed too:
event-wise precision, recall and F1 (:func:`ajan.evaluation.smd.event_metrics`, no point
adjustment) at each detector's **own alert decision** (ajan: ``score >= 0.5``; ajan-onset:
``onset >= 0.5``; floor: ``z >= 20``; pca: above the 99.9th percentile of the probationary
rows' own scores), with NAB's windows as the labelled segments (a maximal run of in-window
rows) and the probationary rows left out, counts pooled over the files.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import math
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ajan.evaluation import SHARED_DATA, pool_map

if TYPE_CHECKING:
    from ajan.analysis.detector import DetectorConfig
    from ajan.evaluation.smd import EventMetrics

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]
Detector = Callable[[FloatArray], ArrayLike]

#: nab/runner.py: ``self.probationaryPercent = 0.15``; nab/util.py caps it at ``0.15 * 5000``.
PROBATION_PERCENT = 0.15
PROBATION_CAP_ROWS = 5000
#: Sweeper.calcScoreByThreshold starts above every score in [0, 1]: nothing detected.
START_THRESHOLD = 1.1
#: Resolution of the timestamps; NAB's files have whole seconds, the windows microseconds.
_TIME_UNIT = "us"

#: ``<repository root>/../shared/data/nab``: the data sits next to the checkout.
DEFAULT_DATA = SHARED_DATA / "nab"


def category_of(path: str) -> str:
    """NAB category of a corpus-relative path: its first directory (``"realKnownCause"``)."""
    return path.split("/", 1)[0]


@dataclass(frozen=True)
class CostMatrix:
    """Weights of one NAB application profile (``config/profiles.json``).

    Attributes
    ----------
    tp : float
        ``tpWeight``: reward of a window detected at its first row.
    fp : float
        ``fpWeight``: cost of a detection far from any window.
    fn : float
        ``fnWeight``: cost of a missed window.
    """

    tp: float
    fp: float
    fn: float


#: The cost matrices of NAB's ``config/profiles.json`` (``tnWeight`` is unused by NAB).
PROFILES: dict[str, CostMatrix] = {
    "standard": CostMatrix(tp=1.0, fp=0.11, fn=1.0),
    "reward_low_FP_rate": CostMatrix(tp=1.0, fp=0.22, fn=1.0),
    "reward_low_FN_rate": CostMatrix(tp=1.0, fp=0.11, fn=2.0),
}


def load_profiles(path: Path) -> dict[str, CostMatrix]:
    """Read NAB's ``config/profiles.json``.

    Parameters
    ----------
    path : Path
        The JSON file.

    Returns
    -------
    dict of str to CostMatrix
        Profile name to its cost matrix.
    """
    raw = json.loads(path.read_text())
    return {
        name: CostMatrix(
            tp=float(p["CostMatrix"]["tpWeight"]),
            fp=float(p["CostMatrix"]["fpWeight"]),
            fn=float(p["CostMatrix"]["fnWeight"]),
        )
        for name, p in raw.items()
    }


def scaled_sigmoid(position: ArrayLike) -> FloatArray:
    """NAB's ``scaledSigmoid``: the weight of a detection at a relative position.

    Parameters
    ----------
    position : array_like
        Relative position: -1 is the left edge of a window, 0 its right edge, positive
        values lie after the window (in window widths).

    Returns
    -------
    ndarray
        ``2 * sigmoid(-5 * position) - 1``, and -1 where ``position > 3``.
    """
    x = np.asarray(position, dtype=np.float64)
    # The clip only keeps exp() finite: every clipped value is replaced by -1 below.
    val = 2.0 * (1.0 / (1.0 + np.exp(5.0 * np.minimum(x, 3.0)))) - 1.0
    return np.where(x > 3.0, -1.0, val)


#: Sweeper's ``maxTP``: the unweighted value of a detection at a window's first row.
MAX_TP = float(scaled_sigmoid(-1.0))


def probation_rows(n_rows: int, probation_percent: float = PROBATION_PERCENT) -> int:
    """Number of leading rows NAB does not score (nab/util.py ``getProbationPeriod``).

    Parameters
    ----------
    n_rows : int
        Length of the file.
    probation_percent : float
        Fraction of the file in probation; NAB uses 0.15.

    Returns
    -------
    int
        ``min(floor(p * n), p * 5000)`` rounded up, since NAB scores rows ``i >= `` it.
    """
    limit = min(math.floor(probation_percent * n_rows), probation_percent * PROBATION_CAP_ROWS)
    return math.ceil(limit)


@dataclass(frozen=True, eq=False)
class NabFile:
    """One NAB data file with its labelled windows, prepared for scoring.

    Attributes
    ----------
    path : str
        Path relative to ``data/``, e.g. ``"realKnownCause/nyc_taxi.csv"``.
    timestamps : ndarray of datetime64
        Row timestamps, in file order (NAB's files are not all strictly increasing).
    values : ndarray of float
        Row values.
    windows : tuple of (datetime64, datetime64)
        Labelled anomaly windows ``(start, end)``, inclusive, as in the label file.
    window_id : ndarray of int
        Per row, the index in ``windows`` of the window NAB scores the row in, -1 outside.
        Windows sharing a start timestamp share an index, as NAB names windows by start.
    sigmoid : ndarray of float
        Per row, the unweighted scaled sigmoid NAB gives a detection there: positive inside
        a window, negative outside.
    probation : int
        Rows ``[0, probation)`` are not scored.
    """

    path: str
    timestamps: NDArray[np.datetime64]
    values: FloatArray
    windows: tuple[tuple[np.datetime64, np.datetime64], ...]
    window_id: IntArray
    sigmoid: FloatArray
    probation: int

    @property
    def category(self) -> str:
        """Directory of the file in NAB's ``data/``, e.g. ``"realKnownCause"``."""
        return category_of(self.path)

    @property
    def n_rows(self) -> int:
        """Number of rows."""
        return int(self.values.size)

    @property
    def scorable(self) -> BoolArray:
        """Rows after the probationary period."""
        return np.arange(self.n_rows) >= self.probation

    @property
    def window_mask(self) -> BoolArray:
        """Rows inside a labelled window."""
        return self.window_id >= 0

    def scored_windows(self) -> IntArray:
        """Indices of the windows with at least one scorable row (the ones NAB counts)."""
        ids = self.window_id[self.scorable]
        return np.unique(ids[ids >= 0])

    def first_rows(self) -> IntArray:
        """First row of each scored window: where a perfect detector fires."""
        rows = np.flatnonzero(self.scorable & self.window_mask)
        ids = self.window_id[rows]
        return np.array([rows[ids == w][0] for w in self.scored_windows()], dtype=np.int64)


def _to_time(values: Iterable[Any]) -> NDArray[np.datetime64]:
    # numpy parses "2014-07-01 00:00:00" and "2014-07-01 00:00:00.000000" alike.
    return np.array(list(values), dtype=f"datetime64[{_TIME_UNIT}]")


def make_file(
    path: str,
    timestamps: ArrayLike,
    values: ArrayLike,
    windows: Sequence[Sequence[Any]],
    probation_percent: float = PROBATION_PERCENT,
) -> NabFile:
    """Prepare one file for scoring: assign its rows to windows as NAB's Sweeper does.

    Parameters
    ----------
    path : str
        Relative path, ``"<category>/<name>.csv"``.
    timestamps : array_like
        Row timestamps (strings or datetime64).
    values : array_like
        Row values.
    windows : sequence of (start, end)
        Window limits, as timestamps (strings or datetime64) that occur in ``timestamps``.
    probation_percent : float
        Fraction of the file in probation; NAB uses 0.15, NAB's own unit tests use 0.

    Returns
    -------
    NabFile

    Raises
    ------
    ValueError
        If a window limit is not a timestamp of the file (nab/labeler.py refuses those too)
        or the columns differ in length.
    """
    ts = _to_time(np.asarray(timestamps).tolist())
    vals = np.asarray(values, dtype=np.float64)
    if ts.shape != vals.shape or ts.ndim != 1:
        raise ValueError(f"{path}: {ts.shape} timestamps but {vals.shape} values")
    limits = tuple((_to_time([a])[0], _to_time([b])[0]) for a, b in windows)
    ticks = ts.astype(np.int64)
    for a, b in limits:
        for t in (a, b):
            if not np.any(ticks == t.astype(np.int64)):
                raise ValueError(f"{path}: window limit {t} is not a timestamp of the file")
    window_id, sig = _sweep_structure(ticks, limits)
    return NabFile(
        path=path,
        timestamps=ts,
        values=vals,
        windows=limits,
        window_id=window_id,
        sigmoid=sig,
        probation=probation_rows(vals.size, probation_percent),
    )


def _sweep_structure(
    ticks: IntArray, limits: tuple[tuple[np.datetime64, np.datetime64], ...]
) -> tuple[IntArray, FloatArray]:
    """Port of the row loop of ``Sweeper.calcSweepScore``, without the profile weights.

    NAB walks every row; here only the rows where the state can change (a window's start
    or the current window's end) are visited one by one, and the runs in between are
    filled at once, which gives the same result on ~365k rows in milliseconds.
    """
    n = ticks.size
    starts = np.array([a.astype(np.int64) for a, _ in limits], dtype=np.int64)
    ends = np.array([b.astype(np.int64) for _, b in limits], dtype=np.int64)
    # NAB names a window "<file>|<start>": windows with the same start share a score slot.
    name = np.array([int(np.flatnonzero(starts == s)[0]) for s in starts], dtype=np.int64)
    window_id = np.full(n, -1, dtype=np.int64)
    sig = np.empty(n, dtype=np.float64)
    rows = np.arange(n, dtype=np.int64)

    def first(t: np.int64) -> int:
        # list.index: the first occurrence anywhere in the file, not after the cursor.
        return int(np.flatnonzero(ticks == t)[0])

    def next_at(t: np.int64, i: int) -> int:
        hits = np.flatnonzero(ticks[i:] == t)
        return i + int(hits[0]) if hits.size else n

    queue = 0  # windowLimits.pop(0) consumes windows strictly in label-file order
    cur = -1
    cur_right, cur_width = 0, 1.0
    prev_right: int | None = None
    prev_width = 1.0

    def fill(lo: int, hi: int) -> None:
        if hi <= lo:
            return
        r = rows[lo:hi]
        if cur >= 0:
            window_id[lo:hi] = name[cur]
            sig[lo:hi] = scaled_sigmoid(-(cur_right - r + 1) / cur_width)
        elif prev_right is None:
            # No preceding window: "as if we were just really far away" (sweeper.py).
            sig[lo:hi] = -1.0
        else:
            with np.errstate(divide="ignore"):
                # After a one-row window this is x / 0: NAB raises, +inf costs the full weight.
                pos = np.abs(prev_right - r) / (prev_width - 1.0)
            sig[lo:hi] = scaled_sigmoid(pos)

    i = 0
    while i < n:
        # The body of NAB's loop for a row where the state may change: enter, score, exit.
        if queue < starts.size and ticks[i] == starts[queue]:
            cur = queue
            queue += 1
            cur_right = first(ends[cur])
            cur_width = float(cur_right - first(starts[cur]) + 1)
        fill(i, i + 1)
        if cur >= 0 and ticks[i] == ends[cur]:
            prev_right, prev_width = i, cur_width
            cur = -1
        i += 1
        nxt = n
        if queue < starts.size:
            nxt = min(nxt, next_at(starts[queue], i))
        if cur >= 0:
            nxt = min(nxt, next_at(ends[cur], i))
        fill(i, nxt)
        i = nxt
    return window_id, sig


def _read_columns(path: Path, columns: Sequence[str]) -> list[list[str]]:
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        try:
            idx = [header.index(c) for c in columns]
        except ValueError as err:
            raise ValueError(f"{path}: header {header} lacks one of {list(columns)}") from err
        out: list[list[str]] = [[] for _ in columns]
        for row in reader:
            if not row:
                continue
            for col, j in zip(out, idx, strict=True):
                col.append(row[j])
    return out


def load_corpus(
    nab_root: Path,
    windows_file: str = "labels/combined_windows.json",
    probation_percent: float = PROBATION_PERCENT,
) -> list[NabFile]:
    """Load every data file named in NAB's window labels.

    Parameters
    ----------
    nab_root : Path
        NAB checkout (holds ``data/`` and ``labels/``).
    windows_file : str
        Label file relative to ``nab_root``.
    probation_percent : float
        Fraction of each file in probation.

    Returns
    -------
    list of NabFile
        Sorted by relative path.
    """
    labels = json.loads((nab_root / windows_file).read_text())
    files = []
    for rel in sorted(labels):
        ts, vals = _read_columns(nab_root / "data" / rel, ["timestamp", "value"])
        files.append(make_file(rel, ts, np.array(vals, dtype=np.float64), labels[rel], probation_percent))
    return files


def load_results_dir(
    results_dir: Path, files: Sequence[NabFile], detector_name: str | None = None
) -> dict[str, FloatArray]:
    """Read the ``anomaly_score`` column of a NAB results directory.

    Parameters
    ----------
    results_dir : Path
        ``results/<detector>``, holding ``<category>/<detector>_<file>.csv``.
    files : sequence of NabFile
        The corpus the results belong to.
    detector_name : str, optional
        File-name prefix; defaults to the directory's name, as NAB lays results out.

    Returns
    -------
    dict of str to ndarray
        Relative data path to per-row anomaly scores.
    """
    name = detector_name or results_dir.name
    out: dict[str, FloatArray] = {}
    for f in files:
        category, base = f.path.split("/", 1)
        path = results_dir / category / f"{name}_{base}"
        if not path.is_file():
            raise FileNotFoundError(f"no results for {f.path}: {path} is missing")
        (scores,) = _read_columns(path, ["anomaly_score"])
        out[f.path] = np.array(scores, dtype=np.float64)
    return out


def _cost(profile: str | CostMatrix) -> CostMatrix:
    if isinstance(profile, CostMatrix):
        return profile
    try:
        return PROFILES[profile]
    except KeyError:
        raise ValueError(f"unknown profile {profile!r}; known: {sorted(PROFILES)}") from None


def _sweep_scores(f: NabFile, cost: CostMatrix) -> FloatArray:
    # Sweeper.calcSweepScore: the weighted value of a detection at every row.
    return np.where(f.window_mask, f.sigmoid * cost.tp / MAX_TP, f.sigmoid * cost.fp)


def _checked_scores(f: NabFile, scores_by_file: Mapping[str, ArrayLike]) -> FloatArray:
    try:
        s = np.asarray(scores_by_file[f.path], dtype=np.float64)
    except KeyError:
        raise KeyError(f"no anomaly scores for {f.path}") from None
    if s.shape != (f.n_rows,):
        raise ValueError(f"{f.path}: {s.shape} anomaly scores for {f.n_rows} rows")
    if np.isnan(s).any():
        raise ValueError(f"{f.path}: NaN anomaly scores")
    return s


@dataclass(frozen=True, eq=False)
class ThresholdCurve:
    """NAB score of a corpus at every candidate threshold (``calcScoreByThreshold``).

    Entry ``k`` is the score when every scorable row with anomaly score
    ``>= thresholds[k]`` is a detection. Thresholds descend from ``START_THRESHOLD``
    (nothing detected) through every distinct score. Counts are of rows, as NAB's.
    """

    thresholds: FloatArray
    scores: FloatArray
    tp: IntArray
    tn: IntArray
    fp: IntArray
    fn: IntArray


def threshold_curve(
    files: Sequence[NabFile],
    scores_by_file: Mapping[str, ArrayLike],
    profile: str | CostMatrix,
) -> ThresholdCurve:
    """Sweep every distinct anomaly score of the pooled corpus, as NAB's optimiser does.

    Parameters
    ----------
    files : sequence of NabFile
        The corpus.
    scores_by_file : mapping of str to array_like
        Relative path to per-row anomaly scores.
    profile : str or CostMatrix
        Profile name in :data:`PROFILES` or its weights.

    Returns
    -------
    ThresholdCurve
    """
    cost = _cost(profile)
    score_parts, sweep_parts, win_parts = [], [], []
    offset = 0
    n_windows = 0
    for f in files:
        keep = f.scorable  # prepAnomalyListForScoring drops probationary rows
        score_parts.append(_checked_scores(f, scores_by_file)[keep])
        sweep_parts.append(_sweep_scores(f, cost)[keep])
        wid = f.window_id[keep]
        win_parts.append(np.where(wid >= 0, wid + offset, -1))
        offset += max(len(f.windows), 1)
        n_windows += f.scored_windows().size
    score = np.concatenate(score_parts) if score_parts else np.zeros(0)
    sweep = np.concatenate(sweep_parts) if sweep_parts else np.zeros(0)
    gwin = np.concatenate(win_parts) if win_parts else np.zeros(0, dtype=np.int64)
    # _prepareScoreByThresholdParts: every counted window starts as a miss.
    base = -cost.fn * n_windows

    order = np.argsort(-score, kind="stable")
    s_sorted, sw, gw = score[order], sweep[order], gwin[order]
    inside = gw >= 0
    # A false positive adds its weighted score; a window row adds only the improvement of
    # its window's best detection so far (scoreParts[window] = max(...)).
    inc = np.where(inside, 0.0, sw)
    pos = np.flatnonzero(inside)
    if pos.size:
        grouped = pos[np.argsort(gw[pos], kind="stable")]  # by window, sweep order kept
        wg = gw[grouped]
        uniq, rank = np.unique(sw[grouped], return_inverse=True)
        # Running max per window in one pass: the window index dominates the key, so the
        # accumulation restarts at each window; the rank is exact where floats are not.
        key = wg * uniq.size + rank.reshape(-1)
        best = np.maximum(uniq[np.maximum.accumulate(key) - wg * uniq.size], -cost.fn)
        prev = np.empty_like(best)
        prev[0] = -cost.fn
        prev[1:] = best[:-1]
        prev[np.flatnonzero(np.diff(wg)) + 1] = -cost.fn
        inc[grouped] = best - prev

    total = base + np.cumsum(inc)
    # One entry per distinct score, taken after its last row (all rows >= it detected).
    last = np.flatnonzero(np.append(s_sorted[1:] != s_sorted[:-1], s_sorted.size > 0))
    tp = np.cumsum(inside)[last]
    fp = last + 1 - tp
    n_in, n_out = int(inside.sum()), int((~inside).sum())
    thresholds, scores = s_sorted[last], total[last]
    if not s_sorted.size or s_sorted[0] != START_THRESHOLD:
        # The entry NAB stores before the first row: nothing detected.
        thresholds = np.insert(thresholds, 0, START_THRESHOLD)
        scores = np.insert(scores, 0, base)
        tp = np.insert(tp, 0, 0)
        fp = np.insert(fp, 0, 0)
    return ThresholdCurve(
        thresholds=thresholds.astype(np.float64),
        scores=scores.astype(np.float64),
        tp=tp.astype(np.int64),
        tn=(n_out - fp).astype(np.int64),
        fp=fp.astype(np.int64),
        fn=(n_in - tp).astype(np.int64),
    )


def optimise_threshold(
    files: Sequence[NabFile],
    scores_by_file: Mapping[str, ArrayLike],
    profile: str | CostMatrix,
) -> tuple[float, float]:
    """The threshold NAB's optimiser picks for a detector and profile.

    Parameters
    ----------
    files : sequence of NabFile
        The corpus; one threshold serves every file.
    scores_by_file : mapping of str to array_like
        Relative path to per-row anomaly scores.
    profile : str or CostMatrix
        Profile name or weights.

    Returns
    -------
    threshold : float
        The threshold of the highest corpus score; on ties the highest such threshold
        (NAB sorts the curve by score with a stable sort and takes the first).
    score : float
        That raw score.
    """
    curve = threshold_curve(files, scores_by_file, profile)
    k = int(np.argmax(curve.scores))  # first maximum, as the stable sort in NAB
    return float(curve.thresholds[k]), float(curve.scores[k])


@dataclass(frozen=True)
class FileScore:
    """NAB score of one file at a threshold, with NAB's row counts and window counts.

    Attributes
    ----------
    path : str
        Relative data path.
    score : float
        Raw NAB score of the file.
    tp, tn, fp, fn : int
        Scorable rows by outcome, as in NAB's score files: ``tp`` counts every detected
        row inside a window, not windows.
    windows : int
        Windows NAB counts (with a scorable row).
    windows_detected : int
        Of those, the windows with at least one detection.
    """

    path: str
    score: float
    tp: int
    tn: int
    fp: int
    fn: int
    windows: int
    windows_detected: int

    @property
    def category(self) -> str:
        """Directory of the file in NAB's ``data/``."""
        return category_of(self.path)


@dataclass(frozen=True)
class CorpusScore:
    """NAB result of one detector under one profile.

    Attributes
    ----------
    profile : str
        Profile name (or ``"custom"`` for a bare cost matrix).
    threshold : float
        Anomaly-score threshold: rows scoring ``>=`` it are detections.
    raw : float
        Sum of the per-file raw scores (NAB's "Totals" row).
    null, perfect : float
        Raw scores of the null detector (never detects) and of a perfect one (detects
        every window at its first row), the ends of the normalised scale.
    normalised : float
        ``100 * (raw - null) / (perfect - null)``: the figure NAB publishes.
    tp, tn, fp, fn : int
        Row counts summed over files.
    windows, windows_detected : int
        Window counts summed over files.
    files : tuple of FileScore
        Per-file detail.
    """

    profile: str
    threshold: float
    raw: float
    null: float
    perfect: float
    normalised: float
    tp: int
    tn: int
    fp: int
    fn: int
    windows: int
    windows_detected: int
    files: tuple[FileScore, ...]

    def as_dict(self) -> dict[str, Any]:
        """Plain-data form, for JSON."""
        return asdict(self)


def score_file(f: NabFile, scores: ArrayLike, cost: CostMatrix, threshold: float) -> FileScore:
    """Port of ``Sweeper.scoreDataSet``: score one file at a threshold.

    Parameters
    ----------
    f : NabFile
        The file.
    scores : array_like
        Per-row anomaly scores.
    cost : CostMatrix
        Profile weights.
    threshold : float
        Rows scoring ``>= threshold`` are detections.

    Returns
    -------
    FileScore
    """
    s = _checked_scores(f, {f.path: scores})
    keep = f.scorable
    det = keep & (s >= threshold)
    inside = f.window_mask
    sweep = _sweep_scores(f, cost)
    counted = f.scored_windows()
    best = np.full(len(f.windows), -cost.fn)
    hit = det & inside
    np.maximum.at(best, f.window_id[hit], sweep[hit])
    score = float(sweep[det & ~inside].sum() + best[counted].sum())
    detected = np.unique(f.window_id[hit])
    return FileScore(
        path=f.path,
        score=score,
        tp=int(hit.sum()),
        tn=int((keep & ~inside & ~det).sum()),
        fp=int((det & ~inside).sum()),
        fn=int((keep & inside & ~det).sum()),
        windows=int(counted.size),
        windows_detected=int(detected.size),
    )


def null_score(files: Sequence[NabFile], profile: str | CostMatrix) -> float:
    """Raw score of the null detector, which never detects: every counted window missed."""
    cost = _cost(profile)
    return sum(score_file(f, np.zeros(f.n_rows), cost, math.inf).score for f in files)


def perfect_score(files: Sequence[NabFile], profile: str | CostMatrix) -> float:
    """Raw score of a perfect detector: ``tpWeight`` per labelled window (nab/runner.py)."""
    return _cost(profile).tp * sum(len(f.windows) for f in files)


def normalised_score(raw: float, null: float, perfect: float) -> float:
    """NAB's published figure: ``100 * (raw - null) / (perfect - null)``.

    Parameters
    ----------
    raw : float
        The detector's raw corpus score.
    null : float
        Raw score of the null detector.
    perfect : float
        Raw score of the perfect detector.

    Returns
    -------
    float
        0 for the null detector, 100 for the perfect one; NaN if the two coincide (a
        corpus without windows).
    """
    if perfect == null:
        return math.nan
    return 100.0 * (raw - null) / (perfect - null)


def score_corpus(
    files: Sequence[NabFile],
    scores_by_file: Mapping[str, ArrayLike],
    profile: str | CostMatrix,
    threshold: float | None = None,
) -> CorpusScore:
    """Score a detector's output on the corpus, as NAB's optimise + score + normalise.

    Parameters
    ----------
    files : sequence of NabFile
        The corpus.
    scores_by_file : mapping of str to array_like
        Relative path to per-row anomaly scores.
    profile : str or CostMatrix
        Profile name in :data:`PROFILES`, or its weights.
    threshold : float, optional
        Detection threshold; by default the one :func:`optimise_threshold` finds.

    Returns
    -------
    CorpusScore
    """
    cost = _cost(profile)
    if threshold is None:
        threshold, _ = optimise_threshold(files, scores_by_file, cost)
    per_file = tuple(score_file(f, scores_by_file[f.path], cost, threshold) for f in files)
    raw = float(sum(r.score for r in per_file))
    null = null_score(files, cost)
    perfect = perfect_score(files, cost)
    return CorpusScore(
        profile=profile if isinstance(profile, str) else "custom",
        threshold=float(threshold),
        raw=raw,
        null=null,
        perfect=perfect,
        normalised=normalised_score(raw, null, perfect),
        tp=sum(r.tp for r in per_file),
        tn=sum(r.tn for r in per_file),
        fp=sum(r.fp for r in per_file),
        fn=sum(r.fn for r in per_file),
        windows=sum(r.windows for r in per_file),
        windows_detected=sum(r.windows_detected for r in per_file),
        files=per_file,
    )


def score_profiles(
    files: Sequence[NabFile],
    scores_by_file: Mapping[str, ArrayLike],
    profiles: Mapping[str, CostMatrix] | None = None,
) -> dict[str, CorpusScore]:
    """Score under every profile, each with its own optimised threshold (NAB's scoreboard).

    Parameters
    ----------
    files : sequence of NabFile
        The corpus.
    scores_by_file : mapping of str to array_like
        Relative path to per-row anomaly scores.
    profiles : mapping of str to CostMatrix, optional
        Defaults to :data:`PROFILES`.

    Returns
    -------
    dict of str to CorpusScore
    """
    out = {}
    for name, cost in (profiles or PROFILES).items():
        res = score_corpus(files, scores_by_file, cost)
        out[name] = CorpusScore(**{**res.__dict__, "profile": name})
    return out


def _apply(job: tuple[Detector, FloatArray]) -> FloatArray:
    detector, values = job
    return np.asarray(detector(values), dtype=np.float64)


def run_detector(files: Sequence[NabFile], detector: Detector, processes: int = 2) -> dict[str, FloatArray]:
    """Run a detector over every file, in parallel worker processes.

    Parameters
    ----------
    files : sequence of NabFile
        The corpus.
    detector : callable
        Maps a file's whole value column (1-D float array) to per-row scores in [0, 1];
        it must look only at the past of each row itself. It must be picklable: a
        module-level function.
    processes : int
        Worker processes (fork); 1 runs in this process.

    Returns
    -------
    dict of str to ndarray
        Relative path to per-row anomaly scores.

    Raises
    ------
    ValueError
        If the detector returns the wrong shape, NaN, or scores outside [0, 1].
    """
    # Longest files first, so that no worker is left with a long file at the end.
    todo = sorted(files, key=lambda f: -f.n_rows)
    jobs = [(detector, f.values) for f in todo]
    outputs = pool_map(_apply, jobs, processes)
    out: dict[str, FloatArray] = {}
    for f, s in zip(todo, outputs, strict=True):
        if s.shape != (f.n_rows,):
            raise ValueError(f"{f.path}: detector returned shape {s.shape} for {f.n_rows} rows")
        if np.isnan(s).any() or (s < 0).any() or (s > 1).any():
            raise ValueError(f"{f.path}: detector scores must lie in [0, 1] without NaN")
        out[f.path] = s
    return {f.path: out[f.path] for f in files}


def ajan_scores(values: FloatArray, config: DetectorConfig | None = None) -> FloatArray:
    """ajan's detector on one NAB series: the aggregated anomaly score of each row.

    Parameters
    ----------
    values : ndarray
        A file's value column.

    Returns
    -------
    ndarray
        ``detect(values[:, None]).score``.
    """
    # Imported here: scoring must not depend on the detector, which changes independently.
    import ajan.analysis.detector

    return ajan.analysis.detector.detect(
        values.reshape(-1, 1), config=config or ajan.analysis.detector.DEFAULT_CONFIG
    ).score


def ajan_onset_scores(values: FloatArray, config: DetectorConfig | None = None) -> FloatArray:
    """ajan's incident-onset signal on one NAB series: ``detect(...).onset``.

    The score only where it reaches a new high over the preceding rows, 0
    elsewhere: one signal per incident rather than one per anomalous row, which
    is what NAB's rules (the first detection in a window counts, every other
    row above the threshold costs) measure.
    """
    import ajan.analysis.detector

    return ajan.analysis.detector.detect(
        values.reshape(-1, 1), config=config or ajan.analysis.detector.DEFAULT_CONFIG
    ).onset


def _resolve_detector(spec: str, config: DetectorConfig | None = None) -> Detector:
    if spec == "ajan":
        return functools.partial(ajan_scores, config=config)
    if spec == "ajan-onset":
        return functools.partial(ajan_onset_scores, config=config)
    module, sep, func = spec.partition(":")
    if not sep:
        raise SystemExit(f"--detector: 'ajan', 'ajan-onset' or 'module:function', not {spec!r}")
    import importlib

    detector: Detector = getattr(importlib.import_module(module), func)
    return detector


#: Detectors of :func:`run_named`, in table order.
NAMED_DETECTORS: tuple[str, ...] = ("ajan", "ajan-onset", "floor", "pca")
#: Each named detector's own alert decision, as printed.
ALERT_RULES: dict[str, str] = {
    "ajan": "score >= 0.5",
    "ajan-onset": "onset >= 0.5",
    "floor": "z >= 20",
    "pca": "> p99.9 of probation rows",
}


@dataclass(frozen=True, eq=False)
class NamedRun:
    """ajan and the named references, run over the corpus in one pass.

    Attributes
    ----------
    scores : dict
        ``{detector: {path: per-row score in [0, 1]}}`` for :data:`NAMED_DETECTORS`.
    alerts : dict
        ``{detector: {path: per-row own alert decision}}``, same keys.
    seconds : dict
        ``{detector: compute time summed over files}`` (ajan and ajan-onset share one run
        of the detector, counted under ``"ajan"``).
    """

    scores: dict[str, dict[str, FloatArray]]
    alerts: dict[str, dict[str, BoolArray]]
    seconds: dict[str, float]


def named_outputs(
    values: FloatArray, probation: int, config: DetectorConfig | None = None
) -> dict[str, tuple[FloatArray, BoolArray, float]]:
    """Score one NAB series with ajan (score and onset), the floor and PCA.

    Parameters
    ----------
    values : ndarray, shape (T,)
        A file's value column.
    probation : int
        The file's probationary rows: PCA is fitted on them (NAB does not score them).
    config : DetectorConfig, optional
        ajan's settings.

    Returns
    -------
    dict
        ``{detector: (score in [0, 1], own alert decision, seconds)}`` for
        :data:`NAMED_DETECTORS`.
    """
    import ajan.analysis.detector
    from ajan.evaluation import baselines

    x = values.reshape(-1, 1)
    cfg = config or ajan.analysis.detector.DEFAULT_CONFIG
    t0 = time.perf_counter()
    res = ajan.analysis.detector.detect(x, config=cfg)
    t1 = time.perf_counter()
    floor = baselines.floor_detect(x)
    t2 = time.perf_counter()
    pca = baselines.pca_detect(x, fit_rows=probation)
    t3 = time.perf_counter()
    onset = np.asarray(res.onset, dtype=np.float64)
    return {
        "ajan": (np.asarray(res.score, dtype=np.float64), np.asarray(res.alert, dtype=bool), t1 - t0),
        "ajan-onset": (onset, onset >= cfg.alert_on, 0.0),
        "floor": (baselines.squash(floor.score), floor.alert, t2 - t1),
        "pca": (baselines.squash(pca.score), pca.alert, t3 - t2),
    }


def _named_job(
    job: tuple[FloatArray, int, DetectorConfig | None],
) -> dict[str, tuple[FloatArray, BoolArray, float]]:
    return named_outputs(*job)


def run_named(files: Sequence[NabFile], processes: int = 2, config: DetectorConfig | None = None) -> NamedRun:
    """Run ajan and the named references over every file (see :func:`named_outputs`).

    Parameters
    ----------
    files : sequence of NabFile
        The corpus.
    processes : int
        Worker processes (fork); 1 runs in this process.
    config : DetectorConfig, optional
        ajan's settings.

    Returns
    -------
    NamedRun
    """
    todo = sorted(files, key=lambda f: -f.n_rows)  # longest first, as run_detector
    jobs = [(f.values, f.probation, config) for f in todo]
    outputs = pool_map(_named_job, jobs, processes)
    by_path = {f.path: o for f, o in zip(todo, outputs, strict=True)}
    scores: dict[str, dict[str, FloatArray]] = {d: {} for d in NAMED_DETECTORS}
    alerts: dict[str, dict[str, BoolArray]] = {d: {} for d in NAMED_DETECTORS}
    seconds = dict.fromkeys(NAMED_DETECTORS, 0.0)
    for f in files:
        for d in NAMED_DETECTORS:
            score, alert, sec = by_path[f.path][d]
            if score.shape != (f.n_rows,) or np.isnan(score).any() or (score < 0).any() or (score > 1).any():
                raise ValueError(f"{f.path}: {d} scores must be {f.n_rows} values in [0, 1]")
            scores[d][f.path] = score
            alerts[d][f.path] = alert
            seconds[d] += sec
    return NamedRun(scores, alerts, seconds)


def event_wise(files: Sequence[NabFile], alerts_by_file: Mapping[str, ArrayLike]) -> EventMetrics:
    """Event-wise metrics of alert decisions, NAB's windows as segments, pooled over files.

    Per file, :func:`ajan.evaluation.smd.event_metrics` on the rows after the probationary
    period: a segment is a maximal run of in-window rows (a window partly in probation
    counts by its scored part), detected when an alert falls inside it; every maximal run
    of alerts touching no window row is one false alarm. Counts are summed over files.

    Examples
    --------
    >>> f = make_file("a/b.csv", np.arange(10).astype("datetime64[s]"), np.zeros(10),
    ...               [("1970-01-01T00:00:05", "1970-01-01T00:00:06")], probation_percent=0.0)
    >>> m = event_wise([f], {"a/b.csv": np.arange(10) == 6})
    >>> m.segments, m.detected, m.false_alarms
    (1, 1, 0)
    """
    from ajan.evaluation.smd import event_metrics, pool_events

    per_file = []
    for f in files:
        al = np.asarray(alerts_by_file[f.path], dtype=bool)
        if al.shape != (f.n_rows,):
            raise ValueError(f"{f.path}: {al.shape} alerts for {f.n_rows} rows")
        per_file.append(event_metrics(al[f.probation :], f.window_mask[f.probation :]))
    return pool_events(per_file)


def figures(
    files: Sequence[NabFile],
    named: NamedRun,
    profiles: Mapping[str, Mapping[str, CorpusScore]] | None = None,
) -> dict[str, dict[str, float]]:
    """Every figure of the named detectors on NAB, as plain data.

    Parameters
    ----------
    files : sequence of NabFile
        The corpus.
    named : NamedRun
        Output of :func:`run_named`.
    profiles : mapping, optional
        ``{detector: {profile: CorpusScore}}`` already computed (:func:`score_profiles`);
        computed here otherwise.

    Returns
    -------
    dict
        ``{detector: {figure: value}}``: the normalised NAB score of each profile (keys
        ``standard``, ``reward_low_FP_rate``, ``reward_low_FN_rate``) and its threshold
        (``<profile>_threshold``); for the detectors with an alert decision, the
        event-wise ``segments``, ``detected``, ``false_alarms``, ``precision``,
        ``recall``, ``f1``, ``normal_flagged``; ``seconds`` of compute.
    """
    out: dict[str, dict[str, float]] = {}
    for d in NAMED_DETECTORS:
        prof = profiles[d] if profiles is not None else score_profiles(files, named.scores[d])
        fig: dict[str, float] = {}
        for name, r in prof.items():
            fig[name] = r.normalised
            fig[f"{name}_threshold"] = r.threshold
        e = event_wise(files, named.alerts[d])
        fig.update(
            segments=e.segments,
            detected=e.detected,
            false_alarms=e.false_alarms,
            precision=e.precision,
            recall=e.recall,
            f1=e.f1,
            normal_flagged=e.normal_flagged,
            seconds=named.seconds[d],
        )
        out[d] = fig
    return out


def format_comparison(
    files: Sequence[NabFile],
    named: NamedRun,
    profiles: Mapping[str, Mapping[str, CorpusScore]],
    extra: Mapping[str, Mapping[str, CorpusScore]] | None = None,
) -> str:
    """Markdown: NAB scores of ajan and the references, then their event-wise figures.

    Parameters
    ----------
    files : sequence of NabFile
        The corpus.
    named : NamedRun
        Output of :func:`run_named`.
    profiles : mapping
        ``{detector: score_profiles(...)}`` for :data:`NAMED_DETECTORS`.
    extra : mapping, optional
        Further detectors' :func:`score_profiles` (e.g. a ``module:function`` detector),
        listed in the NAB table only: they have no alert decision of their own.
    """
    names = list(PROFILES)
    lines = [
        "ajan beside the named references (ajan.evaluation.baselines), same run: floor = rolling "
        "robust z floor; pca = PCA reconstruction error fitted on each file's probationary rows "
        "(NAB has no baseline). NAB's threshold optimised per detector and profile:",
        "",
        "| detector | " + " | ".join(names) + " | standard threshold | windows detected | FP rows |",
        "|---|" + "---:|" * (len(names) + 3),
    ]
    for d, prof in {**profiles, **(extra or {})}.items():
        std = prof["standard"]
        lines.append(
            f"| {d} | "
            + " | ".join(f"{prof[n].normalised:.2f}" for n in names)
            + f" | {std.threshold:.10g} | {std.windows_detected}/{std.windows} | {std.fp} |"
        )
    lines += [
        "",
        "Event-wise at each detector's own alert decision (no threshold fitted on labels; "
        "NAB's windows as segments, probationary rows left out, counts pooled over files):",
        "",
        "| detector | alert decision | windows | detected | false alarms | precision | recall | F1 "
        "| normal flagged | seconds |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for d in NAMED_DETECTORS:
        e = event_wise(files, named.alerts[d])
        lines.append(
            f"| {d} | {ALERT_RULES[d]} | {e.segments} | {e.detected} | {e.false_alarms} "
            f"| {e.precision:.3f} | {e.recall:.3f} | {e.f1:.3f} | {100 * e.normal_flagged:.2f}% "
            f"| {named.seconds[d]:.1f} |"
        )
    return "\n".join(lines)


def format_report(results: Mapping[str, CorpusScore], title: str) -> str:
    """Markdown tables: one row per profile, then per category at the standard threshold.

    Parameters
    ----------
    results : mapping of str to CorpusScore
        Output of :func:`score_profiles`.
    title : str
        First line.

    Returns
    -------
    str
    """
    lines = [
        title,
        "",
        "| profile | score | raw | null | perfect | threshold | windows detected | FP rows |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r.normalised:.2f} | {r.raw:.3f} | {r.null:.1f} | {r.perfect:.1f} "
            f"| {r.threshold:.10g} | {r.windows_detected}/{r.windows} | {r.fp} |"
        )
    ref = results.get("standard") or next(iter(results.values()))
    lines += [
        "",
        f"Per category, {ref.profile} profile at threshold {ref.threshold:.10g} "
        "(TP/FN: windows detected/missed; FP: detected rows outside windows):",
        "",
        "| category | files | windows | TP | FN | FP | raw score |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    cats: dict[str, list[FileScore]] = {}
    for fs in ref.files:
        cats.setdefault(fs.category, []).append(fs)
    for cat, fss in sorted(cats.items()):
        w = sum(x.windows for x in fss)
        d = sum(x.windows_detected for x in fss)
        lines.append(
            f"| {cat} | {len(fss)} | {w} | {d} | {w - d} | {sum(x.fp for x in fss)} "
            f"| {sum(x.score for x in fss):.3f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: score a stored NAB results directory or run a detector on NAB.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; defaults to ``sys.argv[1:]``.

    Returns
    -------
    int
        Exit status.
    """
    parser = argparse.ArgumentParser(
        prog="python -m ajan.evaluation.nab",
        description="Score anomaly detectors on the Numenta Anomaly Benchmark (NAB v1.1 rules).",
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="NAB root directory")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--results-dir", type=Path, help="stored results: <dir>/<category>/<name>_<file>.csv")
    what.add_argument("--detector", help="'ajan', or 'module:function' mapping values to scores")
    parser.add_argument("--processes", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--json", type=Path, help="also write the full results here")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting of ajan's detector (DetectorConfig), repeatable",
    )
    parser.add_argument(
        "--no-references",
        action="store_true",
        help="with --detector: skip ajan and the named references (floor, pca) printed beside it",
    )
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    files = load_corpus(args.data)
    named: NamedRun | None = None
    if args.results_dir is not None:
        # Stored results are someone else's run: nothing to run beside them.
        scores = load_results_dir(args.results_dir, files)
        source = f"results {args.results_dir}"
    else:
        from ajan.analysis.detector import config_with

        try:
            config = config_with(args.set)
        except ValueError as exc:
            parser.error(str(exc))
        if not args.no_references:
            named = run_named(files, args.processes, config)
        if named is not None and args.detector in named.scores:
            scores = named.scores[args.detector]  # the same detect() call run_detector makes
        else:
            scores = run_detector(files, _resolve_detector(args.detector, config), args.processes)
        source = f"detector {args.detector}"
    results = score_profiles(files, scores)
    named_profiles: dict[str, dict[str, CorpusScore]] = {}
    if named is not None:
        named_profiles = {
            d: results if d == args.detector else score_profiles(files, named.scores[d])
            for d in NAMED_DETECTORS
        }
    elapsed = time.perf_counter() - t0
    n_win = sum(len(f.windows) for f in files)
    title = f"NAB ({args.data}): {len(files)} files, {n_win} windows; {source}; {elapsed:.1f} s"
    print(format_report(results, title))
    if named is not None:
        extra = {args.detector: results} if args.detector not in named_profiles else None
        print()
        print(format_comparison(files, named, named_profiles, extra))
    if args.json is not None:
        payload: dict[str, Any] = {
            "data": str(args.data),
            "source": source,
            "seconds": elapsed,
            "profiles": {k: v.as_dict() for k, v in results.items()},
        }
        if named is not None:
            payload["figures"] = figures(files, named, named_profiles)
        args.json.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
