"""Tests of the NAB scoring port in :mod:`ajan.evaluation.nab`.

The synthetic tests pin each scoring rule of numenta/NAB's ``nab/sweeper.py`` on tiny files;
one compares the vectorised sweep with a literal, row-by-row transcription of
``Sweeper.calcSweepScore``/``calcScoreByThreshold``. The real-data tests reproduce the
published windowedGaussian scoreboard (``results/final_results.json``) and per-file score
files from ../shared/data/nab.
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ajan.evaluation import nab

NAB_ROOT = nab.DEFAULT_DATA
T0 = np.datetime64("2020-01-01T00:00:00", "us")
STEP = np.timedelta64(5, "m")
UNIT = nab.CostMatrix(tp=1.0, fp=0.11, fn=1.0)


def stamps(n: int) -> np.ndarray:
    return T0 + STEP * np.arange(n)


def synthetic(
    n: int,
    windows: Sequence[tuple[int, int]],
    path: str = "cat/file.csv",
    probation_percent: float = 0.0,
    ts: np.ndarray | None = None,
) -> nab.NabFile:
    """A file of n rows with windows given as inclusive row ranges."""
    t = stamps(n) if ts is None else ts
    return nab.make_file(path, t, np.zeros(n), [(t[a], t[b]) for a, b in windows], probation_percent)


def detections(n: int, rows: Iterable[int]) -> np.ndarray:
    s = np.zeros(n)
    s[list(rows)] = 1.0
    return s


def score_at_1(f: nab.NabFile, rows: Sequence[int], cost: nab.CostMatrix = UNIT) -> float:
    return nab.score_file(f, detections(f.n_rows, rows), cost, 1.0).score


# --- the scoring rules -------------------------------------------------------------------


def test_scaled_sigmoid_reference_points() -> None:
    # The values in scaledSigmoid's docstring in nab/sweeper.py.
    got = nab.scaled_sigmoid([-1.0, -0.5, 0.0, 1.0, 3.0, 3.0001, 50.0])
    want = [0.98661, 0.84828, 0.0, -0.98661, 2 / (1 + math.exp(15)) - 1, -1.0, -1.0]
    np.testing.assert_allclose(got, want, atol=5e-6)


def test_probation_period_rule() -> None:
    # min(floor(0.15 n), 0.15 * 5000): 15 %, capped at 750 rows.
    assert nab.probation_rows(100) == 15
    assert nab.probation_rows(4032) == 604
    assert nab.probation_rows(5000) == 750
    assert nab.probation_rows(22695) == 750
    assert nab.probation_rows(10, probation_percent=0.0) == 0


def test_detection_at_first_row_of_window_earns_exactly_tp_weight() -> None:
    f = synthetic(100, [(40, 49)])
    # Sweeper divides by maxTP = scaledSigmoid(-1) = 0.98661, so the earliest detection is
    # worth tpWeight itself, whatever the weight.
    assert score_at_1(f, [40]) == pytest.approx(1.0, abs=1e-12)
    assert score_at_1(f, [40], nab.CostMatrix(tp=2.5, fp=0.11, fn=1.0)) == pytest.approx(2.5)
    # Not detecting it costs fnWeight.
    assert score_at_1(f, []) == pytest.approx(-1.0)


def test_later_detection_in_window_earns_the_sigmoid_of_its_position() -> None:
    f = synthetic(100, [(40, 49)])  # width 10, right index 49
    for row in (41, 45, 49):
        position = -(49 - row + 1) / 10
        want = float(nab.scaled_sigmoid(position)) / nab.MAX_TP
        assert score_at_1(f, [row]) == pytest.approx(want, abs=1e-12)
    assert score_at_1(f, [40]) > score_at_1(f, [45]) > score_at_1(f, [49]) > 0


def test_only_the_first_detection_in_a_window_counts() -> None:
    f = synthetic(100, [(40, 49)])
    assert score_at_1(f, [42, 45, 48, 49]) == pytest.approx(score_at_1(f, [42]), abs=1e-12)
    # ... and the row counts still see every detected row, as NAB's TP column does.
    res = nab.score_file(f, detections(100, [42, 45, 48, 49]), UNIT, 1.0)
    assert (res.tp, res.windows_detected) == (4, 1)


def test_detection_after_a_window_is_a_false_positive_weighted_by_distance() -> None:
    f = synthetic(100, [(10, 19)])  # width 10: distances are in units of (width - 1)
    missed = -UNIT.fn
    for row in (20, 24, 40):
        want = missed + UNIT.fp * float(nab.scaled_sigmoid((row - 19) / 9))
        assert score_at_1(f, [row]) == pytest.approx(want, abs=1e-12)
    # Right after this narrow window a false alarm costs a quarter of fpWeight; 3 widths on, all.
    assert -0.3 * UNIT.fp < score_at_1(f, [20]) - missed < -0.2 * UNIT.fp
    assert score_at_1(f, [19 + 28]) == pytest.approx(missed - UNIT.fp)
    # Every false positive counts, unlike detections inside a window.
    assert score_at_1(f, [60, 70, 80]) == pytest.approx(missed - 3 * UNIT.fp)


def test_false_positive_before_any_window_costs_full_weight() -> None:
    f = synthetic(100, [(50, 59)])
    assert score_at_1(f, [5]) == pytest.approx(-UNIT.fn - UNIT.fp)


def test_probation_rows_are_ignored() -> None:
    f = synthetic(100, [(60, 69)], probation_percent=nab.PROBATION_PERCENT)
    assert f.probation == 15
    assert score_at_1(f, [0, 7, 14]) == pytest.approx(-1.0)  # only the missed window
    assert score_at_1(f, [15]) == pytest.approx(-1.0 - UNIT.fp)
    # A window wholly in probation is neither a hit nor a miss (_prepareScoreByThresholdParts).
    g = synthetic(100, [(2, 8), (60, 69)], probation_percent=nab.PROBATION_PERCENT)
    assert g.scored_windows().tolist() == [1]
    assert score_at_1(g, [2]) == pytest.approx(-1.0)


def test_windows_are_matched_by_timestamp_strings() -> None:
    t = stamps(50)
    # The label file writes microseconds, the data files whole seconds.
    labels = [[str(t[20]).replace("T", " "), str(t[29]).replace("T", " ")]]
    data_ts = [str(x).replace("T", " ")[:19] for x in t]
    f = nab.make_file("c/x.csv", data_ts, np.zeros(50), labels, 0)
    assert np.flatnonzero(f.window_mask).tolist() == list(range(20, 30))
    with pytest.raises(ValueError, match="not a timestamp"):
        nab.make_file("c/x.csv", t, np.zeros(50), [(t[20], t[29] + np.timedelta64(1, "s"))])


def small_corpus() -> list[nab.NabFile]:
    return [
        synthetic(200, [(60, 79), (150, 169)], "a/one.csv", nab.PROBATION_PERCENT),
        synthetic(120, [(90, 99)], "a/two.csv", nab.PROBATION_PERCENT),
        synthetic(80, [], "b/three.csv", nab.PROBATION_PERCENT),
    ]


def test_null_detector_normalises_to_0_and_perfect_to_100() -> None:
    files = small_corpus()
    null = {f.path: np.full(f.n_rows, 0.5) for f in files}  # NAB's null detector
    perfect = {f.path: detections(f.n_rows, f.first_rows()) for f in files}
    for profile in nab.PROFILES:
        assert nab.score_corpus(files, null, profile).normalised == pytest.approx(0.0, abs=1e-9)
        res = nab.score_corpus(files, perfect, profile)
        assert res.normalised == pytest.approx(100.0, abs=1e-9)
        assert (res.threshold, res.windows_detected, res.fp) == (1.0, 3, 0)
    assert nab.null_score(files, "reward_low_FN_rate") == -6.0
    assert nab.perfect_score(files, "standard") == 3.0


def test_optimiser_keeps_the_highest_threshold_among_equal_scores() -> None:
    f = synthetic(100, [(40, 49)])
    s = np.zeros(100)
    s[40], s[45] = 0.9, 0.6  # 0.6 only adds a second hit in a detected window: same score
    threshold, score = nab.optimise_threshold([f], {f.path: s}, "standard")
    assert (threshold, score) == (0.9, pytest.approx(1.0))


# --- the vectorised sweep against a literal transcription of nab/sweeper.py --------------


def literal_sweep_curve(
    files: Sequence[tuple[list[Any], list[float], list[tuple[Any, Any]]]],
    cost: nab.CostMatrix,
) -> list[tuple[float, float, int, int, int, int]]:
    """Sweeper.calcSweepScore on every file, then calcScoreByThreshold on the pooled list."""

    def sig(x: float) -> float:
        return -1.0 if x > 3.0 else 2 * (1 / (1 + math.exp(-(-5 * x)))) - 1.0

    max_tp = sig(-1.0)
    points = []
    for k, (timestamps, scores, limits) in enumerate(files):
        limits = list(limits)
        prob = min(math.floor(0.15 * len(timestamps)), 0.15 * 5000)
        # Untyped on purpose: NAB's None-initialised loop state, transcribed as is.
        cur: Any = None
        name: Any = None
        width: Any = None
        right: Any = None
        prev_w: Any = None
        prev_r: Any = None
        for i, (t, a) in enumerate(zip(timestamps, scores, strict=True)):
            if limits and t == limits[0][0]:
                cur = limits.pop(0)
                name = f"{k}|{cur[0]}"
                right = timestamps.index(cur[1])
                width = float(right - timestamps.index(cur[0]) + 1)
            if cur is not None:
                w = sig(-(right - i + 1) / width) * cost.tp / max_tp
            else:
                u = -1.0 if prev_r is None else sig(abs(prev_r - i) / float(prev_w - 1))
                w = u * cost.fp
            points.append((a, w, name if i >= prob else "probationary"))
            if cur is not None and t == cur[1]:
                prev_r, prev_w = i, width
                cur = name = width = right = None
    scorable = sorted([p for p in points if p[2] != "probationary"], key=lambda p: -p[0])
    parts: dict[str | None, float] = {"fp": 0.0}
    for p in scorable:
        if p[2] is not None:
            parts[p[2]] = -cost.fn
    tn = sum(p[2] is None for p in scorable)
    fn = len(scorable) - tn
    tp = fp = 0
    cur_t = 1.1
    out = []
    for a, w, wname in scorable:
        if a != cur_t:
            out.append((cur_t, sum(parts.values()), tp, tn, fp, fn))
            cur_t = a
        if wname is not None:
            tp, fn = tp + 1, fn - 1
            parts[wname] = max(parts[wname], w)
        else:
            fp, tn = fp + 1, tn - 1
            parts["fp"] += w
    out.append((cur_t, sum(parts.values()), tp, tn, fp, fn))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_threshold_curve_matches_literal_port(seed: int) -> None:
    rng = np.random.default_rng(seed)
    literal: list[tuple[list[Any], list[float], list[tuple[Any, Any]]]] = []
    files: list[nab.NabFile] = []
    scores: dict[str, np.ndarray] = {}
    for k in range(4):
        n = int(rng.integers(60, 400))
        ts = stamps(n)
        if seed % 2:
            # NAB's files repeat some timestamps; the Sweeper's list.index semantics apply.
            dup = int(rng.integers(1, n - 1))
            ts[dup] = ts[dup - 1]
        n_win = int(rng.integers(0, 4))
        cuts = np.sort(rng.choice(np.arange(1, n - 1), size=2 * n_win, replace=False))
        rows = [(int(cuts[2 * j]), int(cuts[2 * j + 1])) for j in range(n_win)]
        limits = [(ts[a], ts[b]) for a, b in rows]
        s = np.round(rng.random(n) ** 3, 2)  # coarse scores: many ties, like real detectors
        path = f"c{k % 2}/f{k}.csv"
        files.append(nab.make_file(path, ts, np.zeros(n), limits))
        scores[path] = s
        literal.append((list(ts), s.tolist(), limits))
    for cost in nab.PROFILES.values():
        want = np.array(literal_sweep_curve(literal, cost), dtype=np.float64)
        got = nab.threshold_curve(files, scores, cost)
        np.testing.assert_array_equal(got.thresholds, want[:, 0])
        np.testing.assert_allclose(got.scores, want[:, 1], rtol=0, atol=1e-9)
        counts = np.stack([got.tp, got.tn, got.fp, got.fn], axis=1)
        np.testing.assert_array_equal(counts, want[:, 2:].astype(int))
        # Scoring at any threshold of the curve gives that entry back, file by file.
        for k in rng.choice(len(want), size=3):
            res = nab.score_corpus(files, scores, cost, float(want[k, 0]))
            assert res.raw == pytest.approx(want[k, 1], abs=1e-9)


# --- runner and command line -------------------------------------------------------------


def half_squash(values: np.ndarray) -> np.ndarray:
    """A picklable stand-in detector."""
    return 0.5 * (1.0 + np.tanh(values))


def bad_shape(values: np.ndarray) -> np.ndarray:
    return values[:-1]


def test_run_detector_in_two_processes() -> None:
    files = small_corpus()
    out = nab.run_detector(files, half_squash, processes=2)
    assert list(out) == [f.path for f in files]
    for f in files:
        np.testing.assert_array_equal(out[f.path], half_squash(f.values))
    with pytest.raises(ValueError, match="shape"):
        nab.run_detector(files, bad_shape, processes=1)


def test_cli_scores_a_results_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = synthetic(100, [(40, 49)], "cat/x.csv", nab.PROBATION_PERCENT)
    (tmp_path / "data/cat").mkdir(parents=True)
    (tmp_path / "labels").mkdir()
    (tmp_path / "results/det/cat").mkdir(parents=True)
    fmt = [str(t).replace("T", " ")[:19] for t in f.timestamps]
    with (tmp_path / "data/cat/x.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows([["timestamp", "value"], *[[t, 1.0] for t in fmt]])
    with (tmp_path / "results/det/cat/det_x.csv").open("w", newline="") as fh:
        rows = [[t, 1.0, float(i == 40), 0] for i, t in enumerate(fmt)]
        csv.writer(fh).writerows([["timestamp", "value", "anomaly_score", "label"], *rows])
    (tmp_path / "labels/combined_windows.json").write_text(json.dumps({"cat/x.csv": [[fmt[40], fmt[49]]]}))
    out_json = tmp_path / "out.json"
    argv = ["--data", str(tmp_path), "--results-dir", str(tmp_path / "results/det")]
    assert nab.main([*argv, "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    assert "| standard | 100.00 |" in text
    assert "| cat | 1 | 1 | 1 | 0 | 0 |" in text
    assert json.loads(out_json.read_text())["profiles"]["standard"]["normalised"] == 100.0


# --- real data: the published windowedGaussian scoreboard --------------------------------


@pytest.fixture(scope="module")
def corpus() -> list[nab.NabFile]:
    if not (NAB_ROOT / "labels/combined_windows.json").is_file():
        pytest.skip(f"NAB data absent: {NAB_ROOT} (expected next to the checkout)")
    return nab.load_corpus(NAB_ROOT)


def test_profiles_are_nabs(corpus: list[nab.NabFile]) -> None:
    assert nab.load_profiles(NAB_ROOT / "config/profiles.json") == nab.PROFILES


def test_reproduces_published_windowed_gaussian_scores(corpus: list[nab.NabFile]) -> None:
    started = time.perf_counter()
    results_dir = NAB_ROOT / "results/windowedGaussian"
    scores = nab.load_results_dir(results_dir, corpus)
    results = nab.score_profiles(corpus, scores)
    published = json.loads((NAB_ROOT / "results/final_results.json").read_text())
    assert len(corpus) == 58 and sum(len(f.windows) for f in corpus) == 116
    for profile, res in results.items():
        assert res.normalised == pytest.approx(published["windowedGaussian"][profile], abs=0.05)
        assert res.threshold == 1.0  # config/thresholds.json
        # Per-file raw scores and NAB's row counts, from <detector>_<profile>_scores.csv.
        with (results_dir / f"windowedGaussian_{profile}_scores.csv").open() as fh:
            rows = {r["File"] or r["Detector"]: r for r in csv.DictReader(fh)}
        for fs in res.files:
            row = rows[fs.path]
            assert fs.score == pytest.approx(float(row["Score"]), abs=1e-6), fs.path
            assert [fs.tp, fs.tn, fs.fp, fs.fn] == [int(row[k]) for k in ("TP", "TN", "FP", "FN")]
        assert res.raw == pytest.approx(float(rows["Totals"]["Score"]), abs=1e-6)
    # Loading the corpus is the fixture's; this part should stay around a second.
    assert time.perf_counter() - started < 20


def test_null_and_perfect_on_the_real_corpus(corpus: list[nab.NabFile]) -> None:
    perfect = {f.path: detections(f.n_rows, f.first_rows()) for f in corpus}
    null = {f.path: np.zeros(f.n_rows) for f in corpus}
    for profile in nab.PROFILES:
        assert nab.score_corpus(corpus, perfect, profile).normalised == pytest.approx(100.0)
        assert nab.score_corpus(corpus, null, profile).normalised == pytest.approx(0.0)
