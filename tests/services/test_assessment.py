"""`assess`: from a policy's metric window to confidence, rung and evidence (pure, synthetic windows)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ajan.errors import InsufficientData
from ajan.models import Action, CorrelationPolicySpec, RemediationPlanSpec
from ajan.services.assessment import MIN_SPREAD_POINTS, assess, detector_config, long_run_spread, longest_gap
from support.windows import NAMES, ROWS, healthy, spec, window


def test_healthy_window_reaches_no_rung() -> None:
    for seed in range(20):
        result = assess(spec(), window(healthy(seed)))
        assert result.rung is None, (seed, result.confidence)
        assert result.evidence.anomalies == []


def test_slo_degradation_climbs_the_ladder_with_its_size() -> None:
    confidences = []
    for factor in (1.0, 1.5, 2.5, 6.0):
        v = healthy()
        v[-10:, 0] *= np.linspace(1.0, factor, 10)
        confidences.append(assess(spec(), window(v)).confidence)
    assert confidences == sorted(confidences), confidences
    assert confidences[0] < 0.5 <= confidences[2]
    result = assess(spec(), window(v))
    assert result.rung is not None and result.rung.action is Action.ABORT
    top = result.evidence.anomalies[0]
    assert top.metric == "latency" and top.z_score > 0 and top.value > top.baseline
    assert top.since is not None and top.since.timestamp() >= window(v).timestamps[-12]


def test_metrics_that_are_anomalous_only_together_are_named() -> None:
    v = healthy()
    v[-10:, :3] *= 1.15  # latency, errors and queue each a little worse
    result = assess(spec(), window(v))
    threshold = spec().anomaly.threshold
    assert max(result.metric_scores.values()) < threshold <= result.score, result.metric_scores
    named = {a.metric for a in result.evidence.anomalies}
    assert named == {"latency", "errors", "queue"}, named


def test_improvement_is_not_an_incident() -> None:
    v = healthy()
    v[-10:, 0] *= 0.3  # latency much better: objective max, so not bad
    v[-10:, 3] *= 3.0  # throughput much higher: objective min, so not bad
    result = assess(spec(), window(v))
    assert result.confidence < 0.1 and result.rung is None


def test_a_two_sided_metric_is_bad_either_way() -> None:
    both = spec(metrics=[
        {"name": "latency", "query": "q1", "role": "slo"},
        {"name": "errors", "query": "q2", "role": "slo"},
        {"name": "queue", "query": "q3", "role": "signal"},
        {"name": "throughput", "query": "q4", "role": "slo", "objective": "both"},
    ])  # fmt: skip
    for factor in (0.2, 3.0):
        v = healthy()
        v[-10:, 3] *= factor
        result = assess(both, window(v))
        assert result.rung is not None, (factor, result.confidence)
        top = result.evidence.anomalies[0]
        assert top.metric == "throughput" and (top.value < top.baseline) == (factor < 1)
    assert assess(both, window(healthy())).rung is None


def test_min_objective_drop_counts_as_bad() -> None:
    v = healthy()
    v[-10:, 3] *= 0.2
    result = assess(spec(metrics=[
        {"name": "latency", "query": "q1", "role": "signal"},
        {"name": "errors", "query": "q2", "role": "signal"},
        {"name": "queue", "query": "q3", "role": "signal"},
        {"name": "throughput", "query": "q4", "role": "slo", "objective": "min"},
    ]), window(v))  # fmt: skip
    assert result.rung is not None
    assert result.evidence.anomalies[0].metric == "throughput" and result.evidence.anomalies[0].z_score < 0


def test_one_spike_does_not_open_an_incident() -> None:
    v = healthy()
    v[-1, 0] *= 20  # one sample: the median of the last three ignores it
    assert assess(spec(), window(v)).rung is None
    v[-2, 0] *= 20  # two of three: now it is there
    assert assess(spec(), window(v)).rung is not None


def test_a_signal_alone_counts_only_through_its_link_to_an_slo() -> None:
    rng = np.random.default_rng(3)
    v = healthy(3)
    # A queue that latency follows 2 steps later, all along the window, then the queue surges.
    driver = np.cumsum(rng.normal(size=ROWS)) * 0.02
    v[:, 2] = 5.0 * (1 + driver + 0.01 * rng.normal(size=ROWS))
    v[2:, 0] = 0.1 * (1 + driver[:-2] + 0.01 * rng.normal(size=ROWS - 2))
    v[-6:, 2] *= np.linspace(1.5, 3.0, 6)
    linked = assess(spec(), window(v))
    assert any(c.leader == "queue" and c.follower == "latency" for c in linked.evidence.correlations)
    assert linked.signal_score > 0.5
    assert linked.breach_probability > 0
    # The same surge in a queue unrelated to the SLO metrics: no breach predicted.
    w = healthy(4)
    w[-6:, 2] *= np.linspace(1.5, 3.0, 6)
    alone = assess(spec(), window(w))
    assert alone.signal_score > 0.5
    assert alone.breach_probability == 0.0
    assert alone.confidence < 0.5


def test_missing_data_is_insufficient_not_an_anomaly() -> None:
    v = healthy()
    v[::3, 1] = np.nan  # a third of the errors' samples missing: below minCoverage 0.8
    with pytest.raises(InsufficientData, match=r"metric errors: 67% of .*minCoverage is 80%"):
        assess(spec(), window(v))


def test_stale_data_is_insufficient() -> None:
    v = healthy()
    v[-5:, 0] = np.nan  # present enough overall, but nothing for the last 2.5 minutes
    with pytest.raises(InsufficientData, match="metric latency: newest sample is 150s old"):
        assess(spec(), window(v))


def test_a_stale_metric_is_left_out_and_the_rest_can_raise_an_alarm() -> None:
    """A latency without traffic (NaN) must not blind the guard to errors that are climbing."""
    v = healthy()
    v[-5:, 0] = np.nan  # latency: stale
    v[-10:, 1] *= np.linspace(1.0, 6.0, 10)  # errors: a clear degradation
    result = assess(spec(), window(v))
    assert result.rung is not None, result.confidence
    assert result.evidence.stale_metrics == ["latency"]
    assert {a.metric for a in result.evidence.anomalies} == {"errors"}
    # Judged on what it has: the stale metric's missing rows do not discount the confidence.
    assert result.coverage == 1.0


def test_an_intermittent_metrics_usual_silence_is_not_staleness() -> None:
    """Silences as long as the ones it had before are how it looks: judged on its samples, not left out."""
    v = healthy()
    for start in (20, 50, 80):
        v[start : start + 6, 0] = np.nan  # latency: silent for 6 rows now and then
    v[-5:, 0] = np.nan  # and now for 5
    result = assess(spec(), window(v))
    assert result.evidence.stale_metrics == [] and result.rung is None


def test_without_a_fresh_slo_metric_nothing_is_judged() -> None:
    v = healthy()
    v[-5:, :2] = np.nan  # both SLO metrics stale; the signals are fresh
    v[-10:, 2] *= 6.0
    with pytest.raises(InsufficientData, match="no action is taken without enough recent data") as raised:
        assess(spec(), window(v))
    assert "metric latency: newest sample" in str(raised.value) and "metric errors: newest" in str(
        raised.value
    )


def test_every_metric_without_enough_data_is_named_at_once() -> None:
    """A user fixes all of their queries in one go: each failing metric, and only those, is named."""
    v = healthy()
    v[::3, 1] = np.nan  # errors: too sparse
    v[-5:, 0] = np.nan  # latency: stale
    with pytest.raises(InsufficientData) as raised:
        assess(spec(), window(v))
    message = str(raised.value)
    assert "metric errors: 67% of" in message and "metric latency: newest sample is 150s old" in message
    named = {name for name in ("latency", "errors", "queue", "throughput") if f"metric {name}:" in message}
    assert named == {"latency", "errors"}


def test_too_short_a_window_says_what_to_change() -> None:
    with pytest.raises(InsufficientData, match="lengthen window or shorten step"):
        assess(spec(), window(healthy(rows=20)))


def test_constant_and_nan_metrics_do_not_break_the_assessment() -> None:
    v = healthy()
    v[:, 1] = 0.0  # an error ratio that is exactly zero all along
    v[10:20, 3] = np.nan
    result = assess(spec(), window(v))
    assert np.isfinite(result.confidence) and result.rung is None


@pytest.mark.parametrize(
    "flat",
    [
        pytest.param(lambda rows, rng: np.zeros(rows), id="all-zero"),
        pytest.param(lambda rows, rng: np.full(rows, 0.002), id="constant"),
        # What `errors / requests` gives when the ratio never moves: 0.002 give or take an ulp.
        pytest.param(lambda rows, rng: 0.002 * (1 + 1e-15 * rng.normal(size=rows)), id="rounding-noise"),
        # The noise only in the newest quarter: every rank test sees a wholly new distribution.
        pytest.param(
            lambda rows, rng: np.r_[np.full(rows - 30, 0.002), 0.002 + 1e-17 * rng.integers(1, 4, 30)],
            id="noise-after-constant",
        ),
    ],
)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_flat_metric_is_never_drifted_or_anomalous(flat: object, seed: int) -> None:
    v = healthy(seed=seed)
    v[:, 1] = flat(ROWS, np.random.default_rng(seed))  # type: ignore[operator]
    result = assess(spec(), window(v))
    assert "errors" not in {d.metric for d in result.evidence.drift}
    assert "errors" not in {a.metric for a in result.evidence.anomalies}
    assert result.metric_scores["errors"] < 0.1
    assert result.rung is None


def test_evidence_makes_a_valid_plan_spec_and_json() -> None:
    v = healthy()
    v[-10:, 0] *= np.linspace(1.0, 4.0, 10)
    result = assess(with_threshold(0.2), window(v))
    assert result.rung is not None and result.evidence.forecasts
    plan = RemediationPlanSpec.model_validate({
        "policyRef": {"name": "p"}, "targetRef": {"name": "checkout"}, "action": result.rung.action,
        "severity": result.rung.severity, "confidence": result.confidence,
        "evidence": result.evidence.to_kube(),
    })  # fmt: skip
    json.dumps(plan.to_kube(), allow_nan=False)


def with_threshold(threshold: float, **latency: object) -> CorrelationPolicySpec:
    """The test policy with latency's SLO bound set."""
    return spec(metrics=[
        {"name": "latency", "query": "q1", "role": "slo", "threshold": threshold, **latency},
        {"name": "errors", "query": "q2", "role": "slo"},
        {"name": "queue", "query": "q3", "role": "signal"},
        {"name": "throughput", "query": "q4", "role": "signal", "objective": "min"},
    ])  # fmt: skip


