"""``ajan report``: a RemediationPlan as one self-contained HTML page, for review or an incident.

The page needs nothing but itself: inline CSS, inline SVG, no script, no fetched resource (a
Content-Security-Policy says so to the browser, so a string that escaped the escaping still could
not run). It shows the plan's header, an anomaly timeline per metric (from Prometheus, when it
answers), the correlations as a leader x follower heatmap, the evidence tables, the patch that was
(or in dry-run would have been) sent, and the plan's conditions and history.

Layers, as in :mod:`ajan.backtest`: :func:`render` is pure (models and series in, a string out);
:func:`fetch_timeline` is the Prometheus I/O and never raises for an unreachable or failing
Prometheus (the page says why it has no timeline instead); :func:`read_plan` is the Kubernetes
I/O; :func:`run` is the whole command. The standard library's :func:`html.escape` and string
formatting build the page: a template engine would add a dependency for a dozen fixed sections and
would still leave the SVG geometry to Python.
"""

from __future__ import annotations

import asyncio
import html
import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from pydantic import ValidationError

from ajan.analysis.robust import SCALE_FLOOR_OF_LEVEL, robust_location_scale
from ajan.clients.prometheus import DEFAULT_TIMEOUT_S
from ajan.errors import DataError
from ajan.models import CorrelationPolicy, RemediationPlan, parse_duration
from ajan.models.common import DNS_SUBDOMAIN_PATTERN, GROUP, VERSION, Correlation, validation_message
from ajan.models.plan import Anomaly, Evidence, PlanPhase
from ajan.services.window import Bounds, most_telling, window_bounds
from ajan.table import InputError

#: Points per chart at most: a finer grid than the page's pixels only makes the file bigger.
MAX_CHART_POINTS: Final = 720
#: Robust sigmas either side of the baseline's median drawn as its band.
BAND_SIGMAS: Final = 3.0
#: The diverging scale of the heatmap: r = -1, 0, +1 (ColorBrewer RdBu, readable by the colour-blind).
NEGATIVE_RGB: Final = (33, 102, 172)
NEUTRAL_RGB: Final = (247, 247, 247)
POSITIVE_RGB: Final = (178, 24, 43)
_SEVERITY_RGB: Final = {"info": "#2166ac", "warning": "#d08a00", "critical": "#b2182b"}


class ReportError(InputError):
    """Bad input to a report (plan not found, bad kubeconfig, unreachable cluster), as one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


# --- data the renderer takes ----------------------------------------------------------------------


@dataclass(frozen=True)
class MetricSeries:
    """One metric's values around the plan: ``timestamps`` in epoch seconds, ``values`` in the
    metric's unit (NaN for a gap), both of shape (n,); or ``error`` when its query gave nothing."""

    metric: str
    query: str
    timestamps: npt.NDArray[np.float64] = field(default_factory=lambda: np.empty(0))
    values: npt.NDArray[np.float64] = field(default_factory=lambda: np.empty(0))
    error: str | None = None


@dataclass(frozen=True)
class Timeline:
    """The metrics over ``[start, end]`` (epoch seconds) around the plan's time ``at``, or the reason
    there are none (``unavailable``: Prometheus unreachable, no URL, the policy gone...).

    ``window`` is the operator's evaluation window at ``at`` (see
    :func:`ajan.services.window.window_bounds`): its rows before ``current_from`` are the baseline.
    """

    at: float
    start: float = math.nan
    end: float = math.nan
    window: Bounds | None = None
    series: tuple[MetricSeries, ...] = ()
    source: str = ""
    unavailable: str | None = None


@dataclass(frozen=True)
class HistoryEntry:
    """One line of the plan's history: when, what, and the detail."""

    at: datetime
    what: str
    detail: str = ""


# --- formatting helpers ---------------------------------------------------------------------------


def _e(text: object) -> str:
    """Every string that reached us from a user or the cluster goes through here."""
    return html.escape(str(text), quote=True)


def _num(value: float | None, digits: int = 4) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.{digits}g}"


def _iso(at: datetime | float | None) -> str:
    if at is None:
        return "-"
    if isinstance(at, float | int):
        if not math.isfinite(at):
            return "-"
        at = datetime.fromtimestamp(at, UTC)
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _clock(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%H:%M:%S")


def _seconds(value: float) -> str:
    if value < 120:
        return f"{value:g}s"
    if value < 7200:
        return f"{value / 60:.3g}m"
    return f"{value / 3600:.3g}h"


def r_colour(r: float) -> str:
    """The heatmap's fill for a correlation ``r`` in [-1, 1]: blue (-1), near-white (0), red (+1)."""
    r = max(-1.0, min(1.0, r))
    end = POSITIVE_RGB if r >= 0 else NEGATIVE_RGB
    t = abs(r)
    rgb = (round(n + (e - n) * t) for n, e in zip(NEUTRAL_RGB, end, strict=True))
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def _badge(text: str, colour: str | None = None) -> str:
    style = f' style="background:{colour}"' if colour else ""
    return f'<span class="badge"{style}>{_e(text)}</span>'


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], empty: str, cls: str = "") -> str:
    """A table; cells are HTML already (escaped by the caller)."""
    rows = list(rows)
    if not rows:
        return f'<p class="note">{_e(empty)}</p>'
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def _bar(fraction: float, colour: str = "#555") -> str:
    width = max(0.0, min(1.0, fraction)) * 100
    return (
        f'<span class="bar"><span style="width:{width:.1f}%;background:{colour}"></span></span> '
        f"{fraction:.3f}"
    )


# --- the anomaly timeline -------------------------------------------------------------------------

_CHART_W: Final = 560
_CHART_H: Final = 170
_PAD_L, _PAD_R, _PAD_T, _PAD_B = 58, 12, 14, 30


