"""The report's pure parts: the page from a plan, a policy and series, without any server.

The page is parsed back (``html.parser`` for the document, ``xml.etree`` for each SVG) rather than
searched for substrings where structure matters: a cell count, an attribute, a tag that must not be.
"""

from __future__ import annotations

import math
import re
import socket
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from ajan.analysis.robust import robust_location_scale
from ajan.models import RemediationPlan
from ajan.models.common import Correlation
from ajan.report import (
    MAX_CHART_POINTS,
    MetricSeries,
    Timeline,
    baseline_band,
    fetch_timeline,
    output_path,
    prometheus_url,
    r_colour,
    render,
    timeline_grid,
)
from ajan.services.window import window_bounds

from .html_page import Page
from .plans import AT, CORRELATIONS, SCRIPT, plan, plan_body, policy, series

GENERATED = datetime(2026, 11, 23, 11, 0, tzinfo=UTC)
SVG = re.compile(r"<svg\b.*?</svg>", re.DOTALL)


def page(p: RemediationPlan | None = None, timeline: Timeline | None = None, **kw: Any) -> str:
    return render(p or plan(), policy(), timeline or series(), generated_at=GENERATED, **kw)


def svgs(text: str) -> list[ET.Element]:
    """Each inline SVG, parsed as XML: a stray '<' or '&' in a title would make it fail."""
    return [ET.fromstring(block) for block in SVG.findall(text)]


def test_every_section_is_present_with_the_plans_facts() -> None:
    text = page()
    doc = Page(text)
    assert {"header", "timeline", "correlations", "evidence", "action", "status"} <= doc.ids()
    words = " ".join(doc.all_text.split())
    header = ("shop/checkout-tk4c9z-pause", "checkout", "pause", "warning", "0.820 (now 0.860, peak 0.900)",
              "Executed", "dry-run", "2026-11-23 10:00:00Z", "tk4c9z")  # fmt: skip
    for fact in header:
        assert fact in words, fact
    # The evidence tables: anomalies vs baseline, predicted impact, drift, severity, feedback.
    for fact in ("error-ratio", "0.31", "0.011", "+9.30", "[+4.10, +8.40]", "0.910", "shifted", "0.700",
                 "Source: model", "judged true-positive"):  # fmt: skip
        assert fact in words, fact
    assert "0.28 of openings at this confidence" in words  # the advisory probability, beside it
    # The patch that would be sent, verbatim and readable, and where it would go.
    assert '"paused": true' in words and "Would be sent (dry-run: nothing was sent)" in words
    assert "PATCH /apis/argoproj.io/v1alpha1/namespaces/shop/rollouts/checkout" in words
    # Conditions and history.
    assert "DryRun" in words and "not sent (dry-run mode): see dryRunPatch" in words
    assert "executed (recorded, dry-run)" in words and "proposed" in words


def test_one_chart_per_metric_anomalous_first_with_the_plan_and_the_band() -> None:
    text = page()
    doc = Page(text)
    charts = doc.with_class("svg", "chart")
    assert len(charts) == 4
    timeline = text[text.index('id="timeline"') : text.index('id="correlations"')]
    order = re.findall(r'<div class="card[^"]*"><h3>([a-z0-9-]+)', timeline)
    assert order == ["error-ratio", "latency-p99", "queue-depth", "memory"]
    assert len(doc.with_class("div", "anomalous")) == 2
    assert len(doc.with_class("line", "plan")) == 4  # the plan's time on every chart
    assert len(doc.with_class("rect", "band")) == 4
    assert len(doc.with_class("rect", "onset")) == 2  # only the anomalous ones have an onset
    assert len(doc.with_class("polyline", "line")) == 5  # memory's gap splits its line in two