def test_a_creep_towards_the_threshold_climbs_the_ladder_before_the_anomaly_is_big() -> None:
    # Latency 0.1 +- 5 %, creeping 0.5 ms a step for twenty minutes: still under 0.125, and too
    # little for the detector alone; the threshold makes it a breach a few minutes away.
    paused = 0
    gained = []
    for seed in range(10):
        v = healthy(seed)
        v[-40:, 0] += 0.0005 * np.arange(1, 41)
        assert np.median(v[-3:, 0]) < 0.125  # not breached yet
        blind, seeing = assess(spec(), window(v)), assess(with_threshold(0.125), window(v))
        assert blind.rung is None, (seed, blind.confidence)
        assert seeing.confidence >= blind.confidence
        gained.append(seeing.confidence - blind.confidence)
        forecast = seeing.evidence.forecasts[0]
        assert forecast.metric == "latency" and forecast.threshold == 0.125
        assert forecast.probability == pytest.approx(seeing.forecast_probability, abs=1e-4)
        paused += seeing.rung is not None and seeing.rung.action in (Action.PAUSE, Action.ABORT)
    # A subtle creep in white noise: the forecast is sure of it in some windows, not all.
    assert paused >= 3 and float(np.mean(gained)) > 0.2


def test_healthy_windows_with_headroom_predict_no_breach() -> None:
    # Four standard deviations under the bound.
    for seed in range(20):
        result = assess(with_threshold(0.12), window(healthy(seed)))
        assert result.rung is None, (seed, result.confidence)
        assert result.forecast_probability < 0.2
        assert result.evidence.forecasts[0].eta_seconds is None  # no crossing within the horizon


