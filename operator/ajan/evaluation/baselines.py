"""Two named reference detectors that every evaluation table puts beside ajan.

They are what a user could write in an afternoon, so that a reader can see what ajan's
detector adds over them, dataset by dataset, in the same run:

``floor``, a rolling robust z floor
    Per metric, ``z_t = |x_t - median(previous 60 rows)| / max(1.4826 * MAD(previous 60 rows),
    std(every earlier row, baseline included, ddof=1))``; the row score is the highest ``z``
    over the metrics, an alert is ``z >= 20``. The standard deviation of the whole past is a
    floor under the local MAD: a metric that sat perfectly still for an hour does not alert on
    its first wiggle. It is causal: row ``t`` is judged on the rows before it only (and the
    baseline, which precedes everything). A missing sample (NaN), or a row with no finite
    earlier sample of that metric, gives ``z = 0``; a zero denominator under a non-zero
    deviation gives ``z = inf``, clipped to :data:`Z_CLIP` so that thresholds stay finite.
    Root cause: per metric, the mean over the interval's rows of
    ``|x - median(baseline)| / max(1.4826 * MAD(baseline), std(baseline))``, against the
    baseline's median and scale (without a baseline, the rows before the interval).

``pca``, PCA reconstruction error
    The strongest simple baseline of Sarfraz et al., "Quo Vadis, Unsupervised Time Series
    Anomaly Detection?" (ICML 2024). Every column is standardised with the baseline's mean
    and standard deviation (0 -> 1); PCA (numpy SVD) is fitted on the standardised baseline,
    keeping the fewest components that explain 90% of its variance, at most ``N - 1``
    (a univariate series keeps none, so its score is the squared standardised value). The
    row score is the squared reconstruction error. The alert decision is the row score
    strictly above the 99.9th percentile of the baseline's own scores: a label-free operating
    point, the same rule on every dataset, never tuned on labels. Without a baseline the
    model is fitted on the first rows of the series (by default 15%; NAB's runner passes its
    probationary period, which NAB does not score). Missing samples are imputed with the
    baseline mean (0 once standardised) and contribute no residual. Root cause: per metric,
    the mean squared reconstruction residual of its column over the interval.

Both are pure functions over numpy arrays shaped ``(n_times, n_metrics)``, the layout of
:func:`ajan.analysis.detector.detect`. :func:`reference_figures` runs the three evaluations
(SMD, NAB, PetShop) and returns every figure of ajan and the two references as plain data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

#: Names of the references, in the order the tables print them (after ajan).
REFERENCES: tuple[str, ...] = ("floor", "pca")

#: The floor's local window, in rows.
FLOOR_WINDOW = 60
#: The floor's alert level, in robust standard deviations.
FLOOR_ALERT_Z = 20.0
#: Scale factor that makes the MAD a consistent estimate of a normal standard deviation.
MAD_SCALE = 1.4826
#: Stands for an infinite z (a deviation over a zero scale): large, but finite, so that
#: threshold searches and NAB's [0, 1] squashing still see a number.
Z_CLIP = 1e12
#: Share of the baseline's variance the PCA components must explain.
PCA_VARIANCE = 0.90
#: Percentile of the baseline's own PCA scores above which a row is an alert.
PCA_ALERT_PERCENTILE = 99.9
#: Without a baseline, PCA fits on this leading share of the series.
PCA_FIT_FRACTION = 0.15
#: Rows per chunk of the rolling median: bounds the sliding windows' copy to
#: ``chunk * N * FLOOR_WINDOW`` floats (about 36 MB for SMD's 38 metrics).
_CHUNK_ROWS = 2048


@dataclass(frozen=True)
class ReferenceResult:
    """Per-row output of a reference detector.

    Attributes
    ----------
    score : ndarray, shape (T,)
        Row anomaly score, higher = more anomalous, finite and >= 0 (not a probability).
    alert : ndarray of bool, shape (T,)
        The detector's own alert decision.
    threshold : float
        The score from which (floor: ``>=``) or above which (pca: ``>``) a row alerts.
    """

    score: FloatArray
    alert: BoolArray
    threshold: float


@dataclass(frozen=True)
class PcaModel:
    """PCA fitted on a standardised reference.

    Attributes
    ----------
    mean, scale : ndarray, shape (N,)
        Column standardisation: ``(x - mean) / scale``.
    components : ndarray, shape (k, N)
        Orthonormal principal axes kept, ``0 <= k <= N - 1``.
    """

    mean: FloatArray
    scale: FloatArray
    components: FloatArray

    def residuals(self, values: ArrayLike) -> FloatArray:
        """Squared reconstruction residual of every cell, shape (T, N); 0 where NaN."""
        x = _as_2d(values)
        z = (x - self.mean) / self.scale
        missing = ~np.isfinite(z)
        # Imputing the reference mean (0) leaves a missing sample out of the projection's input.
        z = np.where(missing, 0.0, z)
        r = z - (z @ self.components.T) @ self.components
        return np.where(missing, 0.0, r * r)

    def scores(self, values: ArrayLike) -> FloatArray:
        """Squared reconstruction error of every row, shape (T,)."""
        return np.asarray(self.residuals(values).sum(axis=1), dtype=float)


def _as_2d(values: ArrayLike) -> FloatArray:
    x = np.asarray(values, dtype=float)
    if x.ndim != 2:
        raise ValueError(f"values must be shaped (T, N), got {x.shape}")
    return x


def _baseline(baseline: ArrayLike | None, n: int) -> FloatArray:
    if baseline is None:
        return np.zeros((0, n))
    b = _as_2d(baseline)
    if b.shape[1] != n:
        raise ValueError(f"baseline has {b.shape[1]} columns, values {n}")
    return b


def _nan_median_last(a: FloatArray) -> FloatArray:
    """Median over the last axis ignoring NaN; NaN where a slice has no finite value.

    Sorting puts NaN last, so the median of the ``k`` finite values sits at positions
    ``(k - 1) // 2`` and ``k // 2``; unlike ``np.nanmedian`` this warns about nothing.
    """
    s = np.sort(a, axis=-1)
    k = np.count_nonzero(~np.isnan(a), axis=-1)
    lo = np.take_along_axis(s, np.maximum((k - 1) // 2, 0)[..., None], axis=-1)[..., 0]
    hi = np.take_along_axis(s, np.maximum(k // 2, 0)[..., None], axis=-1)[..., 0]
    # min(k // 2, width - 1) is not needed: k // 2 <= width - 1 whenever k >= 1.
    return np.where(k > 0, 0.5 * (lo + hi), np.nan)


def _robust_ratio(deviation: FloatArray, scale: FloatArray) -> FloatArray:
    """``deviation / scale`` with the floor's rules: NaN -> 0, x / 0 -> Z_CLIP, 0 / 0 -> 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(scale > 0, deviation / np.where(scale > 0, scale, 1.0), np.inf)
    z = np.where(deviation > 0, z, 0.0)  # also turns NaN deviations (no sample, no median) into 0
    return np.minimum(z, Z_CLIP)


