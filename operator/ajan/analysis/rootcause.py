"""Root-cause ranking: which metrics most likely explain an anomalous interval."""

from __future__ import annotations

import warnings
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ajan.analysis.anomaly import DEFAULT_Z_HALF
from ajan.analysis.robust import MAD_TO_SIGMA, FloatArray, quiet_nanmedian, quiet_nanquantile

#: Rows before an interval whose median is the level the interval is judged against: the floor
#: reference's 60 (docs/accuracy.md), so that the two differ only in where the level comes from.
LEVEL_ROWS: Final = 60
#: A reference that never moved has no spread; any move is then measured against this share of
#: the level, so that such moves rank by their relative size, above every metric with a spread.
RESOLUTION: Final = 1e-9


@dataclass(frozen=True)
class RootCauseRanking:
    """Per-metric responsibility for an interval.

    score: responsibility in [0, 1), shape (n_metrics,); higher = more likely the cause.
    magnitude: the ``quantile`` of the metric's |z| inside the interval (the max by default).
    onset: first index (absolute, into the input) at which the metric crossed
        ``onset_z`` inside the interval, or -1 if it never did.
    order: metric indices, most responsible first.
    """

    score: FloatArray
    magnitude: FloatArray
    onset: NDArray[np.int64]
    order: NDArray[np.int64]


def rank_root_causes(
    z: ArrayLike,
    start: int,
    end: int,
    *,
    onset_z: float = DEFAULT_Z_HALF / 2,
    onset_weight: float = 0.2,
    quantile: float = 1.0,
    z_half: float = DEFAULT_Z_HALF,
) -> RootCauseRanking:
    """Rank metrics by how likely each is responsible for the anomaly in ``[start, end)``.

    The evidence is the metric's own deviation during the interval, discounted
    by how late the metric joined in: in a cascading failure the cause moves
    first and the symptoms follow, so among equally deviant metrics the earlier
    one ranks higher. The deviation is the largest calibrated |z| in the
    interval by default: on SMD's labelled root causes (docs/accuracy.md) the
    maximum ranks better than the upper quartile or the mean, because a
    responsible metric is often off for only part of the segment; the z-scores
    are already calibrated, so a routinely spiky metric's maximum is not inflated.

    Parameters
    ----------
    z : array_like, shape (n_metrics, n_times)
        Per-metric z-scores (NaN = no data).
    start, end : int
        The interval, ``end`` exclusive, ``0 <= start < end <= n_times``.

    Examples
    --------
    >>> z = np.zeros((3, 50)); z[1, 20:40] = 9.0; z[2, 25:40] = 9.0; z[0, 30:40] = 3.0
    >>> rank_root_causes(z, 20, 40).order.tolist()
    [1, 2, 0]
    """
    zs = np.abs(np.asarray(z, dtype=float))
    if zs.ndim != 2:
        raise ValueError(f"z must be shaped (n_metrics, n_times), got {zs.shape}")
    n, t = zs.shape
    if not 0 <= start < end <= t:
        raise ValueError(f"need 0 <= start < end <= {t}, got start={start}, end={end}")
    window = zs[:, start:end]
    magnitude = np.nan_to_num(quiet_nanquantile(window, quantile, axis=1), nan=0.0)
    crossed = np.nan_to_num(window, nan=0.0) >= onset_z
    first = np.where(crossed.any(axis=1), np.argmax(crossed, axis=1), -1)
    length = end - start
    earliness = np.where(first >= 0, 1.0 - first / max(length, 1), 0.0)
    evidence = magnitude * ((1.0 - onset_weight) + onset_weight * earliness)
    # evidence / (evidence + z_half): 0.5 at z_half and, unlike a Gaussian-tail map,
    # far from saturated at |z| of 20 or 30, so strong candidates keep distinct scores.
    score = evidence / (evidence + z_half)
    order = np.lexsort((np.arange(n), -evidence))
    onset = np.where(first >= 0, first + start, -1).astype(np.int64)
    return RootCauseRanking(score, magnitude, onset, order.astype(np.int64))