def baseline_band(
    timestamps: npt.NDArray[np.float64], values: npt.NDArray[np.float64], start: float, until: float
) -> tuple[float, float, float] | None:
    """The baseline's (low, median, high): median +- ``BAND_SIGMAS`` robust sigmas.

    The baseline is the points in ``[start, until)``: what the operator learnt normal from is
    ``[window.start, window.current_from)`` of its `Bounds`. Location and scale are the operator's
    own (:func:`ajan.analysis.robust.robust_location_scale`: the scaled MAD, and its fallbacks for
    a baseline mostly of one value). None with fewer than five finite points there.
    """
    mask = (timestamps >= start) & (timestamps < until)
    base = values[mask & np.isfinite(values)]
    if base.size < 5:
        return None
    robust = robust_location_scale(base)
    median, sigma = float(robust.location), float(robust.scale)
    if sigma == 0.0:  # a constant baseline: a hairline band rather than none
        sigma = max(abs(median) * SCALE_FLOOR_OF_LEVEL, 1e-12)
    return median - BAND_SIGMAS * sigma, median, median + BAND_SIGMAS * sigma


def _y_range(
    values: npt.NDArray[np.float64], band: tuple[float, float, float] | None, anomaly: Anomaly | None
) -> tuple[float, float]:
    """The chart's value axis: the finite ``values``, the band and the evidence, with a margin."""
    ys = [float(v) for v in values]
    if band is not None:
        ys += [band[0], band[2]]
    if anomaly is not None:
        ys += [anomaly.baseline, anomaly.value]
    y0, y1 = min(ys), max(ys)
    if y1 - y0 < 1e-12:
        # A flat line: an axis around its own value (a constant 0.002 on -1..1 reads as zero).
        half = max(abs(y0) * 0.5, 1e-9)
        y0, y1 = y0 - half, y1 + half
    pad = (y1 - y0) * 0.06
    return y0 - pad, y1 + pad


def _series_paths(points: Sequence[tuple[float, float] | None]) -> list[str]:
    """SVG of the series, in chart coordinates (None where a sample is missing): one path per run of
    samples, so a gap in the data stays a gap on the page; a lone sample is a dot."""
    segments: list[list[str]] = [[]]
    for point in points:
        if point is not None:
            segments[-1].append(f"{point[0]:.1f},{point[1]:.1f}")
        elif segments[-1]:
            segments.append([])
    paths = []
    for seg in segments:
        if len(seg) == 1:
            cx, cy = seg[0].split(",")
            paths.append(f'<circle class="point" cx="{cx}" cy="{cy}" r="1.5"/>')
        elif seg:
            paths.append(f'<polyline class="line" points="{" ".join(seg)}"/>')
    return paths