def test_a_canary_beyond_its_slo_from_the_start_is_a_breach_now() -> None:
    # Nothing is anomalous (the whole window is this bad), but the SLO is broken.
    v = healthy(3)
    v[:, 0] += 0.1
    assert assess(spec(), window(v)).rung is None
    result = assess(with_threshold(0.15), window(v))
    assert result.rung is not None and result.rung.action is Action.ABORT
    assert result.forecast_probability == 1.0
    assert result.evidence.forecasts[0].sentence().startswith("latency is beyond its threshold 0.15")


def test_a_minimum_threshold_is_breached_from_below() -> None:
    v = healthy(4)
    result = assess(with_threshold(60.0, objective="min"), window(v))  # throughput-like: must stay above
    assert result.evidence.forecasts[0].eta_seconds == 0.0  # 0.1 is under 60
    assert result.rung is not None


def test_a_stale_metric_is_not_forecast() -> None:
    v = healthy()
    v[-6:, 0] = np.nan
    v[-10:, 1] *= 4.0  # errors raise the alarm alone
    result = assess(with_threshold(0.12), window(v))
    assert result.evidence.stale_metrics == ["latency"]
    assert result.evidence.forecasts == [] and result.forecast_probability == 0.0


def _just_under_a_bucket_bound(jump: float, seed: int = 2) -> np.ndarray:
    """Latency as histogram_quantile gives a p99 just under a bucket bound: 0.249 +- 0.0003, flat
    until its last rows jump to ``jump``."""
    v = healthy(seed)
    v[:, 0] = 0.249 + 0.0003 * np.random.default_rng(seed).normal(size=v.shape[0])
    v[-4:, 0] = jump
    return v