@dataclass(frozen=True)
class ShiftRanking:
    """Per-metric responsibility for an interval, judged against the level just before it.

    score: ``deviation / (deviation + z_half)`` in [0, 1], shape (n_metrics,); higher = more
        likely the cause.
    deviation: the mean |x - level| over the interval's finite samples, in units of ``scale``;
        0 where the metric has no sample in the interval or no level before it.
    level: median of the last ``level_rows`` finite samples before the interval (NaN for a metric
        without any); with no row before it at all, the reference's median.
    scale: ``max(1.4826 * MAD, standard deviation)`` of the reference, floored at
        ``RESOLUTION * |level|``.
    order: metric indices, most responsible first (ties in index order).
    """

    score: FloatArray
    deviation: FloatArray
    level: FloatArray
    scale: FloatArray
    order: NDArray[np.int64]


def reference_scale(reference: ArrayLike) -> FloatArray:
    """``max(1.4826 * MAD, standard deviation)`` of each series, NaN ignored.

    The MAD alone is zero for a metric that sits at one value most of the time (an availability
    at 100 %, a counter at 0) and then says nothing about its rare moves; the standard deviation
    alone is inflated by the reference's own outliers. The larger of the two is the floor
    reference's scale (docs/accuracy.md).

    Parameters
    ----------
    reference : array_like, shape (n_metrics, n_times)
        Normal behaviour. A series with fewer than two finite samples gets NaN.

    Examples
    --------
    >>> reference_scale([[1.0, 2.0, 3.0, 4.0, 100.0], [5.0, 5.0, 5.0, 5.0, 5.0]]).round(3).tolist()
    [43.618, 0.0]
    """
    ref = np.asarray(reference, dtype=float)
    if ref.ndim != 2:
        raise ValueError(f"reference must be shaped (n_metrics, n_times), got {ref.shape}")
    finite = np.isfinite(ref).sum(axis=1)
    med = quiet_nanmedian(ref, axis=1)
    mad = quiet_nanmedian(np.abs(ref - med[:, None]), axis=1) * MAD_TO_SIGMA
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        std = np.nanstd(ref, axis=1, ddof=1)
    return np.where(finite >= 2, np.fmax(mad, std), np.nan)


def rank_level_shifts(
    values: ArrayLike,
    start: int,
    end: int,
    reference: ArrayLike | None = None,
    *,
    level_rows: int = LEVEL_ROWS,
    z_half: float = DEFAULT_Z_HALF,
) -> ShiftRanking:
    """Rank metrics by how far the interval ``[start, end)`` moved them from where they just were.

    For when the detector's calibrated z-scores are not available or not meaningful: a history
    too short to learn a baseline from (an incident export with a few rows before the symptom),
    or a healthy reference recorded at another time, at another traffic level. The level is
    taken from the rows right before the interval, so a reference at other levels cannot make
    every metric look shifted; the reference only gives each metric's normal spread. On PetShop
    this ranks root causes far better than z-scores against a reference from months later
    (docs/accuracy.md), and on SMD, where the baseline does precede, as well as they do.

    Parameters
    ----------
    values : array_like, shape (n_metrics, n_times)
        The history up to the end of the interval; NaN = no sample.
    start, end : int
        The interval, ``end`` exclusive, ``0 <= start < end <= n_times``. The rows before it
        give the level; ``start`` 0 needs a ``reference``, whose median is then the level.
    reference : array_like, shape (n_metrics, n_ref), optional
        Normal behaviour, for the spread; by default the rows before ``start``. A metric that has
        samples in the interval but none before it is not judged against the reference's level:
        on PetShop that put the nodes that had no traffic before the symptom (so no latency) among
        the suspects and cut top-3 from 0.885 to 0.654.
    level_rows : int
        How many rows before ``start`` the level is the median of.

    Raises
    ------
    ValueError
        On a bad shape or interval, or when no metric has a spread to be measured in (fewer
        than two finite reference samples each).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(0.0, 1.0, (3, 40)); x[1, 30:] += 6.0; x[2] += 50.0  # 2: another level
    >>> r = rank_level_shifts(x, 30, 40, reference=rng.normal(0.0, 1.0, (3, 200)))
    >>> int(r.order[0]), bool(r.deviation[2] < 2.0)
    (1, True)
    """
    x = np.asarray(values, dtype=float)
    if x.ndim != 2:
        raise ValueError(f"values must be shaped (n_metrics, n_times), got {x.shape}")
    n, t = x.shape
    if not (0 if reference is not None else 1) <= start < end <= t:
        raise ValueError(
            f"need 1 <= start < end <= {t} (a row before the interval, or a reference), "
            f"got start={start}, end={end}"
        )
    if level_rows < 1:
        raise ValueError(f"level_rows must be at least 1, got {level_rows}")
    before = x[:, :start]
    scale = reference_scale(before if reference is None else reference)
    if scale.shape != (n,):
        raise ValueError(f"reference has {scale.shape[0]} metrics, values {n}")
    if not np.isfinite(scale).any():
        raise ValueError("no metric has two finite reference samples to measure its spread")
    level = np.full(n, np.nan)
    for i in range(n):  # per metric: the last finite samples, wherever their gaps are
        finite = before[i][np.isfinite(before[i])]
        if finite.size:
            level[i] = float(np.median(finite[-level_rows:]))
    if start == 0:  # the export begins with the incident: an old level is the only one there is
        level = quiet_nanmedian(np.asarray(reference, dtype=float), axis=1)
    scale = np.fmax(scale, RESOLUTION * np.abs(level))
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        moved = np.nanmean(np.abs(x[:, start:end] - level[:, None]), axis=1)
        deviation = np.where(moved > 0, moved / scale, 0.0)
    # No level, no spread or no sample: no evidence, rather than NaN that sorts anywhere.
    deviation = np.where(np.isnan(deviation), 0.0, deviation)
    score = np.where(np.isinf(deviation), 1.0, deviation / (deviation + z_half))
    order = np.lexsort((np.arange(n), -deviation)).astype(np.int64)
    return ShiftRanking(score, deviation, level, scale, order)


