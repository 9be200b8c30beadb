"""The rule fallback on clear cases, and the labels and split of the training data."""

from __future__ import annotations

import numpy as np
import pytest

from ajan.evaluation.severity_data import CRITICAL, INFO, WARNING, assign_splits, window_label
from ajan.models import Severity
from ajan.services.features import FEATURE_NAMES
from ajan.services.severity import RuleSeverityClassifier


def row(**values: float) -> np.ndarray:
    x = np.zeros(len(FEATURE_NAMES), dtype=np.float32)
    x[FEATURE_NAMES.index("coverage")] = 1.0
    for name, value in values.items():
        x[FEATURE_NAMES.index(name)] = value
    return x


def test_rules_on_clear_cases() -> None:
    rules = RuleSeverityClassifier()
    healthy = row(confidence=0.02, slo_score=0.02, signal_score=0.05, score=0.03)
    breached = row(confidence=0.97, slo_score=0.97, score=0.97, max_bad_z=3.0, anomalous_share=0.5)
    leading = row(confidence=0.72, slo_score=0.1, signal_score=0.9, breach_probability=0.8)
    unlinked = row(confidence=0.0, slo_score=0.0, signal_score=0.95, breach_probability=0.0)
    verdicts = rules.classify(np.stack([healthy, breached, leading, unlinked]))
    assert [v.severity for v in verdicts] == [
        Severity.INFO,
        Severity.CRITICAL,
        Severity.WARNING,
        Severity.INFO,
    ]
    assert all(v.source == "rules" for v in verdicts)
    for v in verdicts:
        assert sum(v.probabilities) == pytest.approx(1.0) and min(v.probabilities) >= 0.0
    # The incident probability is the heuristic confidence: c (1 - (1 - s)(1 - g b)).
    assert verdicts[2].incident_probability == pytest.approx(1 - 0.9 * (1 - 0.9 * 0.8))


def test_rules_discount_missing_data() -> None:
    verdict = RuleSeverityClassifier().classify(row(slo_score=0.9, coverage=0.4))[0]
    assert verdict.severity is Severity.INFO and verdict.incident_probability == pytest.approx(0.36)


def test_window_labels_are_time_to_incident() -> None:
    incident = np.zeros(1000, dtype=bool)
    incident[500:520] = True
    rows = 120  # scored rows: the newest 30
    assert window_label(incident, 300, rows) == INFO  # the incident starts 200 rows later
    assert window_label(incident, 381, rows) == WARNING  # starts at the 120th row after the end
    assert window_label(incident, 380, rows) == INFO
    assert window_label(incident, 500, rows) == WARNING  # starts at the next row
    assert window_label(incident, 501, rows) == CRITICAL
    assert window_label(incident, 549, rows) == CRITICAL  # row 519 is the oldest scored row
    assert window_label(incident, 550, rows) == INFO  # only in the baseline: over


def test_split_is_by_group_deterministic_and_70_15_15() -> None:
    groups = [f"g{i:02d}" for i in range(40)]
    first = assign_splits(groups, "nab")
    assert first == assign_splits(list(reversed(groups)), "nab")
    counts = {s: sum(1 for v in first.values() if v == s) for s in ("train", "calibration", "test")}
    assert counts == {"train": 28, "calibration": 6, "test": 6}
    assert assign_splits(groups, "smd") != first  # each dataset has its own shuffle
    seven = assign_splits([f"m{i}" for i in range(7)], "smd")
    assert sorted(seven.values()).count("test") == 1 and sorted(seven.values()).count("calibration") == 1