@pytest.mark.parametrize("seed", range(5))
def test_a_p99_jumping_into_the_next_bucket_uses_little_headroom_and_is_no_incident(seed: int) -> None:
    v = _just_under_a_bucket_bound(0.27, seed)
    # Against the quiet baseline alone the jump is some seventy deviations: an incident.
    blind = assess(spec(), window(v))
    assert blind.rung is not None and blind.evidence.anomalies[0].metric == "latency"
    # With its SLO, 0.02 of the 0.25 s to the threshold is not worth a plan.
    seeing = assess(with_threshold(0.5), window(v))
    assert seeing.rung is None, seeing.confidence
    assert "latency" not in [a.metric for a in seeing.evidence.anomalies]


def test_a_move_through_most_of_the_headroom_still_acts() -> None:
    result = assess(with_threshold(0.5), window(_just_under_a_bucket_bound(0.42)))
    assert result.rung is not None and result.rung.action in (Action.PAUSE, Action.ABORT)
    assert result.evidence.anomalies[0].metric == "latency"


@pytest.mark.parametrize("rows", [30, 60, 120, 720, 2880])
def test_detector_is_scaled_to_the_window(rows: int) -> None:
    config = detector_config(spec(), rows)
    assert config.min_periods + config.level_window + config.min_calibration <= rows
    assert config.trend_horizon < rows and config.trend_window <= rows
    assert config.z_half == 4.0


def test_queries_failing_alike_are_all_named_and_the_most_telling_kind_wins() -> None:
    """Of several failed queries, the kind a person should fix first is reported (a refused query
    before missing data), naming every metric that failed that way."""
    from ajan.clients.prometheus import QueryFailed
    from ajan.services.window import raise_most_telling

    empty = [InsufficientData("no series"), InsufficientData("no series"), None, None]
    with pytest.raises(InsufficientData) as raised:
        raise_most_telling(spec(), empty)
    assert str(raised.value) == "metric latency: no series; metric errors: no series"

    mixed = [InsufficientData("no series"), QueryFailed("parse error"), None, QueryFailed("bad")]
    with pytest.raises(QueryFailed) as refused:
        raise_most_telling(spec(), mixed)
    said = str(refused.value)
    assert "metric errors: parse error" in said and "metric throughput: bad" in said
    assert "latency" not in str(refused.value)