def traverse_call_graph(
    score: Mapping[str, float],
    calls: Mapping[str, Sequence[str]],
    symptom: str,
    *,
    anomalous: float = 0.5,
) -> dict[str, float]:
    """Re-rank node scores by where trouble starts along the calls from the symptom node.

    Latency and errors travel from a callee up to its callers, so a node can only have caused
    the symptom if the symptom node reaches it through calls, and an anomalous node whose own
    callees are all quiet is where the trouble starts, while one with an anomalous callee is
    more likely its victim. The traversal PetShop's authors use as their baseline; on PetShop
    it lifts ajan's top-1 from 0.49 to 0.73 (docs/accuracy.md).

    Parameters
    ----------
    score : mapping of node to float
        Each node's score in [0, 1] (e.g. the highest of its metrics'); a node missing here
        scores 0.
    calls : mapping of node to sequence of nodes
        Whom each node calls (its ``dependsOn``); a node missing here calls nobody.
    symptom : str
        The node where the symptom showed (the SLO's service).
    anomalous : float
        The score from which a node counts as anomalous: 0.5, where ajan's scores put a move
        of ``z_half``.

    Returns
    -------
    dict
        For every node named in ``score`` or ``calls``: ``score + 1`` for an anomalous node the
        symptom reaches none of whose callees is anomalous, ``score`` for the other nodes it
        reaches, -1 for the nodes it does not reach. Sort descending for the ranking.

    Raises
    ------
    ValueError
        When ``symptom`` is not a node.

    Examples
    --------
    >>> calls = {"web": ["cart", "search"], "cart": ["db"]}
    >>> s = {"web": 0.9, "cart": 0.7, "db": 0.2, "search": 0.6, "batch": 0.95}
    >>> traverse_call_graph(s, calls, "web")
    {'web': 0.9, 'cart': 1.7, 'db': 0.2, 'search': 1.6, 'batch': -1.0}
    """
    nodes = list(dict.fromkeys([*score, *calls, *(c for callees in calls.values() for c in callees)]))
    if symptom not in nodes:
        raise ValueError(f"symptom node {symptom!r} is not in the call graph")
    reached = {symptom}
    queue = deque([symptom])
    while queue:
        for callee in calls.get(queue.popleft(), ()):
            if callee not in reached:
                reached.add(callee)
                queue.append(callee)
    out: dict[str, float] = {}
    for node in nodes:
        own = float(score.get(node, 0.0))
        if node not in reached:
            out[node] = -1.0
            continue
        explained = any(score.get(c, 0.0) >= anomalous for c in calls.get(node, ()))
        out[node] = own + (1.0 if own >= anomalous and not explained else 0.0)
    return out
