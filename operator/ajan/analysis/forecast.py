"""When will a metric cross its SLO threshold? A trend forecast whose interval the baseline calibrates.

The forecast is a robust straight line (Theil-Sen: the median of pairwise slopes, which one spike
cannot tilt) fitted to the last two, and the last four, ``horizon``s of samples and extended
``horizon`` ahead; the more alarming of the two counts. The one setting is how early a breach
should be acted on. Only the part of the slope steeper than the baseline's usual tilts (their 90th
percentile) is extended: over an hour of baseline, one stretch in a hundred tilts further than all
the others by chance, and an alarm on each of those would be an alarm every hour or two.

How far to trust that line is not taken from textbook formulas, which assume independent noise:
Prometheus rates and quantiles over a range window are smooth, wander, and have a daily shape,
and a band computed as if they did not would be far too narrow. Instead the same forecast is made
at every earlier time of the baseline and compared with what the metric then did; the spread of
those errors, lead by lead, is the forecast's spread now (in the manner of split conformal
prediction). A metric whose short trends never last gets a wide interval; a steady one a narrow one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import ArrayLike

from ajan.analysis.robust import NOW_ROWS, FloatArray, quiet_nanmedian, quiet_nanquantile

#: Fewest samples a line is fitted to.
MIN_POINTS: Final = 4
#: Fewest earlier forecasts whose errors calibrate the spread at each lead.
MIN_ERRORS: Final = 10
#: Coverage of the crossing-time interval.
INTERVAL: Final = 0.9


@dataclass(frozen=True)
class BreachForecast:
    """When a metric's trend crosses its threshold.

    now: the median of the newest samples, in the metric's unit (NaN when unknown).
    slope: the fitted trend, in the metric's unit per second (only its part steeper than the
        baseline's usual tilts is extended, so ``eta_s`` may be later than this slope says).
    eta_s: seconds from now until the forecast crosses the threshold: 0 when the metric is beyond it
        already, inf when the forecast does not cross within ``horizon_s``.
    eta_low_s, eta_high_s: the :data:`INTERVAL` interval of that time (inf where open-ended): the
        earliest with the whole slope, the latest with its unusual part alone.
    horizon_s: how far ahead the forecast reaches.
    probability: probability that the metric is beyond the threshold at some time within the
        horizon (1 when it is already), in [0, 1].
    """

    now: float
    slope: float
    eta_s: float
    eta_low_s: float
    eta_high_s: float
    horizon_s: float
    probability: float

    @property
    def breached(self) -> bool:
        """The metric is beyond the threshold now."""
        return self.eta_s == 0.0


NO_FORECAST: Final = BreachForecast(math.nan, math.nan, math.inf, math.inf, math.inf, 0.0, 0.0)


def trend_lines(values: ArrayLike, span: int) -> tuple[FloatArray, FloatArray]:
    """Theil-Sen lines over every ``span`` consecutive samples, evaluated at each stretch's end.

    Parameters
    ----------
    values
        Evenly spaced samples, shape (n,), NaN where missing.
    span
        Samples per line (>= 2).

    Returns
    -------
    level, slope: shape (n - span + 1,) each; entry ``i`` is the line through samples
    ``i .. i + span - 1``, its value at the last of them and its slope per sample (NaN where a
    stretch has fewer than two finite samples).

    >>> level, slope = trend_lines([1.0, 2.0, 3.0, 10.0, 5.0], 4)
    >>> level.tolist(), slope.tolist()
    ([6.5, 5.0], [2.0, 1.0])
    """
    y = np.asarray(values, dtype=float)
    if span < 2 or y.size < span:
        return np.empty(0), np.empty(0)
    windows = sliding_window_view(y, span)  # (m, span)
    i, j = np.triu_indices(span, 1)
    slope = quiet_nanmedian((windows[:, j] - windows[:, i]) / (j - i), axis=1)
    offsets = np.arange(span, dtype=float) - (span - 1)
    level = quiet_nanmedian(windows - slope[:, None] * offsets, axis=1)
    return level, slope


def breach_forecast(
    values: ArrayLike, threshold: float, *, step_s: float, horizon_s: float, split: int, orient: float = 1.0
) -> BreachForecast:
    """Forecast when ``values`` cross ``threshold`` within ``horizon_s``.

    Parameters
    ----------
    values
        One metric's samples every ``step_s`` seconds, shape (n,), newest last, NaN where missing.
    threshold
        The bound, in the metric's unit.
    step_s
        Seconds between samples.
    horizon_s
        How far ahead to forecast, in seconds (> 0); the lines look back two and four times as far.
    split
        Samples before this index are the baseline that calibrates the forecast's errors; those
        after it are not used for that, so that an incident under way does not widen its own
        interval.
    orient
        +1 when the bound is a maximum (latency must stay below it), -1 when a minimum.

    Returns
    -------
    A metric beyond its bound now (median of the newest :data:`NOW_ROWS` samples) has ``eta_s`` 0
    and probability 1, whatever the baseline. Otherwise :data:`NO_FORECAST` (probability 0) when the
    baseline is too short for :data:`MIN_ERRORS` earlier forecasts of the horizon.

    Examples
    --------
    Noise around 0.40 s for five minutes, then p99 climbing 1 ms a second for a minute and a half: at
    that pace it crosses 0.5 s in about ten seconds.

    >>> rng = np.random.default_rng(0)
    >>> y = 0.40 + 0.002 * rng.standard_normal(400)
    >>> y[-90:] += 0.001 * np.arange(1, 91)
    >>> f = breach_forecast(y, 0.5, step_s=1.0, horizon_s=60.0, split=300)
    >>> f.probability > 0.99, 0 < f.eta_s < 30
    (True, True)
    >>> breach_forecast(y[:300], 0.5, step_s=1.0, horizon_s=60.0, split=300).probability
    0.0
    """
    if not (horizon_s > 0 and step_s > 0):
        raise ValueError(f"horizon_s and step_s must be > 0, got {horizon_s!r} and {step_s!r}")
    up = orient * np.asarray(values, dtype=float)
    bound = orient * threshold
    recent = up[-NOW_ROWS:]
    now = float(np.median(recent[np.isfinite(recent)])) if np.isfinite(recent).any() else math.nan
    if not math.isfinite(now) or not math.isfinite(bound):
        return NO_FORECAST
    if now >= bound:
        return BreachForecast(orient * now, math.nan, 0.0, 0.0, 0.0, horizon_s, 1.0)
    ahead = max(1, math.ceil(horizon_s / step_s))
    leads = np.arange(1, ahead + 1, dtype=float)
    # Looking back twice and four times as far as ahead: a line over a stretch as short as the
    # horizon tilts too readily to be extended that far, and a slow creep stands out from the noise
    # only over a longer stretch. The more alarming view counts.
    views = [_view(up, span, ahead, split) for span in (2 * ahead, 4 * ahead)]
    usable = [v for v in views if v is not None]
    if not usable:
        return NO_FORECAST
    hits = [v.probabilities(bound, leads) for v in usable]
    best = int(np.argmax([h.max() for h in hits]))
    view = usable[best]
    forecast = view.level + view.excess * leads
    tail = (1.0 - INTERVAL) / 2
    low, high = quiet_nanquantile(view.errors, [tail, 1.0 - tail], axis=0)
    # The best guess and the earliest crossing take the whole fitted slope; the latest, and the
    # probability, only its unusual part.
    trend = view.level + view.slope * leads
    centre = trend + quiet_nanmedian(view.errors.copy(), axis=0)
    earliest = trend + high

    def first_crossing(line: FloatArray) -> float:
        beyond = np.flatnonzero(line >= bound)
        return float(leads[beyond[0]] * step_s) if beyond.size else math.inf

    return BreachForecast(
        now=orient * now,
        slope=orient * view.slope / step_s,
        eta_s=first_crossing(centre),
        eta_low_s=first_crossing(earliest),
        eta_high_s=first_crossing(forecast + low),
        horizon_s=float(ahead * step_s),
        probability=float(np.clip(hits[best].max(), 0.0, 1.0)),
    )


@dataclass(frozen=True)
class _View:
    """One look-back's forecast: the line's level now, its slope and the part of it steeper than the
    baseline's usual tilts (per sample), and the baseline's errors of a level forecast, shape
    (n_past, ahead)."""

    level: float
    slope: float
    excess: float
    errors: FloatArray

    def probabilities(self, bound: float, leads: FloatArray) -> FloatArray:
        """P(beyond ``bound``) at each lead: the share of earlier errors that would have carried
        this forecast past it, out of one more than there are (never 1 on a finite baseline)."""
        forecast = self.level + self.excess * leads
        finite = np.isfinite(self.errors)
        hits = (finite & (forecast + self.errors >= bound)).sum(axis=0)
        return np.asarray(hits / (finite.sum(axis=0) + 1), dtype=float)


def _view(up: FloatArray, span: int, ahead: int, split: int) -> _View | None:
    """The forecast from lines over ``span`` samples, or None when the baseline cannot calibrate it."""
    span = max(MIN_POINTS, span)
    level, slope = trend_lines(up, span)
    # Earlier forecasts whose every lead up to the horizon lies in the baseline.
    past = split - span - ahead + 1
    if level.size == 0 or past < MIN_ERRORS or not math.isfinite(level[-1] + slope[-1]):
        return None
    # Only the part of the trend steeper than the baseline's usual tilts is extended: stretches of
    # smooth noise tilt lines all the time, and extending those would call noise a coming breach.
    normal = max(float(np.nanquantile(slope[: split - span + 1], INTERVAL)), 0.0)
    excess = max(0.0, float(slope[-1]) - normal)
    # Where the metric was k samples after each baseline stretch (the median of its NOW_ROWS
    # samples to then: a breach is the metric staying beyond, not one sample touching), against
    # the line's level at the stretch's end: where a metric goes from where it is.
    held = np.concatenate([np.full(NOW_ROWS - 1, np.nan), up])
    sustained = quiet_nanmedian(sliding_window_view(held, NOW_ROWS).copy(), axis=1)
    actual = sliding_window_view(sustained[span:], ahead)[:past]
    return _View(float(level[-1]), float(slope[-1]), excess, actual - level[:past, None])