def test_the_plan_line_sits_at_the_plans_time() -> None:
    timeline = series()
    doc = Page(page(timeline=timeline))
    line = doc.with_class("line", "plan")[0]
    plot = doc.with_class("rect", "plot")[0]
    x, left, width = float(line["x1"] or 0), float(plot["x"] or 0), float(plot["width"] or 0)
    expected = left + (AT.timestamp() - timeline.start) / (timeline.end - timeline.start) * width
    assert x == pytest.approx(expected, abs=0.11)
    assert x == pytest.approx(left + width / 2, abs=0.11)  # the window before and after: the middle


def test_heatmap_has_one_cell_per_correlation_coloured_by_r() -> None:
    text = page()
    doc = Page(text)
    cells = doc.with_class("g", "cell")
    assert len(cells) == len(CORRELATIONS)
    heatmap = next(s for s in svgs(text) if "heatmap" in (s.get("class") or ""))
    ns = "{http://www.w3.org/2000/svg}"
    fills = [str(g.find(f"{ns}rect").get("fill")) for g in heatmap.iter(f"{ns}g")]  # type: ignore[union-attr]
    assert sorted(fills) == sorted(r_colour(c["r"]) for c in CORRELATIONS)
    titles = [g.find(f"{ns}title").text for g in heatmap.iter(f"{ns}g")]  # type: ignore[union-attr]
    assert "queue-depth → latency-p99: r = +0.930, lag 4s" in titles
    assert "memory → error-ratio: r = -0.620, lag 12s" in titles
    # 3 leaders x 2 followers: the pairs without a correlation are drawn empty.
    assert len(doc.with_class("rect", "empty")) == 3 * 2


def test_r_colour_is_a_diverging_scale() -> None:
    assert r_colour(1.0) == "#b2182b" and r_colour(-1.0) == "#2166ac" and r_colour(0.0) == "#f7f7f7"
    assert r_colour(2.0) == r_colour(1.0)


def test_every_user_string_is_escaped() -> None:
    body = plan_body()
    body["spec"]["feedback"] = {"verdict": "false-positive", "by": SCRIPT, "comment": f"load test {SCRIPT}"}
    body["spec"]["approval"] = {"approved": True, "by": SCRIPT}
    body["status"]["conditions"][0]["message"] = SCRIPT
    body["status"]["dryRunPatch"] = SCRIPT
    body["spec"]["evidence"]["feedback"] = SCRIPT
    p = RemediationPlan.model_validate(body)
    # Metric names are DNS labels for the API server; the page escapes them anyway (a plan may come
    # from anywhere), so bypass the validation for one.
    evil = Correlation.model_construct(leader=SCRIPT, follower="latency-p99", r=0.7, lag_seconds=2.0)
    p.spec.evidence.correlations.append(evil)
    timeline = series()
    hostile = MetricSeries(
        SCRIPT, f"sum(x) {SCRIPT}", timeline.series[0].timestamps, timeline.series[0].values
    )
    timeline = Timeline(timeline.at, timeline.start, timeline.end, timeline.window,
                        (*timeline.series, hostile), source=SCRIPT)  # fmt: skip
    events = [
        {"type": "Normal", "reason": SCRIPT, "message": SCRIPT, "lastTimestamp": "2026-11-23T10:00:02Z"}
    ]
    text = render(p, policy(), timeline, events=events, notes=[SCRIPT], generated_at=GENERATED)
    assert "<script" not in text.lower()
    assert text.count("&lt;script&gt;") >= 12
    doc = Page(text)
    assert not [t for t, _ in doc.tags if t == "script"]
    assert SCRIPT in doc.all_text  # shown as text, intact
    svgs(text)  # the escaped titles keep every SVG well-formed XML


