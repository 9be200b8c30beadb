"""`assess` with a stable track: the canary judged against stable in the same window (pure)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import numpy as np
import pytest

from ajan.errors import InsufficientData
from ajan.models import CorrelationPolicySpec, Evidence
from ajan.services.assessment import MetricWindow, assess
from ajan.simulate.stack import CANARY_METRICS, canary_policy, slo_metrics
from support.windows import NAMES, ROWS, STEP, healthy, spec, window

#: Rows the canary has existed for when it is new: 10 minutes, inside the scored quarter (30 rows).
NEW: Final = 20


def tracked(**overrides: Any) -> CorrelationPolicySpec:
    """The checkout policy with the stable track of every metric."""
    body = spec().model_dump(by_alias=True, exclude_none=True)
    for metric in body["metrics"]:
        metric["stableQuery"] = metric["query"] + '{track="stable"}'
    body.update(overrides)
    return CorrelationPolicySpec.model_validate(body)


def two_tracks(canary: np.ndarray, stable: np.ndarray) -> MetricWindow:
    """Both tracks on a 30 s grid."""
    return MetricWindow(NAMES, 1.7e9 + np.arange(canary.shape[0]) * STEP, canary, STEP, stable)


def noisier(seed: int, noise: float) -> np.ndarray:
    """A canary with less traffic than stable: the same levels, ``noise`` relative noise."""
    rng = np.random.default_rng(seed)
    return healthy(seed) * (1 + noise * rng.normal(size=(ROWS, 4)))


@pytest.mark.parametrize("seed", range(5))
def test_a_spike_on_both_tracks_opens_no_incident(seed: int) -> None:
    canary, stable = healthy(seed), healthy(seed + 100)
    for track in (canary, stable):
        track[-12:, 0] *= 3.0  # a load spike triples the latency of both
    alone = assess(spec(), window(canary))
    assert alone.rung is not None, "without the stable track the spike is an incident"
    judged = assess(tracked(), two_tracks(canary, stable))
    assert judged.rung is None, judged.confidence
    assert judged.evidence.anomalies == []


@pytest.mark.parametrize("seed", range(5))
def test_a_canary_worse_than_stable_from_its_first_minute_is_an_incident(seed: int) -> None:
    canary, stable = healthy(seed), healthy(seed + 100)
    canary[:-NEW] = np.nan  # no past at all
    canary[-NEW:, 0] *= 2.5
    with pytest.raises(InsufficientData):
        assess(spec(), window(canary))  # its own past is all it would have
    judged = assess(tracked(), two_tracks(canary, stable))
    assert judged.rung is not None, judged.confidence
    top = judged.evidence.anomalies[0]
    assert top.metric == "latency"
    assert top.value == pytest.approx(canary[-1, 0])
    assert top.stable == pytest.approx(stable[-1, 0])
    assert top.baseline == pytest.approx(0.1, rel=0.1)  # the stable track's usual level
    wire = judged.evidence.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert Evidence.model_validate(wire).anomalies[0].stable == top.stable


@pytest.mark.parametrize("seed", range(10))
def test_a_healthy_new_canary_with_less_traffic_is_no_incident(seed: int) -> None:
    canary = noisier(seed, 0.05)  # about 1.4 times stable's noise
    canary[:-NEW] = np.nan
    judged = assess(tracked(), two_tracks(canary, healthy(seed + 100)))
    assert judged.rung is None, judged.confidence


def test_a_stable_track_without_data_leaves_the_canary_judged_on_its_own() -> None:
    canary = healthy(3)
    canary[-10:, 0] *= 2.5
    blind = np.full_like(canary, np.nan)
    judged = assess(tracked(), two_tracks(canary, blind))
    alone = assess(spec(), window(canary))
    assert judged.confidence == pytest.approx(alone.confidence)
    assert judged.rung is not None and judged.evidence.anomalies[0].stable is None


def test_a_silent_canary_is_not_filled_in_by_stable() -> None:
    canary, stable = healthy(4), healthy(104)
    canary[-8:, :2] = np.nan  # the canary stopped answering; stable did not
    with pytest.raises(InsufficientData, match="latency"):
        assess(tracked(), two_tracks(canary, stable))


#: Three windows of a canary policy (3m at 1s, maxLag 20s) fetched from a real Prometheus scraping
#: the generator's two tracks, 19, 37 and 44 s into a latency spike on both tracks (1.5 % a second
#: for 30 s): ``seconds_into_spike``, ``timestamp``, each metric and its ``@stable`` track.
SHARED_SPIKE: Final = Path(__file__).parent / "data" / "shared_spike.csv"


def recorded_spike(
    max_lag: str, p99_slo: float | None = 0.5
) -> list[tuple[CorrelationPolicySpec, MetricWindow]]:
    """The windows, under the canary policy with p99's SLO threshold (none with ``p99_slo=None``)."""
    plain = [dict(m) for m in CANARY_METRICS] if p99_slo is None else slo_metrics(p99_slo)
    metrics = [{**m, "stableQuery": m["query"].replace('track="canary"', 'track="stable"')} for m in plain]
    policy = canary_policy("spike", metrics=metrics, correlation={"maxLag": max_lag})
    checked = CorrelationPolicySpec.model_validate(policy["spec"])
    table = np.genfromtxt(SHARED_SPIKE, delimiter=",", names=True, deletechars="")
    names = tuple(m["name"] for m in metrics)
    windows = []
    for at in np.unique(table["seconds_into_spike"]):
        rows = table[table["seconds_into_spike"] == at]
        canary = np.column_stack([rows[n] for n in names])
        stable = np.column_stack([rows[f"{n}@stable"] for n in names])
        windows.append((checked, MetricWindow(names, rows["timestamp"], canary, 1.0, stable)))
    return windows


def test_a_spike_on_both_tracks_a_few_seconds_apart_opens_no_incident() -> None:
    """The canary's p99 (a tenth of the requests) follows the spike a few seconds before or after
    stable's: row by row, its excess over stable is up to 0.03 s against a baseline in which the
    two differed by 0.0005 s, and ajan paused. Judged against stable's range over maxLag, widened
    by how far stable moved, the tracks are in step."""
    for p99_slo in (0.5, None):
        in_step = [assess(spec, recorded).rung for spec, recorded in recorded_spike("20s", p99_slo)]
        assert in_step == [None, None, None], p99_slo
    # Without the SLO's threshold (whose headroom alone now bounds a 0.03 s excess), row by row is
    # what paused.
    row_by_row = [assess(spec, recorded).rung for spec, recorded in recorded_spike("0s", None)]
    assert any(rung is not None for rung in row_by_row)