def _wandering_week(seed: int = 5) -> np.ndarray:
    """A week of the four metrics in which latency moves between levels 0.1 and 0.16 every few
    hours (a cache that warms and cools, a batch job's neighbour), sampled every 11 minutes."""
    rng = np.random.default_rng(seed)
    week = healthy(seed, rows=900)
    levels = rng.choice([0.1, 0.13, 0.16], size=900 // 30).repeat(30)
    week[:, 0] = levels * (1 + 0.05 * rng.normal(size=900))
    return week


def test_a_move_the_metric_makes_every_week_is_not_an_incident() -> None:
    """The short window happens to be quiet, then latency steps to a level it often sits at: on the
    window alone that is an incident; against the metric's long-run spread it is not."""
    v = healthy(7)
    v[-8:, 0] *= 1.5
    assert assess(spec(), window(v)).rung is not None
    spread = long_run_spread(_wandering_week())
    bounded = assess(spec(), window(v), spread=spread)
    assert bounded.rung is None, bounded.confidence
    assert bounded.metric_scores["latency"] < assess(spec(), window(v)).metric_scores["latency"]


def test_a_clear_fault_still_acts_under_the_long_run_spread() -> None:
    v = healthy(7)
    v[-8:, 0] *= 6.0
    result = assess(spec(), window(v), spread=long_run_spread(_wandering_week()))
    assert result.rung is not None and result.rung.action is Action.ABORT


def test_an_unknown_spread_changes_nothing() -> None:
    v = healthy(7)
    v[-8:, 0] *= 1.5
    free = assess(spec(), window(v))
    unknown = assess(spec(), window(v), spread=np.full(4, np.nan))
    assert unknown.confidence == free.confidence and unknown.metric_scores == free.metric_scores


def test_a_metric_constant_all_week_still_scores_its_first_move() -> None:
    """Zero spread is floored at a share of the level, not a division by zero that mutes or inflates."""
    week = _wandering_week()
    week[:, 0] = 0.1
    v = healthy(7)
    v[-8:, 0] *= 3.0
    result = assess(spec(), window(v), spread=long_run_spread(week))
    assert result.rung is not None and result.evidence.anomalies[0].metric == "latency"


def _availability(drop: float, *, complement: bool = False) -> tuple[float, str | None]:
    """An availability pinned at 100 % all week and all window until its newest rows lose ``drop``
    points (or, with ``complement``, the same failures as an error ratio rising from a constant 0 %):
    the confidence and the top anomaly's metric."""
    level, objective = (0.0, "max") if complement else (100.0, "min")
    moved = level + drop if complement else level - drop
    policy = spec(metrics=[
        {"name": "latency", "query": "q1", "role": "slo"},
        {"name": "errors", "query": "q2", "role": "slo"},
        {"name": "queue", "query": "q3", "role": "signal"},
        {"name": "availability", "query": "q4", "role": "slo", "objective": objective},
    ])  # fmt: skip
    week, v = _wandering_week(), healthy(3)
    week[:, 3], v[:, 3] = level, level
    v[-4:, 3] = moved
    result = assess(policy, window(v, (*NAMES[:3], "availability")), spread=long_run_spread(week))
    top = result.evidence.anomalies[0].metric if result.evidence.anomalies else None
    return result.confidence, top


def test_an_availability_that_leaves_a_constant_100_by_a_few_points_acts() -> None:
    """PetShop's availability incidents: a success ratio at exactly 100 % for a week drops 1.5 to 8
    points. A scale floor of 1 % of the level made that 1.5 to 8 sigma (no rung); a few points of
    requests failing where none did is an incident, as the same failures seen as an error ratio
    rising from a constant 0 % always were."""
    for drop in (1.5, 3.0, 8.0):
        confidence, top = _availability(drop)
        assert top == "availability" and confidence >= 0.75, (drop, confidence)
        assert _availability(drop, complement=True)[0] >= 0.75, drop
    # A wiggle below the smallest step an SLO is written in stays nothing.
    assert _availability(0.01)[0] < 0.5


def test_long_run_spread_needs_enough_samples() -> None:
    week = _wandering_week()[: MIN_SPREAD_POINTS + 2]
    week[2:, 1] = np.nan  # errors: two samples only
    spread = long_run_spread(week)
    assert np.isnan(spread[1]) and np.isfinite(spread).sum() == 3
    assert np.isnan(long_run_spread(np.empty((0, 4)))).all()


def test_longest_gap_counts_the_longest_run_of_missing_samples() -> None:
    assert longest_gap(np.array([True, True])) == 0
    assert longest_gap(np.array([False, True, False, False, False, True, False, False])) == 3
    assert longest_gap(np.zeros(4, dtype=bool)) == 4


def test_without_detail_only_what_a_plan_shows_is_left_out_and_only_where_no_plan_can_open() -> None:
    quiet = window(healthy())
    lean, full = assess(spec(), quiet, detail=False), assess(spec(), quiet)
    assert lean.features is None and lean.evidence.drift == [] and full.features is not None
    # The decision is the same: only the drift and the severity features are left out.
    assert (lean.confidence, lean.rung, lean.score, lean.metric_scores) == (
        full.confidence, full.rung, full.score, full.metric_scores,
    )  # fmt: skip
    assert lean.evidence == full.evidence.model_copy(update={"drift": []})
    # An open incident, or anything a plan could be opened on, is always assessed in full.
    assert assess(spec(), quiet, hold=True, detail=False).features is not None
    v = healthy()
    v[-10:, 0] *= 3.0
    faulty = assess(spec(), window(v), detail=False)
    assert faulty.rung is not None and faulty.features == assess(spec(), window(v)).features