def _running_std(full: FloatArray) -> FloatArray:
    """Per column, the std (ddof=1) of the finite rows strictly before each row, shape (F, N).

    NaN where fewer than two earlier finite rows exist. Sums are taken around each column's
    first finite value, which is causal and keeps ``sum(x^2) - sum(x)^2 / n`` from cancelling
    on series with a large level and a small spread.
    """
    finite = np.isfinite(full)
    first = np.argmax(finite, axis=0)
    shift = np.where(finite.any(axis=0), full[first, np.arange(full.shape[1])], 0.0)
    d = np.where(finite, full - shift, 0.0)
    zero = np.zeros((1, full.shape[1]))
    n = np.concatenate([zero, np.cumsum(finite, axis=0)])[:-1]
    s1 = np.concatenate([zero, np.cumsum(d, axis=0)])[:-1]
    s2 = np.concatenate([zero, np.cumsum(d * d, axis=0)])[:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        var = (s2 - s1 * s1 / n) / (n - 1)
    return np.where(n >= 2, np.sqrt(np.maximum(var, 0.0)), np.nan)


def floor_zscores(
    values: ArrayLike, baseline: ArrayLike | None = None, window: int = FLOOR_WINDOW
) -> FloatArray:
    """The rolling robust z floor of every cell of ``values``, causally.

    Parameters
    ----------
    values : array_like, shape (T, N)
        Rows are times, columns metrics; NaN marks a missing sample.
    baseline : array_like, shape (Tb, N), optional
        Normal history preceding ``values``: the first rows' windows and the running
        standard deviation reach back into it.
    window : int
        Rows of the local median and MAD.

    Returns
    -------
    ndarray, shape (T, N)
        ``|x - median| / max(1.4826 * MAD, std)`` over the previous ``window`` rows (fewer at
        the start of the history) and the whole past, >= 0 and at most :data:`Z_CLIP`.

    Examples
    --------
    >>> b = np.tile([1.0, 2.0], 50).reshape(-1, 1)  # alternates 1, 2: median 1.5, MAD 0.5
    >>> x = b[:20].copy(); x[10] = 30.0
    >>> z = floor_zscores(x, b)
    >>> int(np.argmax(z[:, 0])), bool(z[10, 0] > FLOOR_ALERT_Z), float(z[9, 0].round(2))
    (10, True, 0.67)
    """
    x = _as_2d(values)
    base = _baseline(baseline, x.shape[1])
    full = np.concatenate([base, x])
    nb, t, n = base.shape[0], x.shape[0], x.shape[1]
    std = _running_std(full)[nb:]
    # Row g of ``full`` sees full[g - window : g]; NaN padding stands for "no row yet".
    padded = np.concatenate([np.full((window, n), np.nan), full])
    windows = sliding_window_view(padded, window, axis=0)  # (F + 1, N, window); windows[g] ends before g
    z = np.empty((t, n))
    for lo in range(0, t, _CHUNK_ROWS):
        hi = min(lo + _CHUNK_ROWS, t)
        w = windows[nb + lo : nb + hi]
        med = _nan_median_last(w)
        mad = _nan_median_last(np.abs(w - med[..., None]))
        scale = np.fmax(MAD_SCALE * mad, std[lo:hi])  # fmax: a NaN side gives way to the other
        z[lo:hi] = _robust_ratio(np.abs(x[lo:hi] - med), scale)
    return z


def floor_detect(
    values: ArrayLike, baseline: ArrayLike | None = None, alert_z: float = FLOOR_ALERT_Z
) -> ReferenceResult:
    """The floor's row score (highest z over the metrics) and its alert ``score >= alert_z``.

    Parameters
    ----------
    values : array_like, shape (T, N)
    baseline : array_like, shape (Tb, N), optional
    alert_z : float
        The alert level.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> b, x = rng.normal(0, 1, (300, 3)), rng.normal(0, 1, (200, 3)); x[100, 2] += 40
    >>> np.flatnonzero(floor_detect(x, b).alert).tolist()
    [100]
    """
    z = floor_zscores(values, baseline)
    score = z.max(axis=1) if z.shape[1] else np.zeros(z.shape[0])
    return ReferenceResult(score=score, alert=score >= alert_z, threshold=float(alert_z))


def floor_deviation(values: ArrayLike, reference: ArrayLike) -> FloatArray:
    """``|x - median(reference)| / max(1.4826 * MAD(reference), std(reference))`` per cell.

    Parameters
    ----------
    values : array_like, shape (T, N)
    reference : array_like, shape (Tr, N)
        The rows that define normal; NaN ignored. A column without a finite reference value
        gives 0, as does a missing sample; a zero scale gives :data:`Z_CLIP`.

    Returns
    -------
    ndarray, shape (T, N)

    Examples
    --------
    >>> ref = [[0.0, 1.0], [0.0, 1.0], [0.0, 1.0], [4.0, 1.0]]  # median 0, MAD 0, std 2
    >>> floor_deviation([[4.0, 1.0], [6.0, 2.0]], ref).tolist()
    [[2.0, 0.0], [3.0, 1000000000000.0]]
    """
    x = _as_2d(values)
    ref = _baseline(reference, x.shape[1])
    med = _nan_median_last(ref.T)
    mad = _nan_median_last(np.abs(ref - med).T)
    finite = np.isfinite(ref)
    k = finite.sum(axis=0)
    centred = np.where(finite, ref - np.where(finite, ref, 0.0).sum(axis=0) / np.maximum(k, 1), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        std = np.where(k >= 2, np.sqrt((centred * centred).sum(axis=0) / (k - 1)), np.nan)
    return _robust_ratio(np.abs(x - med), np.fmax(MAD_SCALE * mad, std))


def floor_rank(values: ArrayLike, start: int, end: int, baseline: ArrayLike | None = None) -> FloatArray:
    """The floor's responsibility per metric (shape (N,)) for the rows ``values[start:end]``.

    The mean over those rows of :func:`floor_deviation` against ``baseline``, or, when there
    is no baseline (or an empty one), against ``values[:start]``.

    Examples
    --------
    >>> b = np.random.default_rng(1).normal(0, 1, (200, 3))
    >>> x = np.zeros((10, 3)); x[5:, 1] = 9.0
    >>> int(np.argmax(floor_rank(x, 5, 10, b)))
    1
    """
    x = _as_2d(values)
    if not 0 <= start < end <= x.shape[0]:
        raise ValueError(f"need 0 <= start < end <= {x.shape[0]}, got start={start}, end={end}")
    ref = _baseline(baseline, x.shape[1])
    if ref.shape[0] == 0:
        ref = x[:start]
    return np.asarray(floor_deviation(x[start:end], ref).mean(axis=0), dtype=float)


def pca_fit(reference: ArrayLike, variance: float = PCA_VARIANCE) -> PcaModel:
    """Standardise ``reference`` and keep the fewest principal axes explaining ``variance``.

    Parameters
    ----------
    reference : array_like, shape (Tr, N)
        Normal rows; NaN is ignored by the standardisation and imputed as the mean.
    variance : float
        Share of the standardised variance the kept axes must explain, in (0, 1].

    Returns
    -------
    PcaModel
        At most ``N - 1`` axes, so that some residual always remains; none for ``N = 1``
        or a reference without variance.

    Examples
    --------
    >>> t = np.linspace(0, 20, 400)
    >>> ref = np.column_stack([np.sin(t), 2 * np.sin(t), np.cos(t)])
    >>> pca_fit(ref).components.shape
    (2, 3)
    """
    ref = _as_2d(reference)
    n = ref.shape[1]
    finite = np.isfinite(ref)
    k = finite.sum(axis=0)
    filled = np.where(finite, ref, 0.0)
    mean = filled.sum(axis=0) / np.maximum(k, 1)
    std = np.sqrt((np.where(finite, ref - mean, 0.0) ** 2).sum(axis=0) / np.maximum(k, 1))
    scale = np.where(std > 0, std, 1.0)
    z = np.where(finite, (ref - mean) / scale, 0.0)
    if ref.shape[0] == 0 or n < 2:
        return PcaModel(mean, scale, np.zeros((0, n)))
    _, s, vt = np.linalg.svd(z, full_matrices=False)
    energy = s * s
    total = float(energy.sum())
    if total <= 0.0:
        return PcaModel(mean, scale, np.zeros((0, n)))
    # Fewest axes whose cumulative share reaches ``variance`` (the tiny slack absorbs
    # round-off when the share is exactly reached), capped at N - 1.
    kept = int(np.searchsorted(np.cumsum(energy) / total, variance - 1e-12)) + 1
    kept = min(kept, n - 1, vt.shape[0])
    return PcaModel(mean, scale, vt[:kept].copy())


def _fit_reference(x: FloatArray, baseline: ArrayLike | None, fit_rows: int | None) -> FloatArray:
    base = _baseline(baseline, x.shape[1])
    if base.shape[0]:
        return base
    rows = fit_rows if fit_rows is not None else math.floor(PCA_FIT_FRACTION * x.shape[0])
    return x[: max(rows, 2)]


def pca_detect(
    values: ArrayLike,
    baseline: ArrayLike | None = None,
    fit_rows: int | None = None,
    percentile: float = PCA_ALERT_PERCENTILE,
) -> ReferenceResult:
    """PCA reconstruction error of every row and its label-free alert decision.

    Parameters
    ----------
    values : array_like, shape (T, N)
    baseline : array_like, shape (Tb, N), optional
        Normal rows to fit on. Without one, the model is fitted on ``values[:fit_rows]``.
    fit_rows : int, optional
        Leading rows of ``values`` to fit on when there is no baseline; by default 15% of them.
    percentile : float
        Alerts are rows scoring above this percentile of the fit rows' own scores.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> b = rng.normal(0, 1, (1000, 1)) @ np.ones((1, 4)) + rng.normal(0, 0.1, (1000, 4))
    >>> x = b[:100].copy(); x[50, 0] += 3.0  # breaks the correlation, within the range
    >>> res = pca_detect(x, b)
    >>> int(np.argmax(res.score)), bool(res.alert[50])
    (50, True)
    """
    x = _as_2d(values)
    ref = _fit_reference(x, baseline, fit_rows)
    model = pca_fit(ref)
    threshold = float(np.percentile(model.scores(ref), percentile))
    score = model.scores(x)
    return ReferenceResult(score=score, alert=score > threshold, threshold=threshold)


def pca_rank(values: ArrayLike, start: int, end: int, baseline: ArrayLike | None = None) -> FloatArray:
    """PCA's responsibility per metric (shape (N,)) for the rows ``values[start:end]``.

    The mean squared reconstruction residual of each column over those rows, the model
    fitted on ``baseline`` (without one, on ``values[:start]``).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> b = rng.normal(0, 1, (500, 1)) @ np.ones((1, 3)) + rng.normal(0, 0.1, (500, 3))
    >>> x = b[:20].copy(); x[10:, 2] -= 2.0
    >>> int(np.argmax(pca_rank(x, 10, 20, b)))
    2
    """
    x = _as_2d(values)
    if not 0 <= start < end <= x.shape[0]:
        raise ValueError(f"need 0 <= start < end <= {x.shape[0]}, got start={start}, end={end}")
    base = _baseline(baseline, x.shape[1])
    model = pca_fit(base if base.shape[0] else x[:start])
    return np.asarray(model.residuals(x[start:end]).mean(axis=0), dtype=float)


def squash(score: ArrayLike) -> FloatArray:
    """Map a score in [0, inf] to [0, 1] by ``s / (1 + s)``, strictly increasing.

    NAB wants scores in [0, 1]; its threshold sweep depends only on their order, which this
    keeps, so a reference scores on NAB exactly as its raw score would.

    Examples
    --------
    >>> squash([0.0, 1.0, 3.0]).tolist()
    [0.0, 0.5, 0.75]
    """
    s = np.maximum(np.asarray(score, dtype=float), 0.0)
    return np.where(np.isinf(s), 1.0, s / (1.0 + np.where(np.isinf(s), 0.0, s)))


def reference_figures(
    data: Path | None = None,
    datasets: tuple[str, ...] = ("smd", "nab", "petshop"),
    processes: int = 2,
) -> dict[str, dict[str, dict[str, float]]]:
    """Every headline figure of ajan and the two references, per dataset, as plain data.

    Runs the same code as the three commands (``python -m ajan.evaluation.smd``,
    ``... .nab --detector ajan``, ``... .petshop --split all``) with their defaults, so that a
    regression test can pin the figures the tables print.

    Parameters
    ----------
    data : Path, optional
        The directory holding ``smd/``, ``nab/`` and ``petshop/``; by default
        :data:`ajan.evaluation.SHARED_DATA`.
    datasets : tuple of str
        Which of ``"smd"``, ``"nab"`` and ``"petshop"`` to run.
    processes : int
        Worker processes for SMD and NAB.

    Returns
    -------
    dict
        ``{dataset: {detector: {figure: value}}}``. Detectors are ``"ajan"``, ``"floor"`` and
        ``"pca"`` (NAB adds ``"ajan-onset"``, scored on NAB's profiles only). The figures are
        those of :func:`ajan.evaluation.smd.figures`, :func:`ajan.evaluation.nab.figures` and
        :func:`ajan.evaluation.petshop.figures`.
    """
    # Imported here: those modules import this one.
    from ajan.evaluation import SHARED_DATA, nab, petshop, smd

    root = Path(data) if data is not None else SHARED_DATA
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name in datasets:
        if name == "smd":
            machines = smd.available_machines(root / "smd")
            out[name] = smd.figures(smd.run(root / "smd", machines, processes=processes))
        elif name == "nab":
            files = nab.load_corpus(root / "nab")
            out[name] = nab.figures(files, nab.run_named(files, processes=processes))
        elif name == "petshop":
            pet = root / "petshop" / "low_traffic"
            graph = petshop.read_graph(pet / "graph.csv")
            baseline = petshop.read_metrics(pet / "noissue" / "metrics.csv")
            issues = petshop.load_issues(pet, ("train", "test"))
            out[name] = petshop.figures([petshop.rank_issue(i, baseline, graph) for i in issues])
        else:
            raise ValueError(f"unknown dataset {name!r}; known: smd, nab, petshop")
    return out
