"""Does feedback work? A replay in which an operator rejects a recurring benign pattern.

The scenario (synthetic, seeded; the public datasets hold no operator verdicts): a checkout
service's latency and error rate (the SLO metrics) and its CPU and queue depth (signals), sampled
every 30 s for a day, with a daily rhythm and AR(1) noise. Every :data:`BENIGN_EVERY_S` a batch job
runs for 20 minutes: CPU and queue rise and latency with them, a little: a pattern a static guard
pauses for and the team knows to be harmless. Three real incidents happen too:

* ``errors``: the error rate and latency jump (another signature);
* ``stronger``: the batch job's pattern at three times its usual size (same signature, stronger);
* ``queue-and-errors``: the batch pattern with errors on top (the SLO metric joins: another signature).

The same policy (auto mode, the default ladder) is replayed with ``ajan.backtest.replay`` twice: with
no feedback, and with a person who judges each plan as soon as it is proposed (false positive when
it falls on a benign run, true positive when it falls on an incident). Figures: how many benign runs
got an action (pause or stronger) and how many incidents did.

``python -m ajan.evaluation.feedback_replay [--seeds 3]`` prints the table for docs/feedback.md.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

from ajan.backtest import PlanEvent, replay
from ajan.models import Action, CorrelationPolicy, Verdict
from ajan.services.assessment import MetricWindow
from ajan.services.incident import ACTION_RANK

STEP_S: Final = 30.0
DAY_S: Final = 86400.0
BENIGN_EVERY_S: Final = 3 * 3600.0
EVENT_S: Final = 20 * 60.0
#: The replayed day starts after a day of history, so the first window has its baseline.
START_S: Final = 1.7e9
NAMES: Final = ("latency", "errors", "cpu", "queue")
RUNS_PER_DAY: Final = int(DAY_S / BENIGN_EVERY_S)
#: The batch job's usual effect on CPU, queue and latency, in units of the metrics' noise (about
#: 6 standard deviations of the AR(1) noise): enough for a guard without feedback to pause.
BENIGN_SIZE: Final = 14.0
#: The replayed day's runs that are real incidents (run number, kind); the others are benign.
INCIDENT_RUNS: Final = ((4, "stronger"), (6, "queue-and-errors"))
#: The error-rate incident falls between this run of the replayed day and the next.
ERRORS_AFTER_RUN: Final = 2


@dataclass(frozen=True)
class Event:
    """One benign run or incident: [start, end) epoch seconds."""

    kind: str
    start: float
    end: float
    real: bool


def policy() -> CorrelationPolicy:
    """The policy replayed: the four metrics, a 30-minute window, evaluated every 2 minutes."""
    return CorrelationPolicy.model_validate(
        {
            "apiVersion": "aiops.ajan.dev/v1alpha1",
            "kind": "CorrelationPolicy",
            "metadata": {"name": "checkout", "namespace": "shop"},
            "spec": {
                "targetRef": {"name": "checkout"},
                "interval": "2m",
                "window": "30m",
                "step": "30s",
                "metrics": [
                    {"name": "latency", "query": "q", "role": "slo"},
                    {"name": "errors", "query": "q", "role": "slo"},
                    {"name": "cpu", "query": "q"},
                    {"name": "queue", "query": "q"},
                ],
                "remediation": {"mode": "auto", "cooldown": "0s", "maxActionsPerHour": 60},
            },
        }
    )


def scenario(seed: int) -> tuple[MetricWindow, list[Event]]:
    """Two days of the four metrics (the first is history only, without the batch job) and the
    replayed day's events."""
    rng = np.random.default_rng(seed)
    n = int(2 * DAY_S / STEP_S)
    t = START_S - DAY_S + STEP_S * np.arange(n)
    daily = np.sin(2 * np.pi * (t % DAY_S) / DAY_S)
    noise = np.zeros((n, 4))
    for i in range(1, n):
        noise[i] = 0.8 * noise[i - 1] + rng.normal(0.0, 1.0, 4)
    level = np.array([0.20, 0.010, 0.40, 20.0])
    scale = np.array([0.006, 0.0008, 0.02, 1.5])
    values = level + 0.5 * scale * np.outer(daily, [3, 1, 3, 3]) + scale * noise
    events: list[Event] = []
    offset = rng.uniform(0, 3600)
    real = dict(INCIDENT_RUNS)
    for k, start in enumerate(np.arange(START_S - DAY_S + offset, START_S + DAY_S, BENIGN_EVERY_S)):
        size = BENIGN_SIZE * rng.uniform(0.8, 1.2)
        shifts = {"cpu": size, "queue": size, "latency": size}
        kind = real.get(k - RUNS_PER_DAY, "benign")
        if start < START_S:
            # A new job, first run on the replayed day: a pattern already in the week's history is
            # bounded by the metrics' long-run spread and needs no feedback to stop acting.
            continue
        if kind == "stronger":
            shifts = {name: 3 * shift for name, shift in shifts.items()}
        elif kind == "queue-and-errors":
            shifts["errors"] = 2 * BENIGN_SIZE
        events.append(Event(kind, float(start), float(start + EVENT_S), real=kind != "benign"))
        _bump(values, t, float(start), shifts, scale)
    # Between two runs: the error rate and latency jump.
    errors_at = START_S + offset + (ERRORS_AFTER_RUN + 0.5) * BENIGN_EVERY_S
    events.append(Event("errors", errors_at, errors_at + EVENT_S, real=True))
    _bump(values, t, errors_at, {"errors": 2 * BENIGN_SIZE, "latency": BENIGN_SIZE}, scale)
    return MetricWindow(NAMES, t.astype(np.float64), values, STEP_S), sorted(events, key=lambda e: e.start)


