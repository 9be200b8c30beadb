"""Tests of the ``ajan`` command line: what it prints, writes and exits with.

The successful runs, and a few bad-input ones (`AS_PROCESS`), run as a real subprocess
(``python -m ajan``), which costs a Python start-up with numpy and scipy (about a second each):
they are started together, a few at a time, by the module fixture ``runs``. The other bad-input
cases call ``cli.main`` in-process. The tests then check one result each.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from ajan import cli
from ajan.analysis.detector import min_rows

T0 = datetime(2024, 1, 1, tzinfo=UTC)
ROWS = 200
SPIKE = 150  # row of the planted incident, in metric "b" (see _main_data)


def _iso(i: int) -> str:
    return (T0 + timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _write(
    path: Path, header: Sequence[str], rows: Sequence[Sequence[object]], encoding: str = "utf-8"
) -> Path:
    with path.open("w", newline="", encoding=encoding) as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def _data(seed: int, rows: int, spike: int | None = None) -> np.ndarray:
    x = np.random.default_rng(seed).normal(10.0, 1.0, (rows, 3))
    if spike is not None:
        x[spike, 1] += 40.0
    return x


def _main_data() -> np.ndarray:
    """Three metrics; "b" spikes at row SPIKE and then stays 8 sigma up for 20 rows."""
    x = _data(0, ROWS, SPIKE)
    x[SPIKE + 1 : SPIKE + 20, 1] += 8.0
    return x


def _files(d: Path) -> dict[str, Path]:
    x = _main_data()
    f: dict[str, Path] = {}
    f["ts"] = _write(d / "ts.csv", ["timestamp", "a", "b", "c"], [[_iso(i), *row] for i, row in enumerate(x)])
    f["rows"] = _write(d / "rows.csv", ["a", "b", "c"], x.tolist())
    f["bom"] = _write(
        d / "bom.csv",
        ["timestamp", "a", "b", "c"],
        [[1_700_000_000 + 60 * i, *row] for i, row in enumerate(x)],
        encoding="utf-8-sig",
    )
    train = _data(1, 300)
    short = _data(2, 30, spike=5)  # an incident in row 5 of metric b ...
    short[10:, 2] += 8.0  # ... and metric c 8 sigma up from row 10 on
    f["train"] = _write(d / "train.csv", ["c", "a", "b"], train[:, [2, 0, 1]].tolist())  # other order
    f["short"] = _write(d / "short.csv", ["a", "b", "c"], short.tolist())
    f["train_extra"] = _write(
        d / "train_extra.csv", ["a", "b", "c", "d"], np.hstack([train, train[:, :1]]).tolist()
    )
    # An incident export: three rows before the incident, in which "a" drops 12 sigma, and a healthy
    # reference from another day at other levels (every metric +50), the same spread.
    export = _data(3, 8)
    export[3:, 0] -= 12.0
    f["export"] = _write(d / "export.csv", ["a", "b", "c"], export.tolist())
    f["elsewhere"] = _write(d / "elsewhere.csv", ["a", "b", "c"], (train + 50.0).tolist())
    # The export's services: "b" calls "a" (whose drop is the cause) and "c".
    f["graph"] = d / "graph.yaml"
    f["graph"].write_text(
        "b:\n  metrics: [b]\n  dependsOn: [a, c]\na:\n  metrics: [a]\nc:\n  metrics: [c]\n", encoding="utf-8"
    )
    f["graph_unknown_metric"] = d / "graph_unknown_metric.yaml"
    f["graph_unknown_metric"].write_text("b:\n  metrics: [latency]\n", encoding="utf-8")
    f["train_missing"] = _write(d / "train_missing.csv", ["a", "b"], train[:, :2].tolist())
    f["empty"] = d / "empty.csv"
    f["empty"].write_text("", encoding="utf-8")
    f["header_only"] = d / "header_only.csv"
    f["header_only"].write_text("timestamp,a,b\n", encoding="utf-8")
    bad = x.astype(object)
    bad[7, 2] = "fast"
    f["non_numeric"] = _write(d / "non_numeric.csv", ["a", "b", "c"], bad.tolist())
    nan_col = x.astype(object)
    nan_col[:, 1] = ""
    f["all_nan"] = _write(d / "all_nan.csv", ["a", "b", "c"], nan_col.tolist())
    f["few"] = _write(d / "few.csv", ["a", "b", "c"], x[: min_rows() - 1].tolist())
    bad_ts = [[_iso(i), *row] for i, row in enumerate(x)]
    bad_ts[3][0] = "yesterday"
    f["bad_ts"] = _write(d / "bad_ts.csv", ["timestamp", "a", "b", "c"], bad_ts)
    ragged = d / "ragged.csv"
    ragged.write_text("a,b\n1,2\n3\n", encoding="utf-8")
    f["ragged"] = ragged
    gappy = x.astype(object)
    gappy[::5, 0] = "NaN"
    gappy[::7, 2] = ""
    f["gappy"] = _write(d / "gappy.csv", ["a", "b", "c"], gappy.tolist())
    return f


def _cases(f: dict[str, Path], out: Path) -> dict[str, list[str]]:
    return {
        # success
        "detect_rows": ["detect", str(f["rows"])],
        "detect_gappy": ["detect", str(f["gappy"])],
        "detect_output": ["detect", str(f["ts"]), "--output", str(out)],
        "detect_train": ["detect", str(f["short"]), "--train", str(f["train"])],
        "rank_rows": ["rank", str(f["rows"]), "--start", str(SPIKE), "--end", str(SPIKE + 10)],
        # --start between two rows: "the first row at or after" the timestamp
        "rank_ts_top": [
            "rank",
            str(f["ts"]),
            "--start",
            _iso(SPIKE - 1).replace(":00Z", ":30Z"),
            "--end",
            _iso(SPIKE + 10),
            "--top",
            "2",
        ],
        "rank_train": ["rank", str(f["short"]), "--train", str(f["train"]), "--start", "10", "--end", "30"],
        "rank_export": ["rank", str(f["export"]), "--start", "3", "--end", "8"],
        "rank_reference": [
            "rank",
            str(f["export"]),
            "--reference",
            str(f["elsewhere"]),
            "--start",
            "3",
            "--end",
            "8",
        ],
        "rank_services": [
            *("rank", str(f["export"]), "--reference", str(f["elsewhere"]), "--start", "3", "--end", "8"),
            *("--depends-on", str(f["graph"]), "--symptom", "b"),
        ],
        "bom": ["detect", str(f["bom"])],
        # bad input
        "missing_file": ["detect", str(f["ts"].parent / "nope.csv")],
        "empty_file": ["detect", str(f["empty"])],
        "header_only": ["detect", str(f["header_only"])],
        "train_unknown_column": ["detect", str(f["rows"]), "--train", str(f["train_extra"])],
        "train_missing_column": ["detect", str(f["rows"]), "--train", str(f["train_missing"])],
        "non_numeric": ["detect", str(f["non_numeric"])],
        "all_nan_column": ["detect", str(f["all_nan"])],
        "too_few_rows": ["detect", str(f["few"])],
        "start_not_before_end": ["rank", str(f["rows"]), "--start", "20", "--end", "20"],
        "rank_graph_unknown_metric": [
            *("rank", str(f["export"]), "--start", "3", "--end", "8"),
            *("--depends-on", str(f["graph_unknown_metric"]), "--symptom", "b"),
        ],
        "rank_symptom_without_graph": [
            "rank",
            str(f["export"]),
            "--start",
            "3",
            "--end",
            "8",
            "--symptom",
            "b",
        ],
        "rank_export_no_row_before": ["rank", str(f["export"]), "--start", "0", "--end", "8"],
        "rank_train_and_reference": [
            "rank",
            str(f["rows"]),
            "--train",
            str(f["train"]),
            "--reference",
            str(f["train"]),
            "--start",
            "1",
            "--end",
            "2",
        ],
        "bad_timestamp_in_file": ["detect", str(f["bad_ts"])],
        "bad_timestamp_flag": ["rank", str(f["ts"]), "--start", "noon", "--end", "10"],
        "row_out_of_range": ["rank", str(f["rows"]), "--start", "0", "--end", str(ROWS + 1)],
        "no_command": [],
        "negative_top": ["rank", str(f["rows"]), "--start", "0", "--end", "10", "--top", "-1"],
        "run_zero_concurrency": ["run", "--concurrency", "0"],
        "run_bad_prometheus_url": ["run", "--prometheus-url", "prometheus:9090"],
        "run_bad_redis_url": ["run", "--redis-url", "localhost:6379"],
        "ragged_row": ["detect", str(f["ragged"])],
    }


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return _files(tmp_path_factory.mktemp("cli"))


#: Bad-input cases also run as the console script: that the one-line error and the exit status
#: survive a real process start (argparse's exit, a missing file, the ``run`` subcommand's flags).
#: Every other bad-input case calls ``cli.main`` in the test's own process.
AS_PROCESS = frozenset({"missing_file", "no_command", "run_zero_concurrency"})


def in_process(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``cli.main(args)`` here, with its exit status and what it wrote, as a subprocess would report it."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.chdir(cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code: int | str | None = cli.main(args)
        except SystemExit as exit_:  # argparse's errors
            code = exit_.code
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def runs(files: dict[str, Path]) -> dict[str, subprocess.CompletedProcess[str]]:
    out = files["ts"].parent / "out.csv"
    cases = _cases(files, out)
    cwd = files["ts"].parent

    def run(args: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ajan", *args],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=cwd,
            check=False,
        )

    processes = [c for c in cases if c not in BAD or c in AS_PROCESS]
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = dict(zip(processes, pool.map(run, [cases[c] for c in processes]), strict=True))
    results.update({c: in_process(cases[c], cwd) for c in cases if c not in results})
    return results


def _ok(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    return res.stdout


def _detect_rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def _check_detect_body(rows: list[list[str]], n: int) -> tuple[np.ndarray, np.ndarray]:
    assert len(rows) == n + 1
    score = np.array([float(r[1]) for r in rows[1:]])
    alert = np.array([int(r[2]) for r in rows[1:]])
    assert all(len(r) == 3 for r in rows)
    assert np.all((score >= 0) & (score <= 1))
    assert set(alert.tolist()) <= {0, 1}
    return score, alert


# --- detect ---------------------------------------------------------------------------------------


def _detect_ts(runs, files) -> str:
    """``detect ts.csv --output out.csv``: the output file, after checking that stdout was empty."""
    assert _ok(runs["detect_output"]) == ""
    return (files["ts"].parent / "out.csv").read_text(encoding="utf-8")


def test_detect_with_timestamp_column_to_output_file(runs, files) -> None:
    rows = _detect_rows(_detect_ts(runs, files))
    assert rows[0] == ["timestamp", "score", "alert"]
    score, alert = _check_detect_body(rows, ROWS)
    assert [r[0] for r in rows[1:]] == [_iso(i) for i in range(ROWS)]  # timestamps echoed as given
    assert alert[SPIKE] == 1 and not alert[:SPIKE].any()
    assert score[SPIKE] == score.max()


def test_detect_without_timestamp_column(runs, files) -> None:
    rows = _detect_rows(_ok(runs["detect_rows"]))
    assert rows[0] == ["row", "score", "alert"]
    _check_detect_body(rows, ROWS)
    assert [r[0] for r in rows[1:]] == [str(i) for i in range(ROWS)]
    # Same data as ts.csv: the timestamp column changes the key only.
    with_ts = _detect_rows(_detect_ts(runs, files))
    assert [r[1:] for r in rows[1:]] == [r[1:] for r in with_ts[1:]]


def test_detect_with_gaps(runs) -> None:
    rows = _detect_rows(_ok(runs["detect_gappy"]))
    _, alert = _check_detect_body(rows, ROWS)
    assert alert[SPIKE] == 1 and not alert[:SPIKE].any()


def test_detect_with_train(runs) -> None:
    rows = _detect_rows(_ok(runs["detect_train"]))
    score, alert = _check_detect_body(rows, 30)  # only the input's rows are printed
    # 30 rows alone are too few; with the baseline every row is scored, the first ones too.
    assert alert[5] == 1 and alert.sum() <= 3
    assert np.count_nonzero(score[:5]) >= 1
    assert score[5] == score.max()


def test_detect_file_with_byte_order_mark(runs) -> None:
    rows = _detect_rows(_ok(runs["bom"]))
    assert rows[0] == ["timestamp", "score", "alert"]


# --- rank -----------------------------------------------------------------------------------------


def _ranking(res: subprocess.CompletedProcess[str]) -> list[dict[str, object]]:
    doc = json.loads(_ok(res))
    assert list(doc) == ["ranking"]
    for entry in doc["ranking"]:
        assert set(entry) == {"metric", "score"}
        assert isinstance(entry["metric"], str) and 0.0 <= entry["score"] <= 1.0
    return doc["ranking"]


def test_rank_by_row_index(runs) -> None:
    ranking = _ranking(runs["rank_rows"])
    assert sorted(e["metric"] for e in ranking) == ["a", "b", "c"]
    assert ranking[0]["metric"] == "b"
    scores = [e["score"] for e in ranking]
    assert scores == sorted(scores, reverse=True)


def test_rank_by_timestamp_with_top(runs) -> None:
    # --start half a minute before row SPIKE resolves to it and --end is row SPIKE + 10 exactly, so
    # this is the interval of rank_rows; --top 2 keeps its first two entries.
    assert _ranking(runs["rank_ts_top"]) == _ranking(runs["rank_rows"])[:2]


def test_rank_with_train(runs) -> None:
    ranking = _ranking(runs["rank_train"])
    assert ranking[0]["metric"] == "c"  # the metric that stays up over rows 10-30


def test_rank_a_short_export_against_its_own_rows_before(runs) -> None:
    # 8 rows: far fewer than the detector needs; ranked against the 3 rows before --start instead.
    ranking = _ranking(runs["rank_export"])
    assert ranking[0]["metric"] == "a"


def test_rank_services_along_the_call_graph(runs) -> None:
    doc = json.loads(_ok(runs["rank_services"]))
    assert list(doc) == ["ranking", "services"]
    assert doc["ranking"] == _ranking(runs["rank_reference"])  # the graph adds, it changes no metric score
    services = doc["services"]
    assert services[0]["service"] == "a"
    assert services[0]["startsHere"] is True and all(s["reachable"] for s in services)
    assert sorted(s["service"] for s in services) == ["a", "b", "c"]


def test_rank_with_a_reference_from_another_level(runs) -> None:
    # The reference sits 50 above the export; only its spread is used, so "a" still leads and the
    # others, which did not move, are not made to look 50 sigma off.
    ranking = _ranking(runs["rank_reference"])
    assert ranking[0]["metric"] == "a"
    assert all(e["score"] < 0.5 for e in ranking[1:]), ranking


# --- bad input: exit 2, one line on stderr naming the problem, no traceback -----------------------


BAD = {
    "missing_file": ["nope.csv", "no such file"],
    "empty_file": ["empty.csv", "empty file"],
    "header_only": ["header_only.csv", "no data rows"],
    "train_unknown_column": ["train_extra.csv", "unknown column 'd'"],
    "train_missing_column": ["train_missing.csv", "missing column 'c'"],
    "non_numeric": ["non_numeric.csv:9", "'c'", "non-numeric", "'fast'"],
    "all_nan_column": ["all_nan.csv", "column 'b'", "no numeric value"],
    "too_few_rows": ["few.csv", f"{min_rows() - 1} rows", f"at least {min_rows()}"],
    "start_not_before_end": ["--start (20)", "--end (20)"],
    "rank_graph_unknown_metric": [
        "--depends-on",
        "graph_unknown_metric.yaml",
        "b:",
        "'latency'",
        "not a column",
    ],
    "rank_symptom_without_graph": ["--depends-on and --symptom go together"],
    "rank_export_no_row_before": ["a row before --start", "start=0"],
    "rank_train_and_reference": ["--reference", "not allowed with argument --train"],
    "bad_timestamp_in_file": ["bad_ts.csv", "'yesterday'", "ISO 8601"],
    "bad_timestamp_flag": ["--start", "'noon'"],
    "row_out_of_range": ["--end", f"'{ROWS + 1}'", "no timestamp column"],
    "no_command": ["required", "command"],
    "negative_top": ["--top", "at least 1", "-1"],
    "run_zero_concurrency": ["ajan run", "--concurrency", "at least 1"],
    "run_bad_prometheus_url": ["--prometheus-url", "not an http(s) URL", "'prometheus:9090'"],
    "run_bad_redis_url": ["--redis-url", "not a redis:// URL"],
    "ragged_row": ["ragged.csv:3", "1 fields", "header has 2"],
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input(runs, case: str) -> None:
    res = runs[case]
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert res.stdout == ""
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert "Traceback" not in res.stderr
    assert lines[0].startswith("ajan")
    assert "error:" in lines[0]
    for needle in BAD[case]:
        assert needle in lines[0], (needle, lines[0])