def test_page_is_self_contained() -> None:
    text = page()
    doc = Page(text)
    forbidden = {"script", "link", "img", "iframe", "object", "embed", "base", "form"}
    assert not [t for t, _ in doc.tags if t in forbidden]
    for tag, attrs in doc.tags:
        assert "src" not in attrs, tag
        href = attrs.get("href")
        assert href is None or href.startswith("#"), (tag, href)
        assert not [k for k in attrs if k.startswith("on")], (tag, attrs)
    assert "url(" not in text and "@import" not in text
    csp = [a for t, a in doc.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert csp and "default-src 'none'" in (csp[0]["content"] or "")
    assert len(svgs(text)) == 4 + 2  # the charts, the heatmap and its legend; all well-formed


def test_without_series_the_timeline_is_a_note_and_the_rest_stays() -> None:
    reason = "PrometheusUnavailable: Prometheus at http://prometheus:9090 is unreachable: ConnectError"
    text = page(timeline=Timeline(AT.timestamp(), unavailable=reason))
    doc = Page(text)
    assert f"Timeline unavailable: {reason}" in " ".join(doc.all_text.split())
    assert not doc.with_class("svg", "chart")
    assert {"header", "timeline", "correlations", "evidence", "action", "status"} <= doc.ids()
    assert len(doc.with_class("g", "cell")) == len(CORRELATIONS)
    # The queries that would have been charted are listed instead.
    assert 'sum(queue_depth{track="canary"})' in doc.all_text


def test_a_metric_without_data_gets_a_note_in_its_card() -> None:
    timeline = series()
    broken = MetricSeries("memory", "sum(nothing)", error="InsufficientData: query returned no series")
    timeline = Timeline(timeline.at, timeline.start, timeline.end, timeline.window,
                        (*timeline.series[:3], broken))  # fmt: skip
    doc = Page(page(timeline=timeline))
    assert len(doc.with_class("svg", "chart")) == 3
    assert "No data: InsufficientData: query returned no series" in doc.all_text


def test_metrics_left_out_for_want_of_data_are_named_above_the_anomalies() -> None:
    body = plan_body()
    body["spec"]["evidence"]["staleMetrics"] = ["memory"]
    words = " ".join(Page(page(RemediationPlan.model_validate(body))).all_text.split())
    assert "Left out of this decision, no recent sample: memory." in words
    assert "Left out of this decision" not in " ".join(Page(page()).all_text.split())


def test_a_plan_made_before_the_probability_existed_shows_none() -> None:
    body = plan_body()
    del body["spec"]["evidence"]["probabilityReal"]
    words = " ".join(Page(page(RemediationPlan.model_validate(body))).all_text.split())
    assert "Real in replays" not in words and "Confidence" in words


def test_a_proposed_plan_has_no_patch_yet() -> None:
    body = plan_body()
    del body["status"]
    text = page(RemediationPlan.model_validate(body))
    assert "No patch: no patch was built yet (phase (none yet))" in " ".join(Page(text).all_text.split())


def test_baseline_band_is_the_robust_spread_of_the_baseline_part() -> None:
    ts = np.arange(0.0, 400.0)
    values = np.where(ts < 300, 10.0 + (ts % 2), 50.0)  # 10, 11, 10, 11 ...; then the incident
    band = baseline_band(ts, values, start=100.0, until=250.0)
    assert band is not None
    low, median, high = band
    assert median == 10.5 and low == pytest.approx(10.5 - 3 * 1.4826 * 0.5) and high > 11
    assert baseline_band(ts, values, start=-math.inf, until=2.0) is None  # too few points


def test_the_band_is_what_the_operator_learnt_normal_from() -> None:
    """The operator's baseline (window_bounds' rows before current_from), scaled as the operator
    scales it: a series mostly of one value gets robust_location_scale's fallback, not a hairline."""
    p = policy(window="10m", step="10s")
    at = AT.timestamp()
    window = window_bounds(p.spec, at)
    ts = np.arange(window.start, at + 60.0, 10.0)
    values = np.where(ts < window.current_from, 5.0, 99.0)
    values[::4] = 6.0  # over half the baseline is 5: its MAD is 0
    band = baseline_band(ts, values, window.start, window.current_from)
    robust = robust_location_scale(values[ts < window.current_from])
    assert band is not None and robust.scale > 0
    assert band == pytest.approx((5.0 - 3 * robust.scale, 5.0, 5.0 + 3 * robust.scale))


def test_timeline_grid_spans_the_window_either_side() -> None:
    p = policy(window="1h", step="30s")
    at = AT.timestamp()
    start, end, step = timeline_grid(p, at, now=at + 86400)
    assert start == at - 3600 and end == at + 3600 and step == 30
    start, end, step = timeline_grid(p, at, now=at + 60)  # not past now
    assert end == at + 60
    start, end, step = timeline_grid(policy(window="24h", step="15s"), at, now=at + 86400 * 2)
    assert (end - start) / step <= MAX_CHART_POINTS + 1


def test_prometheus_url_precedence() -> None:
    with_url = policy(prometheus={"url": "http://policy:9090"})
    env = {"AJAN_PROMETHEUS_URL": "http://env:9090"}
    assert prometheus_url("http://flag:9090", with_url, env) == "http://flag:9090"
    assert prometheus_url(None, with_url, env) == "http://policy:9090"
    assert prometheus_url(None, policy(), env) == "http://env:9090"
    assert prometheus_url(None, policy(), {}) is None
    assert prometheus_url(None, None, env) == "http://env:9090"


def test_output_path() -> None:
    assert output_path("p1", None) == "p1.html"
    assert output_path("p1", "-") is None
    assert output_path("p1", "x/y.html") == "x/y.html"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_fetch_timeline_never_raises_for_prometheus() -> None:
    at = AT.timestamp()
    down = fetch_timeline(policy(), at, f"http://127.0.0.1:{_closed_port()}", now=at + 60, timeout_s=2)
    assert down.unavailable is not None
    assert down.unavailable.startswith("PrometheusUnavailable: Prometheus at")
    assert "unreachable" in down.unavailable
    assert "no Prometheus URL" in (fetch_timeline(policy(), at, None, now=at).unavailable or "")
    assert "not http" in (fetch_timeline(policy(), at, "ftp://x", now=at).unavailable or "")
    assert "could not be read" in (fetch_timeline(None, at, "http://x", now=at).unavailable or "")


def test_a_flat_metric_is_drawn_on_an_axis_around_its_own_value() -> None:
    """A constant 0.002 on an axis from -1 to 1 reads as zero; the axis is around the value."""
    timeline = series()
    flat = MetricSeries(
        "queue-depth", "q", timeline.series[2].timestamps, np.full(timeline.series[2].values.size, 0.002)
    )
    timeline = Timeline(timeline.at, timeline.start, timeline.end, timeline.window,
                        (*timeline.series[:2], flat, timeline.series[3]), source=timeline.source)  # fmt: skip
    charts = svgs(page(timeline=timeline))
    chart = next(c for c in charts if c.find("{http://www.w3.org/2000/svg}title").text == "queue-depth")
    labels = [
        float(t.text)
        for t in chart.iter("{http://www.w3.org/2000/svg}text")
        if re.fullmatch(r"-?[\d.e+-]+", t.text or "")
    ]
    assert labels and all(0.0 <= v <= 0.004 for v in labels), labels


def test_a_settled_plan_shows_no_approval_deadline_and_the_ladder_decides_severity() -> None:
    body = plan_body()
    body["status"]["expiresAt"] = "2099-01-01T00:00:00Z"
    body["status"]["phase"] = "Resolved"
    words = " ".join(Page(page(RemediationPlan.model_validate(body))).all_text.split())
    assert "approval deadline" not in words
    assert (
        "come from the policy's ladder (the rung its confidence reached), not from these probabilities"
        in words
    )
    body["status"]["phase"] = "Proposed"
    waiting = " ".join(Page(page(RemediationPlan.model_validate(body))).all_text.split())
    assert "approval deadline" in waiting
