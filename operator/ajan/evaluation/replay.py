"""What the operator would do on labelled data: generated policies replayed over SMD, NAB and PetShop.

Each labelled series becomes a CorrelationPolicy and a history, and :func:`ajan.backtest.replay`
(the operator's own assessment and incident life cycle, evaluation after evaluation) is run over
it. The incidents it opens and the actions it takes are then matched with the labels.

How a dataset becomes policies (:func:`policy_for`):

* **Every column is an SLO metric with objective ``both``.** The datasets say nothing of what the
  columns mean, so no column is a mere signal, and a move either way may be the incident (as it is
  to the references, which are two-sided). ``--objective max`` replays the older mapping, where
  only rises count.
* **Step**: the data's own spacing. **Interval**: 5 minutes, or one step if the data is coarser.
  **Window**: four hours, or 72 steps if that is longer (enough rows for a level).
* **Ladder**: the default one (annotate at 0.5, pause at 0.75, abort at 0.9), mode auto, no
  cooldown (every incident is scored, not held back by an earlier one), 3 recovery evaluations.
* **History**: SMD's ``train`` split, then ``test``, replayed from the first test row (the first
  windows reach back into ``train``); NAB's file, replayed from the end of its
  probationary 15 %; PetShop's ``noissue`` rows, then each issue's rows (re-stamped to follow them).

How incidents are matched with labelled segments (:func:`match`):

* an incident (opened at ``o``) **detects** a segment ``[s, e)`` when ``s - LEAD_S <= o <= e +
  interval``: opened while the segment ran, at the first evaluation after it, or up to
  :data:`LEAD_S` before it (an early warning);
* a segment is **acted on** when an incident that reached pause or stronger detects it; **planned**
  when any incident does;
* an incident that detects no segment is a **false** one (a false action if it reached pause);
* the **delay** of a detected segment is its first detecting incident's opening minus ``s``
  (negative: before it started).

With ``--verdicts`` ajan is also replayed with a person who judges each incident by those same
rules once it has resolved (:func:`judge`), the feedback loop the operator runs with Redis.

Run ``python -m ajan.evaluation.replay --help``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np
from numpy.typing import NDArray

from ajan.evaluation import SHARED_DATA, pool_map
from ajan.evaluation.smd import _ratio

if TYPE_CHECKING:
    from ajan.backtest import PlanEvent
    from ajan.models import Verdict

BoolArray = NDArray[np.bool_]
FloatArray = NDArray[np.float64]

#: An incident opened this long before a labelled segment starts still counts as detecting it.
LEAD_S: Final = 1800.0
#: SMD's rows are one minute apart; they carry no time of their own.
SMD_STEP_S: Final = 60.0
#: An arbitrary epoch for data without a clock (SMD), or re-stamped (PetShop).
EPOCH0: Final = 1.7e9
ACTION_RANK: Final = {"annotate": 1, "pause": 2, "abort": 3, "rollback": 3}


@dataclass(frozen=True)
class Series:
    """One labelled multivariate series, ready to replay.

    names: column names (the policy's metric names). timestamps: shape (T,), evenly spaced by
    ``step_s``. values: shape (T, N). labels: shape (T,), True inside a labelled incident.
    start: the first evaluation (epoch seconds).
    """

    dataset: str
    name: str
    names: tuple[str, ...]
    timestamps: FloatArray
    values: FloatArray
    labels: BoolArray
    step_s: float
    start: float
    group: str = ""
    """What the series is held out with (an SMD machine, a NAB category, PetShop's split)."""

    def segments(self) -> list[tuple[float, float]]:
        """Labelled segments as ``(start, end)`` epoch seconds, ``end`` exclusive, after ``start``."""
        from ajan.evaluation.smd import runs

        starts, ends = runs(self.labels)
        ts = np.append(self.timestamps, self.timestamps[-1] + self.step_s)
        return [(float(ts[a]), float(ts[b])) for a, b in zip(starts, ends, strict=True) if ts[b] > self.start]


def _metric_names(n: int) -> tuple[str, ...]:
    return tuple(f"m{i:02d}" for i in range(n))


def smd_series(root: Path = SHARED_DATA / "smd", machines: Sequence[str] | None = None) -> list[Series]:
    """The SMD machines (``train`` then ``test``), one-minute rows."""
    from ajan.evaluation.smd import available_machines, load_machine

    out = []
    for name in machines or available_machines(root):
        m = load_machine(root, name)
        values = np.concatenate([m.train, m.test])
        ts = EPOCH0 + np.arange(values.shape[0], dtype=np.float64) * SMD_STEP_S
        labels = np.concatenate([np.zeros(m.train.shape[0], dtype=bool), m.labels])
        start = float(ts[m.train.shape[0]])
        out.append(Series("smd", m.name, _metric_names(values.shape[1]), ts, values, labels, SMD_STEP_S,
                          start, group=m.name))  # fmt: skip
    return out


def nab_series(root: Path = SHARED_DATA / "nab") -> list[Series]:
    """The NAB files, each on its own median spacing (rows placed on that grid), replayed from the end
    of the probationary period."""
    from ajan.evaluation.nab import load_corpus

    out = []
    for f in load_corpus(root):
        secs = f.timestamps.astype("datetime64[s]").astype(np.int64).astype(np.float64)
        step = float(np.median(np.diff(secs)))
        rows = np.rint((secs - secs[0]) / step).astype(np.int64)
        keep = np.r_[True, np.diff(rows) > 0]  # NAB's few out-of-order or repeated rows: first wins
        values = np.full((int(rows.max()) + 1, 1), np.nan)
        values[rows[keep], 0] = f.values[keep]
        ts = secs[0] + np.arange(values.shape[0], dtype=np.float64) * step
        # A window covers the grid between its times, gaps in the file included.
        labels = np.zeros(values.shape[0], dtype=bool)
        for begin, finish in f.windows:
            b, e = (float(np.asarray(t).astype("datetime64[s]").astype(np.int64)) for t in (begin, finish))
            labels |= (ts >= b) & (ts <= e)
        start = float(ts[min(int(rows[f.probation]) if f.probation < rows.size else 0, values.shape[0] - 1)])
        out.append(Series("nab", f.path, ("value",), ts, values, labels, step, start, group=f.category))
    return out


def petshop_series(root: Path = SHARED_DATA / "petshop" / "low_traffic") -> list[Series]:
    """Each PetShop issue: ``noissue``'s rows, then the issue's (re-stamped to follow them); the
    labelled segment runs from the symptom to the end. The metrics: the symptom's metric and
    statistic (e.g. latency p99) on every node, as a user guarding the service would choose them;
    columns ``noissue`` lacks, or holds values in fewer than half of its rows (latencies of nodes
    that are seldom called), are left out."""
    from ajan.evaluation.petshop import load_issues, read_metrics

    normal = read_metrics(root / "noissue" / "metrics.csv")
    dense = [k for j, k in enumerate(normal.keys) if np.isfinite(normal.values[:, j]).mean() >= 0.5]
    out = []
    for issue in load_issues(root, ("train", "test")):
        # As a user would write the policy: the symptom's metric and statistic on every service
        # (a policy holds at most 50 metrics; all of PetShop's columns are about 250).
        symptom = (issue.target_metric, issue.target_statistic)
        cols = [k for k in dense if k in issue.metrics.keys and (k[1], k[2]) == symptom]
        base = normal.select(cols)
        rows = issue.metrics.select(cols)
        step = float(np.median(np.diff(normal.timestamps)))
        values = np.concatenate([base, rows])
        ts = EPOCH0 + np.arange(values.shape[0], dtype=np.float64) * step
        issue_ts = ts[base.shape[0] :]
        # The symptom's bucket and the rows after it (rows are 5-minute buckets stamped at their start).
        symptom_row = int(np.searchsorted(issue.metrics.timestamps, issue.target_time, side="right")) - 1
        labels = np.zeros(values.shape[0], dtype=bool)
        labels[base.shape[0] + max(symptom_row, 0) :] = True
        names = tuple(f"c{j:03d}" for j in range(len(cols)))
        out.append(Series("petshop", issue.name, names, ts, values, labels, step, float(issue_ts[0]),
                          group=issue.split))  # fmt: skip
    return out


#: The objective every generated metric gets (``--objective``).
OBJECTIVE: Final = "both"


def policy_for(series: Series, objective: str = OBJECTIVE) -> dict[str, object]:
    """The generated CorrelationPolicy of a series (see the module docstring)."""
    step = series.step_s
    interval = max(300.0, step)
    window = max(4 * 3600.0, 72 * step)
    return {
        "apiVersion": "aiops.ajan.dev/v1alpha1",
        "kind": "CorrelationPolicy",
        "metadata": {"name": "replay", "namespace": series.dataset},
        "spec": {
            "targetRef": {"name": "canary"},
            "interval": f"{interval:g}s",
            "window": f"{window:g}s",
            "step": f"{step:g}s",
            "metrics": [{"name": n, "query": n, "role": "slo", "objective": objective} for n in series.names],
            # The datasets' columns are sparse at times (a latency without requests): every metric
            # is judged on the samples it has.
            "anomaly": {"minCoverage": 0.0},
            "remediation": {"mode": "auto", "cooldown": "0s", "maxActionsPerHour": 60},
        },
    }


@dataclass
class Run:
    """A replay of one series: its incidents (opened, closed, strongest action), how many
    evaluations it made and how many of them lacked data, and its wall time."""

    series: Series
    incidents: list[tuple[float, float, str]]
    evaluations: int = 0
    seconds: float = 0.0
    insufficient: int = 0
    #: ajan's confidence when it opened each incident (aligned with ``incidents``); empty for a
    #: reference, which has no confidence.
    confidences: list[float] = field(default_factory=list)


def replay_series(series: Series, objective: str = OBJECTIVE, *, verdicts: bool = False) -> Run:
    """The operator's replay of ``series`` (:func:`ajan.backtest.replay`); with ``verdicts``, a
    person judges every incident by the labels once it has resolved (:func:`judge`)."""
    from ajan.backtest import replay
    from ajan.models import CorrelationPolicy
    from ajan.services.assessment import MetricWindow

    policy = CorrelationPolicy.model_validate(policy_for(series, objective))
    history = MetricWindow(series.names, series.timestamps, series.values, series.step_s)
    end = float(series.timestamps[-1])
    started = time.perf_counter()
    result = replay(policy, history, series.start, end, verdicts=judge(series) if verdicts else None)
    seconds = time.perf_counter() - started
    lost = sum(result.summary.insufficient_data.values())
    incidents = incidents_of(result, end)
    opening = {p.time.timestamp(): p.confidence for p in result.plans if p.outcome == "open"}
    confidences = [opening.get(opened, float("nan")) for opened, _, _ in incidents]
    return Run(series, incidents, result.summary.evaluations, seconds, lost, confidences)


def judge(series: Series) -> Callable[[PlanEvent], Verdict]:
    """A person who judges each plan by the labels, as :func:`match` does: true positive when its
    incident opened up to :data:`LEAD_S` before a labelled segment, while it ran or one interval
    after it, false positive otherwise. The replay asks once an incident has resolved, for each of
    its plans in order (its opening first), as an on-call engineer would answer after the fact."""
    from ajan.models import Verdict

    segments = series.segments()
    interval = interval_of(series)
    opened: dict[str, float] = {}

    def verdict(plan: PlanEvent) -> Verdict:
        at = opened.setdefault(plan.incident, plan.time.timestamp())
        real = bool(detected(segments, at, interval))
        return Verdict.TRUE_POSITIVE if real else Verdict.FALSE_POSITIVE

    return verdict


def incidents_of(result: object, end: float) -> list[tuple[float, float, str]]:
    """``(opened, closed, strongest action)`` of each incident of a backtest result."""
    from ajan.backtest import BacktestResult

    assert isinstance(result, BacktestResult)
    closed = {r.incident: r.time.timestamp() for r in result.resolutions}
    strongest: dict[str, tuple[float, str]] = {}
    for plan in result.plans:
        opened, action = strongest.get(plan.incident, (plan.time.timestamp(), plan.action))
        if ACTION_RANK.get(plan.action, 0) > ACTION_RANK.get(action, 0):
            action = plan.action
        strongest[plan.incident] = (opened, action)
    return sorted((o, closed.get(i, end), a) for i, (o, a) in strongest.items())


@dataclass(frozen=True)
class Match:
    """Incidents of one or more replays matched with their labels (see the module docstring)."""

    segments: int
    planned: int
    acted: int
    incidents: int
    actions: int
    false_incidents: int
    false_actions: int
    delays_s: tuple[float, ...]
    early: int
    days: float
    normal_seconds: float
    normal_in_incident_s: float
    evaluations: int
    insufficient: int
    seconds: float
    #: ``(confidence at opening, detects a segment)`` of each incident, where the replay has one.
    openings: tuple[tuple[float, bool], ...] = ()

    @property
    def confidence_auc(self) -> float:
        """How well the confidence at opening ranks true incidents above false ones (ROC AUC; NaN
        without both kinds)."""
        from ajan.evaluation.severity import roc_auc

        return roc_auc(*self._openings())

    @property
    def confidence_ece(self) -> float:
        """Expected calibration error of the confidence at opening as the probability that the
        incident is real (NaN without incidents)."""
        from ajan.evaluation.severity import expected_calibration_error

        return expected_calibration_error(*self._openings()) if self.openings else float("nan")

    @property
    def probability_ece(self) -> float:
        """Expected calibration error of the plans' ``probabilityReal`` at opening (the confidence
        through :data:`ajan.analysis.calibration.OPENING_MAP`; NaN without incidents)."""
        from ajan.analysis.calibration import OPENING_MAP, platt
        from ajan.evaluation.severity import expected_calibration_error

        if not self.openings:
            return float("nan")
        confidence, real = self._openings()
        return expected_calibration_error(platt(confidence, OPENING_MAP), real)

    def _openings(self) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
        return (
            np.array([c for c, _ in self.openings], dtype=np.float64),
            np.array([t for _, t in self.openings], dtype=bool),
        )

    @property
    def action_precision(self) -> float:
        """Actions that detect a segment, over all actions."""
        return _ratio(self.actions - self.false_actions, self.actions)

    @property
    def action_recall(self) -> float:
        """Segments acted on (pause or stronger), over all segments."""
        return _ratio(self.acted, self.segments)

    @property
    def plan_precision(self) -> float:
        """Incidents (any plan) that detect a segment, over all incidents."""
        return _ratio(self.incidents - self.false_incidents, self.incidents)

    @property
    def plan_recall(self) -> float:
        """Segments with any plan, over all segments."""
        return _ratio(self.planned, self.segments)

    @staticmethod
    def _f1(p: float, r: float) -> float:
        return _ratio(2 * p * r, p + r)

    @property
    def action_f1(self) -> float:
        """Harmonic mean of the action precision and recall."""
        return self._f1(self.action_precision, self.action_recall)

    @property
    def false_actions_per_day(self) -> float:
        """False actions per day replayed."""
        return _ratio(self.false_actions, self.days)

    @property
    def median_delay_s(self) -> float:
        """Median delay of the first detecting action (NaN without one)."""
        return float(np.median(self.delays_s)) if self.delays_s else float("nan")

    @property
    def early_share(self) -> float:
        """Segments acted on before they started, over the segments acted on."""
        return _ratio(self.early, self.acted)

    @property
    def normal_in_incident(self) -> float:
        """Share of the normal (unlabelled) time spent inside an incident."""
        return _ratio(self.normal_in_incident_s, self.normal_seconds)

    @property
    def evaluations_per_second(self) -> float:
        """Evaluations replayed per second of wall time."""
        return _ratio(self.evaluations, self.seconds)

    def __add__(self, other: Match) -> Match:
        # Every field is a count, a sum of seconds, or a tuple of delays: pooling adds them.
        summed = {f: getattr(self, f) + getattr(other, f) for f in Match.__dataclass_fields__}
        return Match(**summed)


def detected(segments: Sequence[tuple[float, float]], opened: float, interval_s: float) -> list[int]:
    """The segments ``[s, e)`` an incident opened at ``opened`` detects: ``s - LEAD_S <= opened <=
    e + interval_s`` (the module docstring's rule, for :func:`match` and :func:`judge` alike)."""
    return [i for i, (s, e) in enumerate(segments) if s - LEAD_S <= opened <= e + interval_s]


def match(
    series: Series,
    incidents: Sequence[tuple[float, float, str]],
    interval_s: float,
    evaluations: int = 0,
    insufficient: int = 0,
    seconds: float = 0.0,
    confidences: Sequence[float] = (),
) -> Match:
    """Match a replay's incidents ``(opened, closed, action)`` with the series' labelled segments
    (``confidences``, where given, are ajan's at each opening)."""
    segments = series.segments()
    planned: set[int] = set()
    acted: set[int] = set()
    first_action: dict[int, float] = {}
    false_incidents = false_actions = actions = 0
    true_incident: list[bool] = []
    for opened, _closed, action in incidents:
        hits = detected(segments, opened, interval_s)
        true_incident.append(bool(hits))
        is_action = ACTION_RANK.get(action, 0) >= ACTION_RANK["pause"]
        actions += is_action
        if not hits:
            false_incidents += 1
            false_actions += is_action
        planned.update(hits)
        if is_action:
            acted.update(hits)
            for i in hits:
                first_action[i] = min(first_action.get(i, opened), opened)
    delays = tuple(first_action[i] - segments[i][0] for i in sorted(first_action))
    ts = series.timestamps
    scored = ts >= series.start
    normal = scored & ~series.labels
    inside = np.zeros(ts.size, dtype=bool)
    for opened, closed, _ in incidents:
        inside |= (ts >= opened) & (ts < closed)
    return Match(
        segments=len(segments),
        planned=len(planned),
        acted=len(acted),
        incidents=len(incidents),
        actions=actions,
        false_incidents=false_incidents,
        false_actions=false_actions,
        delays_s=delays,
        early=sum(d < 0 for d in delays),
        days=float(scored.sum()) * series.step_s / 86400.0,
        normal_seconds=float(normal.sum()) * series.step_s,
        normal_in_incident_s=float((normal & inside).sum()) * series.step_s,
        evaluations=evaluations,
        insufficient=insufficient,
        seconds=seconds,
        openings=tuple(zip(confidences, true_incident, strict=False)) if confidences else (),
    )


def reference_run(series: Series, detector: str) -> Run:
    """A reference detector as an operator: its alerts (computed row by row, causally, over the whole
    history, with everything before the first evaluation as its baseline) read at the generated
    policy's cadence, with the same life cycle as ajan's incidents: one opens at an evaluation whose
    judged rows hold an alert, is an action (a static guard has no ladder: an alert pauses), and ends
    after three evaluations without one."""
    from ajan.evaluation.baselines import floor_detect, pca_detect

    started = time.perf_counter()
    first = int(np.searchsorted(series.timestamps, series.start))
    base, rest = series.values[:first], series.values[first:]
    if detector == "floor":
        alert = floor_detect(rest, base).alert
    elif detector == "pca":
        alert = pca_detect(rest, base if first else None).alert
    else:
        raise ValueError(f"unknown reference {detector!r}")
    ts = series.timestamps[first:]
    interval = interval_of(series)
    incidents: list[tuple[float, float, str]] = []
    evaluations = 0
    opened: float | None = None
    quiet = 0
    for at in np.arange(series.start + interval - series.step_s, float(ts[-1]) + 1e-9, interval):
        judged = (ts > at - interval) & (ts <= at)
        hot = bool(alert[judged].any())
        evaluations += 1
        if opened is None and hot:
            opened, quiet = float(at), 0
        elif opened is not None:
            quiet = 0 if hot else quiet + 1
            if quiet >= RECOVERY_EVALUATIONS:
                incidents.append((opened, float(at), "pause"))
                opened = None
    if opened is not None:
        incidents.append((opened, float(ts[-1]), "pause"))
    return Run(series, incidents, evaluations, time.perf_counter() - started)


#: Healthy evaluations that end an incident (the default ``recoveryEvaluations``).
RECOVERY_EVALUATIONS: Final = 3


def interval_of(series: Series) -> float:
    """The generated policy's interval, in seconds."""
    return max(300.0, series.step_s)


def load(dataset: str) -> list[Series]:
    """The series of ``dataset`` (smd, nab or petshop)."""
    loaders: dict[str, Callable[[], list[Series]]] = {
        "smd": smd_series,
        "nab": nab_series,
        "petshop": petshop_series,
    }
    return loaders[dataset]()


#: The operator's replays: without verdicts, and with a person judging every incident by the labels.
OPERATORS: Final = {"ajan": False, "ajan+verdicts": True}


def _replay_one(job: tuple[Series, str, str]) -> Run:
    series, detector, objective = job
    if detector in OPERATORS:
        return replay_series(series, objective, verdicts=OPERATORS[detector])
    return reference_run(series, detector)


def run_dataset(
    dataset: str, processes: int = 2, detector: str = "ajan", objective: str = OBJECTIVE
) -> list[Run]:
    """Replay every series of ``dataset`` with ajan's operator, or run a reference (``floor``,
    ``pca``) as one (in ``processes`` worker processes)."""
    jobs = [(s, detector, objective) for s in load(dataset)]
    return pool_map(_replay_one, jobs, processes)


def pooled(runs: Iterable[Run]) -> Match:
    """The matches of several replays, pooled (counts added)."""
    total: Match | None = None
    for r in runs:
        m = match(r.series, r.incidents, interval_of(r.series), r.evaluations, r.insufficient, r.seconds,
                  r.confidences)  # fmt: skip
        total = m if total is None else total + m
    assert total is not None
    return total


def format_row(name: str, m: Match) -> str:
    """One markdown row of the operator-level table."""
    delay = m.median_delay_s
    return (
        f"| {name} | {m.segments} | {m.action_precision:.2f} | {m.action_recall:.2f} | {m.action_f1:.2f} "
        f"| {m.plan_precision:.2f} | {m.plan_recall:.2f} | {m.false_actions_per_day:.2f} "
        f"| {'-' if delay != delay else f'{delay / 60:+.0f} min'} | {m.early_share:.2f} "
        f"| {m.normal_in_incident:.2%} | {m.insufficient} / {m.evaluations} "
        f"| {m.evaluations_per_second:.0f} |"
    )


def format_confidence_row(name: str, m: Match) -> str:
    """One markdown row of the table of ajan's confidence at opening against what the incident was."""
    confidences, real = m._openings()
    mean = f"{confidences.mean():.2f}" if confidences.size else "-"
    return (
        f"| {name} | {confidences.size} | {int(real.sum())} | {mean} | {m.plan_precision:.2f} "
        f"| {m.confidence_auc:.2f} | {m.confidence_ece:.3f} | {m.probability_ece:.3f} |"
    )


CONFIDENCE_HEADER: Final = (
    "| replay | incidents | real | mean confidence at opening | share real | AUC | ECE "
    "| ECE of probabilityReal |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|"
)


HEADER: Final = (
    "| replay | segments | action precision | action recall | action F1 | plan precision | plan recall "
    "| false actions / day | median delay | acted early | normal time in incident "
    "| no data / evaluations | evaluations / s |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ajan.evaluation.replay``: the operator-level table of each dataset."""
    parser = argparse.ArgumentParser(prog="python -m ajan.evaluation.replay", description=__doc__)
    parser.add_argument("--dataset", action="append", choices=["smd", "nab", "petshop"],
                        help="dataset to replay (repeatable; default: all three)")  # fmt: skip
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--no-references", action="store_true", help="ajan only, without floor and pca")
    parser.add_argument("--verdicts", action="store_true",
                        help="also replay ajan with a person judging incidents by the labels")  # fmt: skip
    parser.add_argument("--openings", type=Path, metavar="FILE",
                        help="also write ajan's (confidence at opening, real) pairs as JSON")  # fmt: skip
    parser.add_argument("--objective", choices=["both", "max"], default=OBJECTIVE,
                        help="objective of every generated metric (default: %(default)s)")  # fmt: skip
    args = parser.parse_args(argv)
    print(HEADER)
    detectors = ["ajan"] if args.no_references else ["ajan", "floor", "pca"]
    if args.verdicts:
        detectors.insert(1, "ajan+verdicts")
    confidence_rows = []
    openings: dict[str, list[tuple[float, bool]]] = {}
    for dataset in args.dataset or ["smd", "nab", "petshop"]:
        for detector in detectors:
            runs = run_dataset(dataset, args.processes, detector, args.objective)
            m = pooled(runs)
            print(format_row(f"{detector}, {dataset}", m))
            sys.stdout.flush()
            if detector in OPERATORS:
                confidence_rows.append(format_confidence_row(f"{detector}, {dataset}", m))
            if detector == "ajan":  # the openings the calibration map is fitted on: no verdicts
                openings[dataset] = [(c, bool(r)) for c, r in m.openings]
                if args.openings is not None:  # written as each dataset ends: a long run is not lost
                    args.openings.write_text(json.dumps(openings))
    print(f"\n{CONFIDENCE_HEADER}\n" + "\n".join(confidence_rows))
    return 0


def figures(processes: int = 2) -> dict[str, dict[str, dict[str, float]]]:
    """Operator-level figures, ``{dataset: {detector: {figure: value}}}``, for the regression test."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for dataset in ("smd", "nab", "petshop"):
        out[dataset] = {}
        for detector in ("ajan", "floor", "pca"):
            m = pooled(run_dataset(dataset, processes, detector))
            out[dataset][detector] = {
                "action_precision": m.action_precision,
                "action_recall": m.action_recall,
                "action_f1": m.action_f1,
                "plan_precision": m.plan_precision,
                "plan_recall": m.plan_recall,
                "false_actions_per_day": m.false_actions_per_day,
                "normal_in_incident": m.normal_in_incident,
            }
    return out


if __name__ == "__main__":
    raise SystemExit(main())
