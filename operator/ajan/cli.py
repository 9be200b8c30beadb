"""The ``ajan`` command line: ``detect`` and ``rank`` over metric CSV files, ``backtest`` of a policy,
``report`` of a RemediationPlan as an HTML page, ``run`` the operator.

Exit codes: 0 success, 2 bad input or usage (one line on stderr naming the
problem), 1 an internal error (one line; set AJAN_DEBUG=1 for the traceback).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from ajan import __version__
from ajan.runner import add_run_parser, positive_int
from ajan.runner import run as run_operator
from ajan.table import InputError, MetricTable, parse_timestamp, read_table

if TYPE_CHECKING:
    import numpy as np

# The analysis modules (numpy, scipy.stats) are imported inside the commands: a
# usage error should not wait a second for scipy to load.

EXIT_BAD_INPUT = 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line, like every other bad input."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ajan", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"ajan {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    _add_detect_and_rank(sub)
    _add_backtest(sub)
    _add_report(sub)
    add_run_parser(sub)
    return parser


def _add_detect_and_rank(sub: argparse._SubParsersAction[Any]) -> None:
    det = sub.add_parser("detect", help="score every row of a metric CSV (causal)")
    det.add_argument("input", help="CSV with a header row; optional 'timestamp' column")
    det.add_argument("--train", help="CSV of normal history with the same columns")
    det.add_argument("--output", help="write the result here instead of stdout")

    rank = sub.add_parser("rank", help="rank metrics by responsibility for an interval")
    rank.add_argument("input")
    rank.add_argument("--start", required=True, help="first row (index or timestamp)")
    rank.add_argument("--end", required=True, help="row after the last (index or timestamp)")
    history = rank.add_mutually_exclusive_group()
    history.add_argument(
        "--train", help="CSV of normal history with the same columns, ending where INPUT begins"
    )
    history.add_argument(
        "--reference",
        metavar="CSV",
        help=(
            "CSV of normal history recorded at another time or traffic level: only each metric's spread "
            "is taken from it; the level is that of the rows before --start"
        ),
    )
    rank.add_argument(
        "--depends-on",
        metavar="YAML",
        help="services, their metric columns and whom they call: also rank services (README, rank)",
    )
    rank.add_argument("--symptom", metavar="SERVICE", help="with --depends-on: the service whose SLO broke")
    rank.add_argument("--top", type=int, help="print only the K most responsible metrics")


def _add_backtest(sub: argparse._SubParsersAction[Any]) -> None:
    bt = sub.add_parser(
        "backtest",
        help="replay a CorrelationPolicy over Prometheus history: the plans it would have proposed",
        description=(
            "Replay a CorrelationPolicy over Prometheus history and print the RemediationPlans it would "
            "have proposed, when, and why, with a summary. Tune a policy (ladder, sensitivity, window) "
            "with it before enabling it: nothing is written to the cluster."
        ),
    )
    bt.add_argument("--policy", required=True, metavar="FILE", help="YAML file with one CorrelationPolicy")
    bt.add_argument(
        "--prometheus",
        metavar="URL",
        default=os.environ.get("AJAN_PROMETHEUS_URL"),
        help="Prometheus base URL (default: $AJAN_PROMETHEUS_URL, else the policy's spec.prometheus.url)",
    )
    bt.add_argument(
        "--history",
        metavar="FILE.csv",
        help=(
            "replay exported metrics instead of Prometheus: a timestamp column (RFC 3339 or epoch "
            "seconds) and one column per metric name of the policy (docs/backtest.md)"
        ),
    )
    bt.add_argument(
        "--from",
        dest="start",
        metavar="TIME",
        help=(
            "first evaluation: RFC 3339 (2026-11-23T10:00:00Z), epoch seconds, 'now', or -2h/-30m/-7d "
            "(required with Prometheus; with --history, default: the first time the policy's window is full)"
        ),
    )
    bt.add_argument(
        "--to",
        dest="end",
        default="now",
        metavar="TIME",
        help="last evaluation (default: now; with --history, the file's end)",
    )
    # Not "--output FILE" as for detect/rank: a format, so dest must not be "output" (see main()).
    bt.add_argument(
        "--format",
        "--output",
        dest="format",
        choices=["table", "json"],
        default="table",
        help="table (default) or json (docs/backtest.md)",
    )
    bt.add_argument(
        "--timeout", type=float, default=30.0, metavar="SECONDS", help="deadline of each Prometheus query"
    )
    bt.add_argument(
        "--workers",
        type=positive_int,
        # sched_getaffinity honours a CPU set (a container's cpuset); it is Linux-only.
        default=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1,
        metavar="N",
        help=(
            "processes that assess quiet windows ahead (default: the CPUs this process may use, here "
            "%(default)s; 1: all in this process); the result is the same"
        ),
    )


def _add_report(sub: argparse._SubParsersAction[Any]) -> None:
    rep = sub.add_parser(
        "report",
        help="render a RemediationPlan as one self-contained HTML page",
        description=(
            "Render a RemediationPlan as one self-contained HTML page (inline CSS and SVG, no script): "
            "header, anomaly timeline from Prometheus, correlation heatmap, evidence, the patch sent (or, "
            "in dry-run, that would be sent) and the plan's conditions and history. Without an answering "
            "Prometheus the page is still written, from the evidence alone, and says why."
        ),
    )
    rep.add_argument("plan", metavar="PLAN", help="name of the RemediationPlan")
    rep.add_argument(
        "-n", "--namespace", help="the plan's namespace (default: the kubeconfig context's, else default)"
    )
    rep.add_argument("-o", "--output", metavar="FILE", help="write here (default: PLAN.html; '-' for stdout)")
    rep.add_argument(
        "--prometheus",
        metavar="URL",
        help="Prometheus base URL (default: the policy's spec.prometheus.url, else $AJAN_PROMETHEUS_URL)",
    )
    rep.add_argument(
        "--kubeconfig", metavar="FILE", help="default: $KUBECONFIG, else ~/.kube/config, else in-cluster"
    )


def _load(args: argparse.Namespace, need_detector_rows: bool = True) -> tuple[MetricTable, np.ndarray | None]:
    from ajan.analysis.detector import min_rows

    table = read_table(args.input)
    baseline = None
    other = getattr(args, "train", None) or getattr(args, "reference", None)
    if other:
        baseline = read_table(other, columns=table.names).values
    needed = min_rows()
    have = table.values.shape[0] + (0 if baseline is None else baseline.shape[0])
    if need_detector_rows and have < needed:
        raise InputError(
            f"{args.input}: {have} rows (with --train) but the detector needs at least {needed}; "
            "give more rows or a longer --train baseline"
        )
    return table, baseline


def _row_index(table: MetricTable, text: str, flag: str) -> int:
    """A row index, or with a timestamp column, the first row at or after a timestamp."""
    import numpy as np

    n = table.values.shape[0]
    s = text.strip()
    if s.lstrip("-").isdigit() and 0 <= int(s) <= n:
        return int(s)
    if table.epochs is None:
        raise InputError(f"{flag} {s!r} is not a row index in [0, {n}] and the input has no timestamp column")
    try:
        t = parse_timestamp(s)
    except InputError as exc:
        raise InputError(f"{flag}: {exc}") from None
    if np.any(np.diff(table.epochs) < 0):
        raise InputError(f"{flag}: the timestamp column is not in time order, so a time cannot name a row")
    return int(np.searchsorted(table.epochs, t, side="left"))


def _detect(args: argparse.Namespace, out: TextIO) -> None:
    from ajan.analysis.detector import detect

    table, baseline = _load(args)
    result = detect(table.values, baseline)
    writer = csv.writer(out, lineterminator="\n")
    keys: Sequence[str] = (
        table.timestamps if table.timestamps is not None else [str(i) for i in range(table.values.shape[0])]
    )
    writer.writerow(["timestamp" if table.timestamps is not None else "row", "score", "alert"])
    for key, score, alert in zip(keys, result.score, result.alert, strict=True):
        writer.writerow([key, f"{score:.6f}", int(alert)])


def _service_ranking(
    path: str, symptom: str, names: tuple[str, ...], scores: np.ndarray, top: int | None
) -> list[dict[str, object]]:
    """Services by the call-graph traversal from ``symptom`` (``traverse_call_graph``)."""
    from ajan.analysis.rootcause import traverse_call_graph
    from ajan.models.callgraph import read_call_graph

    try:
        graph = read_call_graph(path, names)
    except ValueError as exc:
        raise InputError(f"--depends-on {exc}") from None
    if symptom not in graph:
        raise InputError(f"--symptom {symptom!r} is not a service of {path}")
    column = {name: i for i, name in enumerate(names)}
    own = {
        name: max((float(scores[column[m]]) for m in node.metrics), default=0.0)
        for name, node in graph.items()
    }
    ranked = traverse_call_graph(own, {name: node.depends_on for name, node in graph.items()}, symptom)
    order = sorted(ranked, key=lambda n: -ranked[n])  # stable: ties keep the file's order
    services = [
        {
            "service": name,
            "score": round(own[name], 6),
            "reachable": ranked[name] >= 0.0,
            "startsHere": ranked[name] >= 1.0,
        }
        for name in order
    ]
    return services[:top] if top is not None else services


def _rank(args: argparse.Namespace, out: TextIO) -> None:
    from ajan.analysis.detector import min_rows, rank_metrics

    # A short export still ranks: rank_metrics then judges the interval against the rows before it.
    if bool(args.depends_on) != bool(args.symptom):
        raise InputError("--depends-on and --symptom go together: the graph and where the symptom showed")
    table, baseline = _load(args, need_detector_rows=False)
    start = _row_index(table, args.start, "--start")
    end = _row_index(table, args.end, "--end")
    if start >= end:
        raise InputError(f"--start ({args.start}) must come before --end ({args.end})")
    if args.top is not None and args.top < 1:
        raise InputError(f"--top must be at least 1, got {args.top}")
    try:
        scores = rank_metrics(table.values, start, end, baseline, contiguous=not args.reference)
    except ValueError as exc:  # too short to judge: say what is missing, in the command's terms
        raise InputError(
            f"{exc}; with fewer than {min_rows()} rows (with --train), or with --reference, the ranking "
            "needs a row before --start and two samples per metric before it or in the baseline"
        ) from None
    order = sorted(range(len(table.names)), key=lambda i: (-scores[i], i))
    if args.top is not None:
        order = order[: args.top]
    ranking = [{"metric": table.names[i], "score": round(float(scores[i]), 6)} for i in order]
    doc: dict[str, object] = {"ranking": ranking}
    if args.depends_on:
        doc["services"] = _service_ranking(args.depends_on, args.symptom, table.names, scores, args.top)
    json.dump(doc, out)
    out.write("\n")


_RELATIVE_TIME = re.compile(r"^-\d[0-9a-z]*$")


def _attach_relative_times(argv: Sequence[str]) -> list[str]:
    """``--from -2h`` as ``--from=-2h``: argparse would take ``-2h`` for an option and refuse it."""
    out: list[str] = []
    for token in argv:
        if out and out[-1] in ("--from", "--to") and _RELATIVE_TIME.match(token):
            out[-1] = f"{out[-1]}={token}"
        else:
            out.append(token)
    return out


def _backtest(args: argparse.Namespace, out: TextIO) -> None:
    from ajan.backtest import render_json, render_table, run

    result = run(
        args.policy,
        args.prometheus,
        args.start,
        args.end,
        timeout_s=args.timeout,
        history_path=args.history,
        workers=args.workers,
    )
    out.write(render_json(result) if args.format == "json" else render_table(result))


def _report(args: argparse.Namespace, out: TextIO) -> None:
    from ajan.report import run

    out.write(run(args.plan, args.namespace, kubeconfig=args.kubeconfig, prometheus=args.prometheus))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ajan`` console script; returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    args = _build_parser().parse_args(_attach_relative_times(argv))
    if args.command == "run":  # a long-running process that logs as it goes: nothing to buffer
        return run_operator(args)
    if args.command == "report":  # PLAN.html by default, '-' for stdout
        from ajan.report import output_path

        args.output = output_path(args.plan, args.output)
    command = {"detect": _detect, "rank": _rank, "backtest": _backtest, "report": _report}[args.command]
    from ajan.analysis.detector import InsufficientDataError

    try:
        # Into memory first: a failed run must not truncate an existing --output file.
        buffer = io.StringIO()
        command(args, buffer)
        if getattr(args, "output", None):
            with open(args.output, "w", newline="", encoding="utf-8") as out:
                out.write(buffer.getvalue())
            if args.command == "report":  # the page went to a file the user did not name: say where
                print(f"wrote {os.path.abspath(args.output)}", file=sys.stderr)
        else:
            sys.stdout.write(buffer.getvalue())
            sys.stdout.flush()
    except BrokenPipeError:
        # `ajan detect x.csv | head`: the reader left; that is not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (InputError, InsufficientDataError) as exc:
        print(f"ajan {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:
        print(f"ajan {args.command}: error: {exc.filename or ''}: {exc.strerror}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as exc:  # the contract is one line, never a traceback
        if os.environ.get("AJAN_DEBUG"):
            raise
        print(f"ajan {args.command}: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