def _chart(series: MetricSeries, timeline: Timeline, anomaly: Anomaly | None) -> str:
    """One metric's SVG line chart: the band, the evidence's baseline, the onset, the plan's time."""
    ts, vs = series.timestamps, series.values
    finite = np.isfinite(vs)
    x0, x1 = timeline.start, timeline.end
    window = timeline.window
    # Without the operator's window (a timeline made by hand), all that precedes the plan.
    if window is None:
        band = baseline_band(ts, vs, -math.inf, timeline.at)
    else:
        band = baseline_band(ts, vs, window.start, window.current_from)
    y0, y1 = _y_range(vs[finite], band, anomaly)
    w, h = _CHART_W - _PAD_L - _PAD_R, _CHART_H - _PAD_T - _PAD_B

    def sx(t: float) -> float:
        return _PAD_L + (t - x0) / (x1 - x0) * w if x1 > x0 else _PAD_L

    def sy(v: float) -> float:
        return _PAD_T + (y1 - v) / (y1 - y0) * h

    parts = [
        f'<svg class="chart" viewBox="0 0 {_CHART_W} {_CHART_H}" width="{_CHART_W}" height="{_CHART_H}" '
        f'role="img" xmlns="http://www.w3.org/2000/svg"><title>{_e(series.metric)}</title>',
        f'<rect class="plot" x="{_PAD_L}" y="{_PAD_T}" width="{w}" height="{h}"/>',
    ]
    if band is not None:
        top, bottom = sy(band[2]), sy(band[0])
        parts.append(
            f'<rect class="band" x="{_PAD_L}" y="{top:.1f}" width="{w}" '
            f'height="{max(bottom - top, 0.5):.1f}"><title>baseline {_num(band[1])} '
            f"± {BAND_SIGMAS:g} sigma: [{_num(band[0])}, {_num(band[2])}]</title>"
            "</rect>"
        )
    if anomaly is not None and anomaly.since is not None:
        onset = max(x0, min(x1, anomaly.since.timestamp()))
        at = max(x0, min(x1, timeline.at))
        if at > onset:
            parts.append(
                f'<rect class="onset" x="{sx(onset):.1f}" y="{_PAD_T}" width="{sx(at) - sx(onset):.1f}" '
                f'height="{h}"><title>anomalous since {_e(_iso(anomaly.since))}</title></rect>'
            )
    if anomaly is not None:
        y = sy(anomaly.baseline)
        parts.append(
            f'<line class="baseline" x1="{_PAD_L}" x2="{_PAD_L + w}" y1="{y:.1f}" y2="{y:.1f}">'
            f"<title>evidence baseline {_num(anomaly.baseline)}</title></line>"
        )
    parts += _series_paths(
        [(sx(float(t)), sy(float(v))) if ok else None for t, v, ok in zip(ts, vs, finite, strict=True)]
    )
    if x0 <= timeline.at <= x1:
        px = sx(timeline.at)
        parts.append(
            f'<line class="plan" x1="{px:.1f}" x2="{px:.1f}" y1="{_PAD_T}" y2="{_PAD_T + h}">'
            f"<title>plan proposed {_e(_iso(timeline.at))}</title></line>"
            # Left of the line when the plan is near the right edge (a report made soon after).
            + (
                f'<text class="plan-label" x="{px - 3:.1f}" y="{_PAD_T + 10}" text-anchor="end">plan</text>'
                if px > _PAD_L + w - 30
                else f'<text class="plan-label" x="{px + 3:.1f}" y="{_PAD_T + 10}">plan</text>'
            )
        )
    parts.append(
        f'<text class="axis" x="{_PAD_L - 4}" y="{_PAD_T + 9}" text-anchor="end">{_e(_num(y1, 3))}</text>'
        f'<text class="axis" x="{_PAD_L - 4}" y="{_PAD_T + h}" text-anchor="end">{_e(_num(y0, 3))}</text>'
        f'<text class="axis" x="{_PAD_L}" y="{_CHART_H - 10}">{_clock(x0)}</text>'
        f'<text class="axis" x="{_PAD_L + w}" y="{_CHART_H - 10}" text-anchor="end">{_clock(x1)} UTC</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def _timeline_section(plan: RemediationPlan, policy: CorrelationPolicy | None, timeline: Timeline) -> str:
    evidence = plan.spec.evidence
    anomalies = {a.metric: a for a in evidence.anomalies}
    intro = (
        '<p class="note">Each metric over the policy window before and after the plan '
        "(red line). Grey band: the baseline's median ± "
        f"{BAND_SIGMAS:g} robust &sigma;; dashed: the evidence's baseline; "
        "shaded: anomalous since the onset. Anomalous metrics first.</p>"
    )
    if timeline.unavailable is not None:
        queries = ""
        if policy is not None:
            queries = "<h3>The policy's metrics</h3>" + _table(
                ["metric", "role", "query"],
                (
                    [
                        _e(m.name) + (" (anomalous)" if m.name in anomalies else ""),
                        _e(m.role.value),
                        f"<code>{_e(m.query)}</code>",
                    ]
                    for m in policy.spec.metrics
                ),
                "",
            )
        return (
            '<section id="timeline"><h2>Anomaly timeline</h2>'
            f'<p class="unavailable">Timeline unavailable: {_e(timeline.unavailable)}. '
            "The evidence below is what the operator recorded when it decided.</p>"
            f"{queries}</section>"
        )
    by_name = {s.metric: s for s in timeline.series}
    order = [m for m in anomalies if m in by_name]
    order += [s.metric for s in timeline.series if s.metric not in anomalies]
    cards = []
    for name in order:
        series = by_name[name]
        anomaly = anomalies.get(name)
        flag = (
            f' <span class="flag">anomalous, z {_num(anomaly.z_score, 3)}</span>'
            if anomaly is not None
            else ""
        )
        head = f'<h3>{_e(name)}{flag}</h3><p class="query"><code>{_e(series.query)}</code></p>'
        if series.error is not None:
            body = f'<p class="unavailable">No data: {_e(series.error)}</p>'
        else:
            body = _chart(series, timeline, anomaly)
        cards.append(f'<div class="card{" anomalous" if anomaly else ""}">{head}{body}</div>')
    span = (
        f"<p>From {_e(_iso(timeline.start))} to {_e(_iso(timeline.end))}"
        f"{', from ' + _e(timeline.source) if timeline.source else ''}.</p>"
    )
    charts = f'<div class="charts">{"".join(cards)}</div>'
    return f'<section id="timeline"><h2>Anomaly timeline</h2>{intro}{span}{charts}</section>'


# --- the correlation heatmap ----------------------------------------------------------------------

_CELL_W: Final = 76
_CELL_H: Final = 44
_LABEL_W: Final = 150
_LABEL_H: Final = 110


def _heatmap(correlations: Sequence[Correlation]) -> str:
    """An SVG matrix, leaders down, followers across; one coloured cell per correlation."""
    if not correlations:
        return '<p class="note">No significant correlation in the evidence.</p>'
    leaders = list(dict.fromkeys(c.leader for c in correlations))
    followers = list(dict.fromkeys(c.follower for c in correlations))
    width = _LABEL_W + _CELL_W * len(followers) + 10
    height = _LABEL_H + _CELL_H * len(leaders) + 10
    parts = [
        f'<svg class="heatmap" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        'role="img" xmlns="http://www.w3.org/2000/svg">'
        "<title>correlations: leader (rows) &#215; follower (columns)</title>"
    ]
    for j, name in enumerate(followers):
        x = _LABEL_W + _CELL_W * j + _CELL_W / 2
        parts.append(
            f'<text class="label" transform="translate({x:.1f},{_LABEL_H - 6}) rotate(-40)">{_e(name)}</text>'
        )
    for i, name in enumerate(leaders):
        y = _LABEL_H + _CELL_H * i + _CELL_H / 2 + 4
        parts.append(
            f'<text class="label" x="{_LABEL_W - 6}" y="{y:.1f}" text-anchor="end">{_e(name)}</text>'
        )
        for j in range(len(followers)):
            parts.append(
                f'<rect class="empty" x="{_LABEL_W + _CELL_W * j}" y="{_LABEL_H + _CELL_H * i}" '
                f'width="{_CELL_W - 2}" height="{_CELL_H - 2}"/>'
            )
    # Strongest last, so that of two entries for one pair the strongest is the one on top.
    for c in reversed(correlations):
        x = _LABEL_W + _CELL_W * followers.index(c.follower)
        y = _LABEL_H + _CELL_H * leaders.index(c.leader)
        ink = "#fff" if abs(c.r) > 0.55 else "#111"
        parts.append(
            f'<g class="cell"><rect x="{x}" y="{y}" width="{_CELL_W - 2}" height="{_CELL_H - 2}" '
            f'fill="{r_colour(c.r)}"/>'
            f"<title>{_e(c.leader)} → {_e(c.follower)}: r = {c.r:+.3f}, "
            f"lag {_e(_seconds(c.lag_seconds))}</title>"
            f'<text x="{x + (_CELL_W - 2) / 2:.1f}" y="{y + 18}" fill="{ink}" text-anchor="middle">'
            f"{c.r:+.2f}</text>"
            f'<text x="{x + (_CELL_W - 2) / 2:.1f}" y="{y + 34}" fill="{ink}" text-anchor="middle" '
            f'class="lag">lag {_e(_seconds(c.lag_seconds))}</text></g>'
        )
    parts.append("</svg>")
    legend = (
        '<svg class="legend" viewBox="0 0 260 34" width="260" height="34" xmlns="http://www.w3.org/2000/svg">'
        + "".join(
            f'<rect x="{10 + k * 12}" y="2" width="12" height="14" fill="{r_colour(-1 + k * 0.1)}"/>'
            for k in range(21)
        )
        + '<text class="axis" x="10" y="30">r = -1</text><text class="axis" x="136" y="30" '
        'text-anchor="middle">0</text><text class="axis" x="262" y="30" text-anchor="end">+1</text></svg>'
    )
    return "".join(parts) + legend


# --- the tables -----------------------------------------------------------------------------------


def _forecast_table(evidence: Evidence) -> str:
    def interval(low: float | None, high: float | None) -> str:
        first = _seconds(low) if low is not None else "-"
        return f"{first} to {_seconds(high) if high is not None else 'later'}"

    return _table(
        ["SLO metric", "threshold", "now", "crosses in", "interval", "probability", "forecast"],
        (
            [
                _e(f.metric),
                _num(f.threshold),
                _num(f.value),
                _e(_seconds(f.eta_seconds)) if f.eta_seconds is not None else "-",
                _e(interval(f.eta_low_seconds, f.eta_high_seconds)),
                _bar(f.probability, "#b2182b"),
                _e(f.sentence()),
            ]
            for f in evidence.forecasts
        ),
        "No SLO metric has a threshold to forecast a breach of.",
        "num",
    )


def _evidence_tables(evidence: Evidence, title: str) -> str:
    anomalies, forecasts = _anomaly_table(evidence), _forecast_table(evidence)
    impact, drift, sev = _impact_table(evidence), _drift_table(evidence), _severity_section(evidence)
    feedback = (
        f'<p class="text">{_e(evidence.feedback)}</p>'
        if evidence.feedback
        else '<p class="note">Earlier verdicts did not change this decision.</p>'
    )
    stale = (
        '<p class="note">Left out of this decision, no recent sample: '
        f"{_e(', '.join(evidence.stale_metrics))}. The other metrics raised it alone.</p>"
        if evidence.stale_metrics
        else ""
    )
    return (
        f"<h3>Anomalies vs baseline{title}</h3>{stale}{anomalies}"
        f"<h3>Predicted breach{title}</h3>{forecasts}"
        f"<h3>Predicted impact{title}</h3>{impact}"
        f"<h3>Drift{title}</h3>{drift}"
        f"<h3>Severity probabilities{title}</h3>{sev}"
        f"<h3>Effect of earlier feedback{title}</h3>{feedback}"
    )


def _anomaly_table(evidence: Evidence) -> str:
    return _table(
        ["metric", "value", "baseline", "Δ", "z", "p95", "p99", "since"],
        (
            [
                _e(a.metric),
                _num(a.value),
                _num(a.baseline),
                _num(a.value - a.baseline),
                f"{a.z_score:+.2f}",
                _num(a.p95),
                _num(a.p99),
                _e(_iso(a.since)),
            ]
            for a in evidence.anomalies
        ),
        "No anomalous metric.",
        "num",
    )


def _impact_table(evidence: Evidence) -> str:
    return _table(
        ["SLO metric", "expected z", "interval", "in", "breach probability"],
        (
            [
                _e(p.metric),
                f"{p.expected_z:+.2f}",
                f"[{p.low_z:+.2f}, {p.high_z:+.2f}]",
                _e(_seconds(p.lag_seconds)),
                _bar(p.breach_probability, "#b2182b"),
            ]
            for p in evidence.predicted_impact
        ),
        "No predicted impact.",
        "num",
    )


def _drift_table(evidence: Evidence) -> str:
    return _table(
        ["metric", "PSI", "KS p-value", "reading"],
        (
            [
                _e(d.metric),
                _num(d.psi, 3),
                _num(d.ks_p_value, 3),
                "shifted" if d.psi > 0.2 else "moderate" if d.psi > 0.1 else "stable",
            ]
            for d in evidence.drift
        ),
        "No drift.",
        "num",
    )


def _severity_section(evidence: Evidence) -> str:
    severity = evidence.severity
    if severity is None:
        return '<p class="note">No severity estimate (the plan predates the classifier).</p>'
    return (
        _table(
            ["class", "probability"],
            [
                ["info", _bar(severity.info, _SEVERITY_RGB["info"])],
                ["warning", _bar(severity.warning, _SEVERITY_RGB["warning"])],
                ["critical", _bar(severity.critical, _SEVERITY_RGB["critical"])],
            ],
            "",
        )
        + f'<p class="note">Source: {_e(severity.source)}. Advisory: the plan\'s severity and action '
        "come from the policy's ladder (the rung its confidence reached), not from these "
        "probabilities (docs/severity.md).</p>"
    )


def _action_section(plan: RemediationPlan) -> str:
    spec, status = plan.spec, plan.status
    dry_run = spec.mode.value == "dry-run"
    parts = [f"<p>Action {_badge(spec.action.value)} on Rollout <b>{_e(spec.target_ref.name)}</b>, mode "]
    parts.append(_badge(spec.mode.value, "#6a3d9a" if dry_run else None) + ".</p>")
    patch = status.dry_run_patch if status is not None else None
    request = status.patch_request if status is not None else None
    if patch is None and request is None:
        why = "the action is none" if spec.action.value == "none" else "no patch was built yet"
        parts.append(f'<p class="note">No patch: {_e(why)} (phase {_e(_phase(plan))}).</p>')
    else:
        sent = (
            "Would be sent (dry-run: nothing was sent)"
            if dry_run
            else "Sent"
            if status is not None and status.phase in (PlanPhase.EXECUTED, PlanPhase.RESOLVED)
            else "To be sent, or sent"
        )
        # One request per line, each with its JSON document (the plugin's patch, then ajan's
        # annotations); an older plan's single patch reads the same way.
        bodies = (patch or "").splitlines() or [""]
        requests = (request or "").splitlines() or [""]
        parts.append(f"<p>{_e(sent)}:</p>")
        for i, body in enumerate(bodies):
            try:
                shown = json.dumps(json.loads(body), indent=2, sort_keys=False)
            except ValueError:
                shown = body or "(empty: the Rollout already showed the effect)"
            where = requests[i] if i < len(requests) else ""
            parts.append(
                f'<p><code class="request">{_e(where)}</code></p><pre class="patch">{_e(shown)}</pre>'
            )
    if spec.git_ops is not None:
        g = spec.git_ops
        parts.append(
            f"<h3>GitOps ({_e(g.manager.value)})</h3>"
            f"<p>Source: <code>{_e(g.source)}</code></p><p>{_e(g.note)}</p>"
            f"<p>Suggestion: {_e(g.suggestion)}</p>"
        )
    return f'<section id="action"><h2>Action taken</h2>{"".join(parts)}</section>'


def _phase(plan: RemediationPlan) -> str:
    return (
        plan.status.phase.value if plan.status is not None and plan.status.phase is not None else "(none yet)"
    )


def _waits_or_expired(plan: RemediationPlan) -> bool:
    phase = plan.status.phase if plan.status is not None else None
    return phase in (None, PlanPhase.PROPOSED, PlanPhase.EXPIRED)


def history(plan: RemediationPlan, events: Sequence[Mapping[str, Any]] = ()) -> list[HistoryEntry]:
    """The plan's history, oldest first: its timestamps, its conditions' transitions, people's
    decisions, and the Kubernetes Events about it (``events`` as the API returns them)."""
    out: list[HistoryEntry] = []
    created = plan.metadata.get("creationTimestamp")
    if isinstance(created, str):
        out.append(HistoryEntry(_parse_time(created), "created"))
    status = plan.status
    if status is not None:
        for stamp, what in (
            (status.proposed_at, "proposed"),
            (
                status.executed_at,
                "executed (recorded, dry-run)" if plan.spec.mode.value == "dry-run" else "executed",
            ),
            (status.resolved_at, f"settled: {_phase(plan)}"),
            # A deadline matters while the plan waits, and when it passed; not once it was settled.
            (status.expires_at if _waits_or_expired(plan) else None, "approval deadline"),
            (status.last_evaluation_time, "evidence last refreshed"),
        ):
            if stamp is not None:
                out.append(HistoryEntry(stamp, what))
        for c in status.conditions:
            out.append(
                HistoryEntry(
                    c.last_transition_time, f"condition {c.type}={c.status.value} ({c.reason})", c.message
                )
            )
    if plan.spec.approval is not None and plan.spec.approval.at is not None:
        a = plan.spec.approval
        out.append(HistoryEntry(a.at, "approved" if a.approved else "rejected", f"by {a.by}"))  # type: ignore[arg-type]
    if plan.spec.feedback is not None and plan.spec.feedback.at is not None:
        f = plan.spec.feedback
        out.append(HistoryEntry(f.at, f"feedback: {f.verdict.value}", f.comment or ""))  # type: ignore[arg-type]
    for ev in events:
        stamp = ev.get("lastTimestamp") or ev.get("eventTime") or ev.get("firstTimestamp")
        if isinstance(stamp, str):
            count = ev.get("count") or 1
            what = f"event {ev.get('type', '')} {ev.get('reason', '')}" + (
                f" (x{count})" if count > 1 else ""
            )
            out.append(HistoryEntry(_parse_time(stamp), what, str(ev.get("message", ""))))
    return sorted(out, key=lambda e: e.at)


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _status_section(plan: RemediationPlan, events: Sequence[Mapping[str, Any]], notes: Sequence[str]) -> str:
    status = plan.status
    conditions = _table(
        ["type", "status", "reason", "message", "last transition", "generation"],
        (
            [
                _e(c.type),
                _e(c.status.value),
                _e(c.reason),
                _e(c.message),
                _e(_iso(c.last_transition_time)),
                _e(c.observed_generation if c.observed_generation is not None else "-"),
            ]
            for c in (status.conditions if status is not None else [])
        ),
        "No condition yet.",
    )
    rows = ([_e(_iso(h.at)), _e(h.what), _e(h.detail)] for h in history(plan, events))
    hist = _table(["time", "what", "detail"], rows, "No history.", "history")
    shifts = ""
    if status is not None and status.peak_shifts:
        shifts = "<h3>Peak shifts while current</h3>" + _table(
            ["metric", "|value - baseline| at most"],
            ([_e(s.metric), _num(s.shift)] for s in status.peak_shifts),
            "",
            "num",
        )
    people = []
    if plan.spec.approval is not None:
        a = plan.spec.approval
        people.append(
            f"<p>Approval: <b>{'approved' if a.approved else 'rejected'}</b> by {_e(a.by)}"
            f"{' at ' + _e(_iso(a.at)) if a.at else ''}.</p>"
        )
    if plan.spec.feedback is not None:
        f = plan.spec.feedback
        people.append(
            f"<p>Verdict: <b>{_e(f.verdict.value)}</b>{' by ' + _e(f.by) if f.by else ''}"
            f"{' at ' + _e(_iso(f.at)) if f.at else ''}.</p>"
            + (f'<p class="text">{_e(f.comment)}</p>' if f.comment else "")
        )
    note = "".join(f'<p class="note">{_e(n)}</p>' for n in notes)
    return (
        '<section id="status"><h2>Status</h2>'
        f"{''.join(people)}<h3>Conditions</h3>{conditions}<h3>History</h3>{hist}{note}{shifts}</section>"
    )


def _header(plan: RemediationPlan, timeline: Timeline, generated_at: datetime) -> str:
    spec, status, meta = plan.spec, plan.status, plan.metadata
    name = f"{meta.get('namespace', '')}/{meta.get('name', '')}".strip("/")
    confidence = f"{spec.confidence:.3f}"
    if status is not None and status.confidence is not None:
        confidence += f" (now {status.confidence:.3f}"
        confidence += f", peak {status.peak_confidence:.3f})" if status.peak_confidence is not None else ")"
    mode = _badge(spec.mode.value, "#6a3d9a" if spec.mode.value == "dry-run" else None)
    if spec.mode.value == "dry-run":
        mode += " nothing is sent to the Rollout"
    rows = [
        ("Target Rollout", f"<b>{_e(spec.target_ref.name)}</b>"),
        ("Policy", _e(spec.policy_ref.name)),
        ("Action", _badge(spec.action.value)),
        ("Severity", _badge(spec.severity.value, _SEVERITY_RGB.get(spec.severity.value))),
        ("Confidence", _e(confidence)),
    ]
    real = spec.evidence.probability_real
    if real is not None:
        # The plan's own advisory figure; older plans lack it and show nothing rather than a guess.
        rows.append(("Real in replays", _e(f"{real:.2f} of openings at this confidence (labelled data)")))
    rows += [
        ("Phase", _badge(_phase(plan))),
        ("Mode", mode),
        ("Proposed", _e(_iso(timeline.at))),
        ("Executed", _e(_iso(status.executed_at if status else None))),
        ("Settled", _e(_iso(status.resolved_at if status else None))),
    ]
    incident = (meta.get("labels") or {}).get(f"{GROUP}/incident")
    if incident:
        rows.append(("Incident", _e(incident)))
    dl = "".join(f"<dt>{_e(k)}</dt><dd>{v}</dd>" for k, v in rows)
    return (
        f'<header id="header"><h1>RemediationPlan <span class="name">{_e(name)}</span></h1>'
        f'<dl class="summary">{dl}</dl>'
        f'<p class="note">Generated {_e(_iso(generated_at))} by ajan report; '
        f"uid {_e(meta.get('uid', '-'))}.</p>"
        "</header>"
    )


_CSS: Final = """
:root{--ink:#1b1b1b;--muted:#5b5b5b;--line:#d8d8d8;--bg:#fff;--accent:#b2182b}
*{box-sizing:border-box}
body{margin:0 auto;max-width:1180px;padding:16px 24px;font:14px/1.45 system-ui,-apple-system,"Segoe UI",
 "DejaVu Sans",sans-serif;color:var(--ink);background:var(--bg)}
h1{font-size:22px;margin:4px 0 10px}h1 .name{font-family:ui-monospace,"DejaVu Sans Mono",monospace}
h2{font-size:18px;border-bottom:2px solid var(--line);padding-bottom:3px;margin-top:28px}
h3{font-size:15px;margin:16px 0 6px}
nav a{margin-right:14px;color:#2166ac}
dl.summary{display:grid;grid-template-columns:max-content 1fr max-content 1fr;gap:4px 14px;margin:0}
dl.summary dt{color:var(--muted)}dl.summary dd{margin:0}
.badge{display:inline-block;padding:0 8px;border-radius:9px;background:#444;color:#fff;font-weight:600}
.note{color:var(--muted)}
.unavailable{border-left:4px solid #d08a00;background:#fff6e0;padding:8px 12px}
.text{white-space:pre-wrap;border-left:3px solid var(--line);padding-left:10px}
table{border-collapse:collapse;margin:4px 0 8px}
th,td{border-bottom:1px solid var(--line);padding:3px 10px;text-align:left;vertical-align:top}
th{background:#f3f3f3}
table.num td:not(:first-child){font-variant-numeric:tabular-nums}
.bar{display:inline-block;width:90px;height:10px;background:#eee;vertical-align:middle}
.bar span{display:block;height:100%}
.charts{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:12px}
.card{border:1px solid var(--line);border-radius:6px;padding:6px 10px}
.card.anomalous{border-color:var(--accent)}
.card h3{margin:2px 0}.flag{color:var(--accent);font-weight:400;font-size:13px}
.query{margin:0 0 4px;font-size:11px;color:var(--muted);overflow-wrap:anywhere}
svg.chart{width:100%;height:auto}
svg .plot{fill:#fcfcfc;stroke:#ccc}
svg .band{fill:#9e9e9e;fill-opacity:.28}
svg .onset{fill:#b2182b;fill-opacity:.10}
svg .baseline{stroke:#444;stroke-dasharray:4 3;stroke-width:1}
svg .line{fill:none;stroke:#1f4e9c;stroke-width:1.6}
svg .point{fill:#1f4e9c}
svg .plan{stroke:#d7191c;stroke-width:2}
svg .plan-label{fill:#d7191c;font-size:11px}
svg .axis{fill:var(--muted);font-size:10px}
svg .label{font-size:12px;fill:var(--ink)}
svg .empty{fill:#f4f4f4}
svg.heatmap text{font-size:13px}svg.heatmap text.lag{font-size:10px}
pre.patch{background:#f6f6f6;border:1px solid var(--line);padding:10px;overflow:auto}
code.request{font-size:13px}
table.history td:first-child,table.history td:nth-child(2){white-space:nowrap}
@media print{nav{display:none}.card{break-inside:avoid}}
"""


def render(
    plan: RemediationPlan,
    policy: CorrelationPolicy | None,
    timeline: Timeline,
    *,
    events: Sequence[Mapping[str, Any]] = (),
    notes: Sequence[str] = (),
    generated_at: datetime | None = None,
) -> str:
    """The report page of ``plan``: one HTML document, no external resource, no script.

    Pure: the same arguments give the same page. Every string from the plan, the policy, the
    events or ``notes`` is escaped.

    Parameters
    ----------
    plan
        The RemediationPlan.
    policy
        Its CorrelationPolicy (its metrics' queries), or None when it is gone.
    timeline
        The metrics around the plan (see :func:`fetch_timeline`), or why there are none.
    events
        Kubernetes Events about the plan, as the API returns them (``reason``, ``message``, ...).
    notes
        Caveats to show under the history (e.g. events could not be read).
    generated_at
        The page's timestamp (default: now).
    """
    generated_at = generated_at or datetime.now(UTC)
    spec = plan.spec
    title = f"{plan.metadata.get('name', 'plan')}: {spec.action.value} on {spec.target_ref.name}"
    latest = ""
    if plan.status is not None and plan.status.latest_evidence is not None:
        when = _iso(plan.status.last_evaluation_time)
        latest = (
            f"<details><summary>Evidence as it grew afterwards (status.latestEvidence, {_e(when)})</summary>"
            + _evidence_tables(plan.status.latest_evidence, " (latest)")
            + "</details>"
        )
    nav = "".join(
        f'<a href="#{k}">{v}</a>'
        for k, v in (
            ("timeline", "Timeline"),
            ("correlations", "Correlations"),
            ("evidence", "Evidence"),
            ("action", "Action"),
            ("status", "Status"),
        )
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        # Nothing may load or run: the page is an attachment, and is read offline.
        '<meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        + _header(plan, timeline, generated_at)
        + f"<nav>{nav}</nav>"
        + _timeline_section(plan, policy, timeline)
        + '<section id="correlations"><h2>Correlations</h2>'
        '<p class="note">Leader (rows) moves first, follower (columns) follows after the lag; '
        "colour by r.</p>"
        + _heatmap(spec.evidence.correlations)
        + "</section>"
        + '<section id="evidence"><h2>Evidence</h2>'
        + _evidence_tables(spec.evidence, "")
        + latest
        + "</section>"
        + _action_section(plan)
        + _status_section(plan, events, notes)
        + "</body></html>\n"
    )


# --- Prometheus -----------------------------------------------------------------------------------


def plan_time(plan: RemediationPlan) -> float:
    """When the plan was proposed (status.proposedAt, else its creationTimestamp), epoch seconds."""
    if plan.status is not None and plan.status.proposed_at is not None:
        return plan.status.proposed_at.timestamp()
    created = plan.metadata.get("creationTimestamp")
    if isinstance(created, str):
        return _parse_time(created).timestamp()
    raise ReportError("the plan has neither status.proposedAt nor metadata.creationTimestamp")


def prometheus_url(flag: str | None, policy: CorrelationPolicy | None, env: Mapping[str, str]) -> str | None:
    """Where to query: ``--prometheus``, else the policy's spec.prometheus.url, else $AJAN_PROMETHEUS_URL."""
    if flag:
        return flag
    if policy is not None and policy.spec.prometheus is not None:
        return policy.spec.prometheus.url
    return env.get("AJAN_PROMETHEUS_URL") or None


def timeline_grid(policy: CorrelationPolicy, at: float, now: float) -> tuple[float, float, float]:
    """``(start, end, step)``: the policy window before and after ``at`` (not past ``now``), at the
    policy's step or coarser, so that a chart has at most :data:`MAX_CHART_POINTS` points."""
    window = parse_duration(policy.spec.window).total_seconds()
    step = parse_duration(policy.spec.step).total_seconds()
    start = at - window
    end = max(min(at + window, now), at)
    step = max(step, math.ceil((end - start) / MAX_CHART_POINTS))
    start = math.floor(start / step) * step  # aligned: Prometheus's results cache likes it
    return float(start), float(end), float(step)


async def fetch_series(source: Any, policy: CorrelationPolicy, at: float, now: float, url: str) -> Timeline:
    """Query each metric of ``policy`` on :func:`timeline_grid` from ``source`` (a `MetricSource`).

    Never raises for Prometheus: a metric whose query failed carries its error; when all failed,
    the timeline is unavailable with the most telling reason.
    """
    start, end, step = timeline_grid(policy, at, now)
    metrics = policy.spec.metrics
    results = await asyncio.gather(
        *(source.query_range(m.query, start, end, step) for m in metrics), return_exceptions=True
    )
    series: list[MetricSeries] = []
    errors: list[DataError] = []
    for metric, result in zip(metrics, results, strict=True):
        if isinstance(result, DataError):
            errors.append(result)
            series.append(MetricSeries(metric.name, metric.query, error=f"{result.reason}: {result.message}"))
        elif isinstance(result, BaseException):
            raise result
        else:
            series.append(MetricSeries(metric.name, metric.query, result.timestamps, result.values))
    if errors and len(errors) == len(metrics):
        # The operator's precedence, so that the page and the policy's Degraded condition agree.
        worst = most_telling(errors)
        return Timeline(at=at, unavailable=f"{worst.reason}: {worst.message}")
    # The sliding window, as the operator's when no incident is open: the plan does not record when
    # its incident opened, and most plans are proposed as it opens (a later rung's was judged
    # against a baseline frozen at the opening; its band is then the sliding one's).
    window = window_bounds(policy.spec, at)
    return Timeline(at, start, end, window, tuple(series), source=url)


def fetch_timeline(
    policy: CorrelationPolicy | None,
    at: float,
    url: str | None,
    *,
    now: float,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Timeline:
    """The timeline around ``at`` from the Prometheus at ``url``, or why there is none. Never raises
    for a missing policy, a missing URL, or a Prometheus that does not answer."""
    if policy is None:
        return Timeline(
            at=at, unavailable="the plan's CorrelationPolicy could not be read: its queries are unknown"
        )
    if not url:
        return Timeline(
            at=at,
            unavailable="no Prometheus URL (pass --prometheus, set the policy's spec.prometheus.url "
            "or $AJAN_PROMETHEUS_URL)",
        )
    if not re.match(r"^https?://", url):
        return Timeline(at=at, unavailable=f"the Prometheus URL {url!r} is not http:// or https://")

    import httpx

    from ajan.clients.prometheus import PrometheusSource

    async def go() -> Timeline:
        limits = httpx.Limits(max_connections=len(policy.spec.metrics) + 1)
        async with httpx.AsyncClient(limits=limits) as http:
            return await fetch_series(PrometheusSource(http, url, timeout_s=timeout_s), policy, at, now, url)

    try:
        return asyncio.run(go())
    except (ValueError, httpx.HTTPError) as err:  # a URL httpx refuses, a range Prometheus cannot serve
        return Timeline(at=at, unavailable=f"{type(err).__name__}: {err}")


# --- Kubernetes -----------------------------------------------------------------------------------


@dataclass
class PlanRead:
    """What the cluster gave: the plan, its policy (or None), Events about the plan, and caveats."""

    plan: RemediationPlan
    policy: CorrelationPolicy | None
    events: list[dict[str, Any]]
    notes: list[str]


def _validation(err: ValidationError) -> str:
    return validation_message(err)


def api_client(kubeconfig: str | None) -> tuple[Any, str | None]:
    """An API client and the kubeconfig context's namespace: ``kubeconfig``, else $KUBECONFIG or
    ~/.kube/config, else the in-cluster service account."""
    # Imported here: rendering a page, and the tests of it, need no Kubernetes client.
    from kubernetes import config

    from ajan.clients.kubernetes import api_client as kube_api_client

    try:
        # The opposite of the operator's precedence on purpose: a person's kubeconfig before the
        # pod's service account, as kubectl (see ajan.clients.kubernetes.api_client).
        return kube_api_client(kubeconfig, first="kubeconfig")
    except config.ConfigException as err:
        raise ReportError(f"kubeconfig: {err}") from None
    except OSError as err:
        raise ReportError(f"kubeconfig: {err.filename or kubeconfig}: {err.strerror}") from None


def read_plan(api: Any, namespace: str, name: str, *, timeout_s: float = 30.0) -> PlanRead:
    """The plan, its CorrelationPolicy and the Events about the plan, from the API server.

    Raises `ReportError` when the plan cannot be read (not found, forbidden, unreachable, invalid);
    a policy or events that cannot be read are only noted.
    """
    from kubernetes import client
    from kubernetes.client.rest import ApiException
    from urllib3.exceptions import HTTPError

    custom = client.CustomObjectsApi(api)
    host = api.configuration.host
    try:
        raw = custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, "remediationplans", name, _request_timeout=timeout_s
        )
    except ApiException as err:
        if err.status == 404:
            raise ReportError(f"remediationplan {namespace}/{name} not found") from None
        raise ReportError(f"reading remediationplan {namespace}/{name}: {err.status} {err.reason}") from None
    except HTTPError as err:
        raise ReportError(f"cannot reach the Kubernetes API server at {host}: {type(err).__name__}") from None
    try:
        plan = RemediationPlan.model_validate(raw)
    except ValidationError as err:
        raise ReportError(f"remediationplan {namespace}/{name} is not valid: {_validation(err)}") from None

    notes: list[str] = []
    policy: CorrelationPolicy | None = None
    policy_name = plan.spec.policy_ref.name
    try:
        policy = CorrelationPolicy.model_validate(
            custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, "correlationpolicies", policy_name, _request_timeout=timeout_s
            )
        )
    except ApiException as err:
        notes.append(f"The CorrelationPolicy {policy_name} could not be read: {err.status} {err.reason}.")
    except ValidationError as err:
        notes.append(f"The CorrelationPolicy {policy_name} is not valid: {_validation(err)}.")
    except HTTPError as err:
        notes.append(f"The CorrelationPolicy {policy_name} could not be read: {type(err).__name__}.")

    events: list[dict[str, Any]] = []
    try:
        listed = client.CoreV1Api(api).list_namespaced_event(
            namespace,
            field_selector=f"involvedObject.kind=RemediationPlan,involvedObject.name={name}",
            _request_timeout=timeout_s,
        )
        events = [api.sanitize_for_serialization(e) for e in listed.items]
    except ApiException as err:
        notes.append(f"Events about the plan could not be read: {err.status} {err.reason}.")
    except HTTPError as err:
        notes.append(f"Events about the plan could not be read: {type(err).__name__}.")
    return PlanRead(plan, policy, events, notes)


# --- the command ----------------------------------------------------------------------------------


def output_path(plan: str, output: str | None) -> str | None:
    """Where the page goes: ``output``, else ``PLAN.html``; None for ``-`` (stdout)."""
    if output == "-":
        return None
    return output or f"{plan}.html"


def run(
    name: str,
    namespace: str | None,
    *,
    kubeconfig: str | None = None,
    prometheus: str | None = None,
    env: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> str:
    """The whole command: read the plan from the cluster, fetch its timeline, render the page.

    Raises `ReportError` for bad input or an unreadable plan; never for Prometheus.
    """
    if not re.match(DNS_SUBDOMAIN_PATTERN, name) or len(name) > 253:
        raise ReportError(f"{name!r} is not a RemediationPlan name (lower-case letters, digits, '-' and '.')")
    now = now or datetime.now(UTC)
    api, context_namespace = api_client(kubeconfig)
    try:
        read = read_plan(api, namespace or context_namespace or "default", name)
    finally:
        api.close()
    url = prometheus_url(prometheus, read.policy, os.environ if env is None else env)
    timeline = fetch_timeline(read.policy, plan_time(read.plan), url, now=now.timestamp())
    return render(read.plan, read.policy, timeline, events=read.events, notes=read.notes, generated_at=now)