def _bump(
    values: np.ndarray, t: np.ndarray, start: float, shifts: dict[str, float], scale: np.ndarray
) -> None:
    """Add ``shifts`` (in noise units) to the named metrics over [start, start + EVENT_S)."""
    rows = (t >= start) & (t < start + EVENT_S)
    for name, size in shifts.items():
        i = NAMES.index(name)
        values[rows, i] += size * scale[i]


def event_of(plan: PlanEvent, events: Sequence[Event]) -> Event | None:
    """The event a plan was proposed during (or within a window after it began), if any."""
    at = plan.time.timestamp()
    return next((e for e in events if e.start <= at < e.end + 600), None)


@dataclass(frozen=True)
class Figures:
    """What one replay did."""

    benign: int
    benign_acted: int
    incidents: int
    incidents_acted: int
    plans: int


def run(seed: int, *, with_feedback: bool) -> Figures:
    """Replay the replayed day of ``scenario(seed)``, with or without a person's verdicts."""
    history, events = scenario(seed)
    replayed = [e for e in events if e.start >= START_S]

    def judge(plan: PlanEvent) -> Verdict:
        event = event_of(plan, replayed)
        return Verdict.TRUE_POSITIVE if event is not None and event.real else Verdict.FALSE_POSITIVE

    # The metrics' long-run spread comes from the day before the job existed only: the spread would
    # otherwise learn the job's recurring runs within the day by itself (which is what it is for),
    # and this replay measures what a person's verdicts add.
    before = history.timestamps < START_S
    before_job = MetricWindow(history.names, history.timestamps[before], history.values[before], STEP_S)
    result = replay(
        policy(),
        history,
        START_S,
        START_S + DAY_S - STEP_S,
        verdicts=judge if with_feedback else None,
        long_history=before_job,
    )
    acted: set[Event] = set()
    for plan in result.plans:
        event = event_of(plan, replayed)
        if event is not None and ACTION_RANK[Action(plan.action)] >= ACTION_RANK[Action.PAUSE]:
            acted.add(event)
    benign = [e for e in replayed if not e.real]
    real = [e for e in replayed if e.real]
    return Figures(
        benign=len(benign),
        benign_acted=sum(e in acted for e in benign),
        incidents=len(real),
        incidents_acted=sum(e in acted for e in real),
        plans=len(result.plans),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Print, per seed, benign runs and incidents acted on, without and with feedback."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args(argv)
    print("| seed | feedback | benign runs acted on | incidents acted on | plans |")
    print("|---|---|---|---|---|")
    for seed in range(args.seeds):
        for with_feedback in (False, True):
            f = run(seed, with_feedback=with_feedback)
            print(
                f"| {seed} | {'yes' if with_feedback else 'no'} | {f.benign_acted}/{f.benign} | "
                f"{f.incidents_acted}/{f.incidents} | {f.plans} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
