"""Accuracy regression: the published figures of docs/accuracy.md must not drop.

Each floor is the figure the current detector reached, rounded down to the
published precision; the detector is deterministic, so a drop below a floor is
a real loss of accuracy, not noise. Raise a floor when the detector improves
(and update docs/accuracy.md with it). These run on the full public datasets in
../shared/data, which CI has; they are skipped, saying why, only where the data
is absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ajan.evaluation import SHARED_DATA, nab, petshop, pool_map, replay, smd

pytestmark = pytest.mark.accuracy

DATA = SHARED_DATA

#: The operator-level replay's machines, and its floors (docs/accuracy.md, "What the operator would do"):
#: measured 0.47 F1, 0.38 precision, 0.76 false actions a day, 4.1 % of normal time in an incident,
#: with every column two-sided (the replay's mapping).
OPERATOR_MACHINES = ("machine-1-2", "machine-1-4")
FLOOR_F1 = 0.47
FLOOR_PRECISION = 0.37
CEILING_FALSE_PER_DAY = 0.77
CEILING_NORMAL_IN_INCIDENT = 0.042
#: The plans' probabilityReal at the openings there: ECE 0.130, against 0.541 for the confidence
#: (the map was fitted on all seven SMD machines, these two among them; NAB is its held-out check).
#: It was 0.116 before the scale floor fell to 0.1 % of the level (a few more annotate-only
#: openings on these two machines; over all seven 0.074 -> 0.088, and NAB's held out 0.085 -> 0.081).
CEILING_PROBABILITY_ECE = 0.13
#: The same replay with a person judging each incident by the labels once it resolved (verdicts live
#: seven days): measured 0.52 F1, 0.50 precision, 0.39 false actions a day (over all seven machines
#: 0.55 / 0.65 / 0.28, against the floor's 0.53 / 0.45 / 0.92).
FLOOR_VERDICTS_F1 = 0.52
FLOOR_VERDICTS_PRECISION = 0.50
CEILING_VERDICTS_FALSE_PER_DAY = 0.40
#: The same replay of PetShop's 26 issues: ajan's operator acts on each (the floor 0.77, PCA 0.85).
FLOOR_PETSHOP_RECALL = 1.0


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"labelled dataset not found at {path}")
    return path


@pytest.fixture(scope="module")
def nab_corpus() -> list[nab.NabFile]:
    return nab.load_corpus(_need(DATA / "nab"))


@pytest.mark.parametrize(
    ("detector", "profile", "floor"),
    [
        (nab.ajan_scores, "standard", 42.6),
        (nab.ajan_scores, "reward_low_FP_rate", 28.4),
        (nab.ajan_scores, "reward_low_FN_rate", 50.9),
        (nab.ajan_onset_scores, "standard", 49.5),
    ],
    ids=["score-standard", "score-low-fp", "score-low-fn", "onset-standard"],
)
def test_nab_corpus_score(
    nab_corpus: list[nab.NabFile], detector: nab.Detector, profile: str, floor: float
) -> None:
    scores = nab.run_detector(nab_corpus, detector, processes=2)
    result = nab.score_corpus(nab_corpus, scores, profile)
    assert result.normalised >= floor, f"NAB {profile}: {result.normalised:.2f} < {floor}"


@pytest.fixture(scope="module")
def smd_results() -> list[smd.MachineResult]:
    root = _need(DATA / "smd")
    return smd.run(root, smd.available_machines(root), processes=2)


def test_smd_event_detection_pooled(smd_results: list[smd.MachineResult]) -> None:
    pooled = smd.pool(smd_results)
    assert pooled.segments == 104  # all seven machines were evaluated
    assert pooled.f1 >= 0.46, pooled
    assert pooled.recall >= 0.67, pooled
    assert pooled.precision >= 0.35, pooled
    assert pooled.normal_flagged <= 0.0035, pooled


def test_smd_root_cause_hit_rate(smd_results: list[smd.MachineResult]) -> None:
    segments = sum(r.interpreted_segments for r in smd_results)
    hit100 = sum(r.hit_sum_100 for r in smd_results) / segments
    hit150 = sum(r.hit_sum_150 for r in smd_results) / segments
    assert hit100 >= 0.679, hit100
    assert hit150 >= 0.84, hit150


def test_petshop_root_cause_top3() -> None:
    root = _need(DATA / "petshop" / "low_traffic")
    graph = petshop.read_graph(root / "graph.csv")
    baseline = petshop.read_metrics(root / "noissue" / "metrics.csv")
    results = [
        petshop.rank_issue(issue, baseline, graph) for issue in petshop.load_issues(root, ("train", "test"))
    ]
    assert len(results) == 26
    figures = petshop.figures(results)
    # 0.885 plain and 0.923 with the call graph (docs/accuracy.md); 0.744 before the incident was
    # judged against the level just before it instead of the reference's.
    assert figures["ajan"]["plain_all_any_top3"] >= 0.88, figures["ajan"]
    assert figures["ajan"]["graph_all_any_top3"] >= 0.92, figures["ajan"]
    assert figures["ajan"]["graph_all_any_top1"] >= 0.73, figures["ajan"]
    # At least as good as both named references on every split and symptom, plain and with the graph.
    for key, value in figures["ajan"].items():
        if key.endswith("_top3"):
            for name in ("floor", "pca"):
                assert value >= figures[name][key], (key, value, name, figures[name][key])


@pytest.fixture(scope="module")
def operator_replay() -> dict[str, replay.Match]:
    """ajan's operator (without and with verdicts) and the floor, replayed over two SMD machines
    (22 segments, about 3 minutes on 2 cores): the whole dataset takes too long for every CI run;
    docs/accuracy.md has it."""
    _need(DATA / "smd")
    return _replayed(replay.smd_series(machines=OPERATOR_MACHINES), ("ajan", "ajan+verdicts", "floor"))


def _replayed(series: list[replay.Series], detectors: tuple[str, ...]) -> dict[str, replay.Match]:
    """Each detector's replay of ``series`` as an operator, pooled (two worker processes)."""
    return {
        detector: replay.pooled(
            pool_map(replay._replay_one, [(s, detector, replay.OBJECTIVE) for s in series], 2)
        )
        for detector in detectors
    }


