"""Root-cause ranking of ajan on the PetShop dataset, low-traffic scenario.

Data layout (``../shared/data/petshop/low_traffic`` next to the repository):

``graph.csv``
    Square adjacency matrix with the node names as header row and first column;
    a non-zero entry in row ``a``, column ``b`` means ``a`` calls ``b``.
``noissue/metrics.csv``, ``{train,test}/issue_N/metrics.csv``
    Four header rows, each starting with its own label in the first column:
    ``microservice`` (node name), ``metric`` (``latency``, ``requests`` or
    ``availability``), ``statistic`` (``Average``, ``p50``, ``p90``, ``p95``,
    ``p99`` for latency, ``Sum`` for requests, ``Average`` for availability)
    and ``unix_timestamp`` (empty). Then one row per 5 minutes: the unix time in
    the first column and one value per (node, metric, statistic) column. Column
    order differs between files, so columns are matched by that triple. An
    empty cell is a missing value: ``requests/Sum`` is never empty (it is 0 in
    quiet periods) and latency and availability are empty exactly when there
    was no request to measure them on.
``{train,test}/issue_N/target.json``
    ``target`` (node, metric, ``agg`` = statistic, unix ``timestamp`` of the
    symptom) and ``root_cause`` (node).

Decisions, each made before looking at any result:

* **Missing values stay NaN.** A latency with no request behind it is
  undefined, not 0 and not the previous value; ajan's detector takes NaN as
  "no sample", which is exactly that.
* **Baseline: ``noissue/metrics.csv``, for each metric's spread only.** An issue file
  holds only five rows, the first starting 6-10 minutes before the symptom and the last
  10-14 minutes after it, so only two start before the symptom and only the first ends
  before it (the incident starts with the bucket holding the symptom): too few to learn a
  normal spread, and below the detector's minimum history. ``noissue`` holds 589 rows
  (about two days) of normal operation of the same deployment, with the same columns
  except one node: ``invalid_AWS::DynamoDB::Table`` appears only in the issue files.
  Columns without a baseline are left out; that node (never a root cause) then scores 0.
  ``noissue`` was recorded about four months after the issues (August vs April 2023), at
  its own traffic levels, so it is passed with ``contiguous=False``: ``rank_metrics``
  then judges the incident rows against the level of the issue's own rows before the
  symptom and takes only the spread from ``noissue``
  (:func:`ajan.analysis.rootcause.rank_level_shifts`). It is the dataset's own
  designated normal reference and carries no information about any issue. (This one
  decision was revised after results were seen: until December 2026 the incident was
  judged against ``noissue``'s levels, which put every metric whose level had changed in
  four months among the suspects; docs/accuracy.md gives both.)
* **Incident window.** Rows are taken to be 5-minute buckets stamped at their
  start, as CloudWatch does. The incident interval is every row whose bucket
  overlaps ``[symptom, symptom + 15 min]``: it starts with the bucket that
  contains the symptom time. Rows before it are history for the detector; rows
  starting more than 15 minutes after the symptom are cut off and never shown
  (in this dataset every file ends within that window).
* **Metrics.** By default every (node, metric, statistic) column is ranked
  (``--metrics all``); ``--metrics symptom`` keeps only the symptom's metric
  and statistic on every node, as the dataset's own baseline does.
* **Node score** (the plain ranking): the highest ``rank_metrics`` score
  among a node's columns.
* **Graph-aware ranking** (labelled separately; it uses ``graph.csv``, which a
  user of ajan knows about their services): a traversal from the symptom. Only the
  symptom node and the nodes it reaches through calls can have caused the symptom;
  every other node ranks last (score -1). Latency and errors travel from a callee up
  to its callers, so among the reachable nodes an anomalous one (node score at least
  :data:`ANOMALOUS`, i.e. a deviation of the detector's ``z_half``) none of whose
  callees is anomalous is where the trouble starts: such nodes rank first (score + 1),
  then every other reachable node by its score
  (:func:`ajan.analysis.rootcause.traverse_call_graph`, also behind ``ajan rank
  --depends-on``). Whether a callee counts as anomalous by all its metrics or only by
  its latency and availability (its request count being its callers' doing) made no
  difference here, so all count, as they must for a user's metrics of unknown kind.

Top-k recall counts ties in expectation over a uniformly random order, so an
uninformative ranking earns chance credit, not more.

**Named references.** The same issues are ranked, in the same run and with the
same baseline, columns, window and node aggregation, by the two references of
:mod:`ajan.evaluation.baselines`: ``floor`` (each column's mean deviation over
the incident rows from the baseline's median, in the baseline's robust scale)
and ``pca`` (each column's mean squared PCA reconstruction residual). Their
column scores are unbounded; for the traversal each is divided by the level at
which that reference itself alerts (the floor's z of 20; for PCA the column's
99.9th percentile residual on the baseline) and mapped by ``s / (1 + s)``, so
that 0.5 means "anomalous" for every detector. Their plain ranking is unchanged.

Run ``python -m ajan.evaluation.petshop --help`` for the command line.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from ajan.evaluation import SHARED_DATA
from ajan.evaluation.baselines import squash
from ajan.evaluation.smd import segment_hit

if TYPE_CHECKING:
    from ajan.analysis.detector import DetectorConfig

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]
MetricKey = tuple[str, str, str]

DEFAULT_DATA = SHARED_DATA / "petshop" / "low_traffic"
DEFAULT_WINDOW_MINUTES = 15.0
#: The detector settings for PetShop. noissue/ was recorded months after the
#: incidents, so it does not directly precede them as ajan's baseline normally
#: does: the two views that compare with a fixed time earlier (the seasonal
#: forecast's "same phase of earlier days" and the trend's "level an hour ago")
#: would compare across that gap, and are switched off. Nothing else differs.
#: Only the settings the detector has are applied (:func:`_non_contiguous_config`):
#: a detector without those views has nothing to switch off.
NON_CONTIGUOUS_BASELINE = ("seasonal=false", "use_trend=false")
#: A node score at which a node counts as anomalous in the call-graph traversal: ajan's scores are
#: 0.5 at the deviation ``z_half``, the point its detector calls half-way to certain.
ANOMALOUS = 0.5
_HEADER = ("microservice", "metric", "statistic", "unix_timestamp")


@dataclass(frozen=True)
class MetricTable:
    """One ``metrics.csv``.

    Attributes
    ----------
    keys : tuple of (node, metric, statistic)
        One per column of ``values``.
    timestamps : ndarray, shape (T,)
        Unix seconds, increasing.
    values : ndarray, shape (T, M)
        NaN where the file has an empty cell.
    """

    keys: tuple[MetricKey, ...]
    timestamps: FloatArray
    values: FloatArray

    def select(self, keys: Sequence[MetricKey]) -> FloatArray:
        """Columns in the order of ``keys``; a key the table lacks gives a NaN column."""
        index = {k: i for i, k in enumerate(self.keys)}
        out = np.full((self.values.shape[0], len(keys)), np.nan)
        for j, key in enumerate(keys):
            if key in index:
                out[:, j] = self.values[:, index[key]]
        return out


@dataclass(frozen=True)
class CallGraph:
    """The service call graph.

    Attributes
    ----------
    nodes : tuple of str
    calls : ndarray of bool, shape (n, n)
        ``calls[i, j]`` when ``nodes[i]`` calls ``nodes[j]``.
    """

    nodes: tuple[str, ...]
    calls: BoolArray

    def callees(self, node: str) -> list[str]:
        """Nodes that ``node`` calls directly."""
        i = self.nodes.index(node)
        return [self.nodes[j] for j in np.flatnonzero(self.calls[i])]


@dataclass(frozen=True)
class Issue:
    """One PetShop incident.

    Attributes
    ----------
    split : str
        ``"train"`` or ``"test"``.
    name : str
        Directory name, e.g. ``"issue_3"``.
    metrics : MetricTable
    target_node, target_metric, target_statistic : str
        Where the symptom showed.
    target_time : float
        Unix seconds of the symptom.
    root_cause : str
        The node where the fault was injected.
    """

    split: str
    name: str
    metrics: MetricTable
    target_node: str
    target_metric: str
    target_statistic: str
    target_time: float
    root_cause: str


@dataclass(frozen=True)
class Ranking:
    """One ranking of the nodes and how it placed the true root cause.

    Attributes
    ----------
    scores : dict of str to float
        Per node, higher = more likely the root cause.
    rank : int
        1 + the number of nodes scored strictly above the root cause.
    tied : int
        Nodes with exactly the root cause's score, itself included.
    top1, top3 : float
        Chance that the root cause is in the top 1 / 3 under a random order of ties.
    leaders : list of str
        The three best-scored nodes (ties in node order).
    """

    scores: dict[str, float]
    rank: int
    tied: int
    top1: float
    top3: float
    leaders: list[str]


@dataclass(frozen=True)
class IssueResult:
    """Both rankings of one issue by one detector.

    ``detector`` is ``"ajan"`` or a reference of :mod:`ajan.evaluation.baselines`;
    ajan's result carries the references' results on the same issue in ``references``.
    """

    split: str
    name: str
    target_metric: str
    root_cause: str
    incident_rows: tuple[int, int]
    plain: Ranking
    graph: Ranking
    seconds: float
    detector: str = "ajan"
    references: tuple[IssueResult, ...] = ()

    def by_detector(self) -> dict[str, IssueResult]:
        """This result and its references, by detector name (ajan first)."""
        return {self.detector: self, **{r.detector: r for r in self.references}}


def _non_contiguous_config(extra: Sequence[str] = ()) -> DetectorConfig:
    from dataclasses import fields

    from ajan.analysis.detector import DetectorConfig, config_with

    known = {f.name for f in fields(DetectorConfig)}
    kept = [s for s in NON_CONTIGUOUS_BASELINE if s.partition("=")[0] in known]
    return config_with([*kept, *extra])


def read_metrics(path: Path) -> MetricTable:
    """Read a PetShop ``metrics.csv`` (see the module docstring for its layout).

    Raises
    ------
    ValueError
        When the four header rows are not where they should be, a row has the
        wrong number of cells, or the timestamps do not increase.
    """
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if len(rows) < 4 or tuple(r[0] for r in rows[:4]) != _HEADER:
        raise ValueError(f"{path}: expected header rows {_HEADER}")
    width = len(rows[0])
    keys = tuple(zip(rows[0][1:], rows[1][1:], rows[2][1:], strict=True))
    if len(set(keys)) != len(keys):
        raise ValueError(f"{path}: duplicate (node, metric, statistic) columns")
    data = rows[4:]
    if any(len(r) != width for r in data):
        raise ValueError(f"{path}: rows of unequal length")
    timestamps = np.array([float(r[0]) for r in data])
    values = np.array(
        [[float(x) if x.strip() else np.nan for x in r[1:]] for r in data], dtype=float
    ).reshape(len(data), width - 1)
    if np.any(np.diff(timestamps) <= 0):
        raise ValueError(f"{path}: timestamps do not increase")
    return MetricTable(keys, timestamps, values)


def read_graph(path: Path) -> CallGraph:
    """Read ``graph.csv``; entries are matched by name, not by position."""
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    nodes = tuple(rows[0][1:])
    index = {n: i for i, n in enumerate(nodes)}
    calls = np.zeros((len(nodes), len(nodes)), dtype=bool)
    for row in rows[1:]:
        if not row:
            continue
        i = index[row[0]]
        calls[i] = np.array([float(x) != 0.0 for x in row[1:]], dtype=bool)
    return CallGraph(nodes, calls)


def load_issue(directory: Path, split: str) -> Issue:
    """Load ``metrics.csv`` and ``target.json`` of one issue directory."""
    directory = Path(directory)
    target = json.loads((directory / "target.json").read_text())
    return Issue(
        split=split,
        name=directory.name,
        metrics=read_metrics(directory / "metrics.csv"),
        target_node=target["target"]["node"],
        target_metric=target["target"]["metric"],
        target_statistic=target["target"]["agg"],
        target_time=float(target["target"]["timestamp"]),
        root_cause=target["root_cause"]["node"],
    )


def load_issues(root: Path, splits: Iterable[str]) -> list[Issue]:
    """All issues of ``splits`` under ``root``, in split order then issue number."""
    issues: list[Issue] = []
    for split in splits:
        dirs = [d for d in (Path(root) / split).glob("issue_*") if d.is_dir()]
        for d in sorted(dirs, key=lambda d: int(d.name.rsplit("_", 1)[1])):
            issues.append(load_issue(d, split))
    return issues


def incident_window(timestamps: FloatArray, symptom: float, window_s: float) -> tuple[int, int]:
    """Rows ``[start, end)`` whose buckets overlap ``[symptom, symptom + window_s]``.

    Each row is the bucket ``[t, t + period)`` with ``period`` the median spacing
    of ``timestamps``.

    Raises
    ------
    ValueError
        When no row overlaps the window.

    Examples
    --------
    >>> incident_window(np.array([0.0, 300, 600, 900, 1200]), 500.0, 600.0)
    (1, 4)
    """
    t = np.asarray(timestamps, dtype=float)
    period = float(np.median(np.diff(t))) if t.size > 1 else 0.0
    start = int(np.searchsorted(t + period, symptom, side="right"))
    end = int(np.searchsorted(t, symptom + window_s, side="right"))
    if start >= end:
        raise ValueError(f"no row overlaps [{symptom}, {symptom + window_s}]")
    return start, end


def node_scores(keys: Sequence[MetricKey], scores: FloatArray, nodes: Iterable[str]) -> dict[str, float]:
    """Highest metric score per node; NaN scores count as 0, a node without a column scores 0."""
    out = dict.fromkeys(nodes, 0.0)
    for (node, _, _), s in zip(keys, scores, strict=True):
        if np.isfinite(s) and s > out.get(node, 0.0):
            out[node] = float(s)
    return out


def graph_scores(graph: CallGraph, target: str, score: dict[str, float]) -> dict[str, float]:
    """Graph-aware node scores: :func:`ajan.analysis.rootcause.traverse_call_graph` from ``target``.

    Examples
    --------
    >>> g = CallGraph(("a", "b", "c"), np.array([[0, 1, 0], [0, 0, 0], [0, 0, 0]], bool))
    >>> graph_scores(g, "a", {"a": 0.8, "b": 0.6, "c": 1.0})
    {'a': 0.8, 'b': 1.6, 'c': -1.0}
    """
    from ajan.analysis.rootcause import traverse_call_graph

    if target not in graph.nodes:  # a graph that does not know the symptom's node says nothing
        return dict(score)
    calls = {node: graph.callees(node) for node in graph.nodes}
    return traverse_call_graph(score, calls, target, anomalous=ANOMALOUS)


def evaluate_ranking(scores: dict[str, float], truth: str) -> Ranking:
    """Place ``truth`` in a node ranking, counting ties in expectation."""
    names = list(scores)
    values = np.array([scores[n] for n in names], dtype=float)
    if truth not in scores:
        raise ValueError(f"root cause {truth!r} is not a ranked node")
    i = names.index(truth)
    order = sorted(range(len(names)), key=lambda j: (-values[j], j))
    return Ranking(
        scores=scores,
        rank=1 + int(np.count_nonzero(values > values[i])),
        tied=int(np.count_nonzero(values == values[i])),
        top1=segment_hit(values, (i,), 100),
        top3=segment_hit(values, (i,), 300),
        leaders=[names[j] for j in order[:3]],
    )


def _issue_result(
    issue: Issue,
    graph: CallGraph,
    keys: Sequence[MetricKey],
    scores: FloatArray,
    window: tuple[int, int],
    seconds: float,
    detector: str,
    graph_in: FloatArray,
    references: tuple[IssueResult, ...] = (),
) -> IssueResult:
    plain = node_scores(keys, scores, graph.nodes)
    aware = graph_scores(graph, issue.target_node, node_scores(keys, graph_in, graph.nodes))
    return IssueResult(
        split=issue.split,
        name=issue.name,
        target_metric=issue.target_metric,
        root_cause=issue.root_cause,
        incident_rows=window,
        plain=evaluate_ranking(plain, issue.root_cause),
        graph=evaluate_ranking(aware, issue.root_cause),
        seconds=seconds,
        detector=detector,
        references=references,
    )


def rank_issue(
    issue: Issue,
    baseline: MetricTable,
    graph: CallGraph,
    metrics: str = "all",
    window_minutes: float = DEFAULT_WINDOW_MINUTES,
    config: DetectorConfig | None = None,
    references: Sequence[str] | None = None,
) -> IssueResult:
    """Rank the nodes of one issue with ajan, plain and graph-aware.

    ``rank_metrics(values, start, end, baseline)`` is called once, on the
    columns present in both the issue and the baseline, with ``values`` cut at
    the end of the incident window. ``references`` names the references of
    :mod:`ajan.evaluation.baselines` that rank the same columns too
    (``floor_rank`` and ``pca_rank``, same arguments), by default all; ``()`` for none.
    """
    from ajan.analysis.detector import rank_metrics
    from ajan.evaluation.baselines import (
        FLOOR_ALERT_Z,
        PCA_ALERT_PERCENTILE,
        REFERENCES,
        floor_rank,
        pca_fit,
        pca_rank,
    )

    if metrics not in ("all", "symptom"):
        raise ValueError(f"metrics must be 'all' or 'symptom', got {metrics!r}")
    t0 = time.perf_counter()
    present = set(issue.metrics.keys)
    keys = [k for k in baseline.keys if k in present]
    if metrics == "symptom":
        keys = [k for k in keys if (k[1], k[2]) == (issue.target_metric, issue.target_statistic)]
    start, end = incident_window(issue.metrics.timestamps, issue.target_time, window_minutes * 60)
    values = issue.metrics.select(keys)[:end]
    base = baseline.select(keys)
    scores = np.asarray(
        rank_metrics(
            values, start, end, baseline=base, config=config or _non_contiguous_config(), contiguous=False
        )
    )
    seconds = time.perf_counter() - t0
    refs = []
    for name in REFERENCES if references is None else references:
        t1 = time.perf_counter()
        # For the traversal each reference's column scores go into [0, 1] with 0.5 where that
        # reference itself would call the column anomalous (its own alert level), as ajan's do.
        if name == "floor":
            ref_scores = floor_rank(values, start, end, base)
            anomalous_at: FloatArray | float = FLOOR_ALERT_Z
        elif name == "pca":
            ref_scores = pca_rank(values, start, end, base)
            residuals = pca_fit(base).residuals(base)
            anomalous_at = np.nanpercentile(residuals, PCA_ALERT_PERCENTILE, axis=0)
        else:
            raise ValueError(f"unknown reference {name!r}; known: {', '.join(REFERENCES)}")
        with np.errstate(divide="ignore", invalid="ignore"):  # a zero level: inf (squashed to 1) or NaN (0)
            graph_in = squash(ref_scores / anomalous_at)
        refs.append(
            _issue_result(
                issue,
                graph,
                keys,
                ref_scores,
                (start, end),
                time.perf_counter() - t1,
                name,
                graph_in=graph_in,
            )
        )
    # ajan's scores go to the graph formula as they are, as before the references existed.
    return _issue_result(
        issue,
        graph,
        keys,
        scores,
        (start, end),
        seconds,
        "ajan",
        graph_in=scores,
        references=tuple(refs),
    )


def _rank_text(r: Ranking) -> str:
    return str(r.rank) if r.tied == 1 else f"{r.rank}-{r.rank + r.tied - 1}"


def _short(node: str) -> str:
    # Keep both ends: names differ in their suffix (``…_AWS::Lambda`` vs ``…::Function``).
    return node if len(node) <= 32 else f"{node[:15]}…{node[-16:]}"


def format_report(results: Sequence[IssueResult]) -> str:
    """Markdown: a summary per variant, split and symptom metric, then every issue."""
    lines = [
        "| ranking | split | symptom | issues | top-1 recall | top-3 recall |",
        "|---|---|---|---|---|---|",
    ]
    splits = sorted({r.split for r in results}, key=["train", "test"].index)
    for variant in ("plain", "graph"):
        label = "ajan (plain)" if variant == "plain" else "ajan + call graph"
        for split in [*splits, "all"] if len(splits) > 1 else splits:
            chosen = [r for r in results if split in ("all", r.split)]
            for symptom in ("latency", "availability", "any"):
                group = [r for r in chosen if symptom in ("any", r.target_metric)]
                if not group:
                    continue
                rankings = [getattr(r, variant) for r in group]
                top1 = float(np.mean([x.top1 for x in rankings]))
                top3 = float(np.mean([x.top3 for x in rankings]))
                lines.append(f"| {label} | {split} | {symptom} | {len(group)} | {top1:.3f} | {top3:.3f} |")
    lines += [
        "",
        "| split | issue | symptom | root cause | plain rank | plain top 3 | graph rank | graph top 3 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.split} | {r.name} | {r.target_metric} | {_short(r.root_cause)} "
            f"| {_rank_text(r.plain)} | {', '.join(_short(n) for n in r.plain.leaders)} "
            f"| {_rank_text(r.graph)} | {', '.join(_short(n) for n in r.graph.leaders)} |"
        )
    return "\n".join(lines)


def _groups(results: Sequence[IssueResult]) -> list[tuple[str, str, list[IssueResult]]]:
    """``(split, symptom, results)`` in table order: each split (and "all"), each symptom."""
    out = []
    splits = sorted({r.split for r in results}, key=["train", "test"].index)
    for split in [*splits, "all"] if len(splits) > 1 else splits:
        chosen = [r for r in results if split in ("all", r.split)]
        for symptom in ("latency", "availability", "any"):
            group = [r for r in chosen if symptom in ("any", r.target_metric)]
            if group:
                out.append((split, symptom, group))
    return out


def figures(results: Sequence[IssueResult]) -> dict[str, dict[str, float]]:
    """Top-1 and top-3 recall of every detector, as plain data.

    Returns
    -------
    dict
        ``{detector: {figure: value}}`` with keys ``<variant>_<split>_<symptom>_top1`` and
        ``..._top3`` (variant ``plain`` or ``graph``; split ``train``, ``test`` or ``all``;
        symptom ``latency``, ``availability`` or ``any``), ``issues`` and ``seconds``.
    """
    if not results:
        return {}
    names = list(results[0].by_detector())
    out: dict[str, dict[str, float]] = {}
    for d in names:
        fig: dict[str, float] = {"issues": len(results)}
        for split, symptom, group in _groups(results):
            for variant in ("plain", "graph"):
                rankings = [getattr(r.by_detector()[d], variant) for r in group]
                fig[f"{variant}_{split}_{symptom}_top1"] = float(np.mean([x.top1 for x in rankings]))
                fig[f"{variant}_{split}_{symptom}_top3"] = float(np.mean([x.top3 for x in rankings]))
        fig["seconds"] = float(sum(r.by_detector()[d].seconds for r in results))
        out[d] = fig
    return out


def format_comparison(results: Sequence[IssueResult]) -> str:
    """Markdown: top-1/top-3 of ajan beside the named references, then each issue's ranks.

    Empty when the results carry no reference.
    """
    if not results or not results[0].references:
        return ""
    names = list(results[0].by_detector())
    figs = figures(results)
    lines = [
        "ajan beside the named references (ajan.evaluation.baselines), same run, baseline, columns "
        "and window: floor = mean robust deviation from the baseline's median; pca = mean squared "
        "PCA reconstruction residual (references mapped by s/(1+s) for the call-graph rows).",
        "",
        "| ranking | split | symptom | issues | "
        + " | ".join(f"{n} top-1" for n in names)
        + " | "
        + " | ".join(f"{n} top-3" for n in names)
        + " |",
        "|---|---|---|---|" + "---|" * (2 * len(names)),
    ]
    for variant, label in (("plain", "plain"), ("graph", "+ call graph")):
        for split, symptom, group in _groups(results):
            key = f"{variant}_{split}_{symptom}"
            lines.append(
                f"| {label} | {split} | {symptom} | {len(group)} | "
                + " | ".join(f"{figs[n][key + '_top1']:.3f}" for n in names)
                + " | "
                + " | ".join(f"{figs[n][key + '_top3']:.3f}" for n in names)
                + " |"
            )
    lines += [
        "",
        "| split | issue | symptom | "
        + " | ".join(f"{n} plain rank" for n in names)
        + " | "
        + " | ".join(f"{n} graph rank" for n in names)
        + " |",
        "|---|---|---|" + "---|" * (2 * len(names)),
    ]
    for r in results:
        each = r.by_detector()
        lines.append(
            f"| {r.split} | {r.name} | {r.target_metric} | "
            + " | ".join(_rank_text(each[n].plain) for n in names)
            + " | "
            + " | ".join(_rank_text(each[n].graph) for n in names)
            + " |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: rank every issue of a split and print the recall tables.

    Returns the process exit status.
    """
    parser = argparse.ArgumentParser(
        prog="python -m ajan.evaluation.petshop",
        description="Top-1/top-3 recall of ajan's root-cause ranking on PetShop low_traffic.",
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"default {DEFAULT_DATA}")
    parser.add_argument("--split", choices=("test", "train", "all"), default="test")
    parser.add_argument(
        "--metrics",
        choices=("all", "symptom"),
        default="all",
        help="rank every column (default) or only the symptom's metric and statistic",
    )
    parser.add_argument(
        "--window-minutes",
        type=float,
        default=DEFAULT_WINDOW_MINUTES,
        help="incident window after the symptom time (default 15)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a detector setting (DetectorConfig), repeatable",
    )
    parser.add_argument(
        "--no-references",
        action="store_true",
        help="skip the named references (floor, pca) printed beside ajan",
    )
    args = parser.parse_args(argv)
    if not (args.data / "graph.csv").is_file():
        parser.error(f"no PetShop data under {args.data}")
    try:
        config = _non_contiguous_config(args.set)
    except ValueError as exc:
        parser.error(str(exc))
    t0 = time.perf_counter()
    splits = ("train", "test") if args.split == "all" else (args.split,)
    graph = read_graph(args.data / "graph.csv")
    baseline = read_metrics(args.data / "noissue" / "metrics.csv")
    results = [
        rank_issue(
            issue,
            baseline,
            graph,
            args.metrics,
            args.window_minutes,
            config,
            references=() if args.no_references else None,
        )
        for issue in load_issues(args.data, splits)
    ]
    wall = time.perf_counter() - t0
    print(format_report(results))
    comparison = format_comparison(results)
    if comparison:
        print()
        print(comparison)
    print()
    print(f"- {len(results)} issues, metrics={args.metrics}, wall time {wall:.1f}s")
    if args.json is not None:
        payload = {
            "data": str(args.data),
            "split": args.split,
            "metrics": args.metrics,
            "window_minutes": args.window_minutes,
            "issues": [asdict(r) for r in results],
            "figures": figures(results),
            "wall_seconds": wall,
        }
        args.json.write_text(json.dumps(payload, indent=2, allow_nan=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