def test_operator_level_replay(operator_replay: dict[str, replay.Match]) -> None:
    ajan, floor = operator_replay["ajan"], operator_replay["floor"]
    assert ajan.segments == floor.segments == 22
    assert ajan.action_f1 >= FLOOR_F1, ajan
    assert ajan.action_precision >= FLOOR_PRECISION, ajan
    assert ajan.false_actions_per_day <= CEILING_FALSE_PER_DAY, ajan
    assert ajan.normal_in_incident <= CEILING_NORMAL_IN_INCIDENT, ajan
    assert ajan.probability_ece <= CEILING_PROBABILITY_ECE < ajan.confidence_ece, ajan
    # The afternoon's baseline beside it, computed in the same run: ajan must stay ahead of it.
    assert ajan.action_f1 >= floor.action_f1, (ajan, floor)
    assert ajan.false_actions_per_day <= floor.false_actions_per_day, (ajan, floor)


def test_operator_level_replay_with_verdicts(operator_replay: dict[str, replay.Match]) -> None:
    """The feedback loop on real data: verdicts on the incidents that were false alarms make the
    operator more precise without losing more than they gain, and ahead of the floor in F1."""
    ajan, judged, floor = (operator_replay[k] for k in ("ajan", "ajan+verdicts", "floor"))
    assert judged.action_f1 >= FLOOR_VERDICTS_F1, judged
    assert judged.action_precision >= FLOOR_VERDICTS_PRECISION, judged
    assert judged.false_actions_per_day <= CEILING_VERDICTS_FALSE_PER_DAY, judged
    assert judged.action_f1 > max(ajan.action_f1, floor.action_f1), (judged, ajan, floor)
    assert judged.false_actions_per_day < ajan.false_actions_per_day, (judged, ajan)


def test_operator_level_replay_petshop() -> None:
    """Every PetShop issue (26, about 10 s) acted on by ajan's operator, as many as either reference:
    the availability issues, a success ratio leaving a constant 100 by 1.5 to 8 points, were missed
    (recall 0.73) while the scale floor was 1 % of the level."""
    _need(DATA / "petshop")
    found = _replayed(replay.petshop_series(), ("ajan", "floor", "pca"))
    ajan = found["ajan"]
    assert ajan.segments == 26 and ajan.action_recall >= FLOOR_PETSHOP_RECALL, ajan
    for name in ("floor", "pca"):
        assert ajan.action_recall >= found[name].action_recall, (name, found[name])
