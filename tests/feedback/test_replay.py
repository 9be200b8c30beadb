"""The feedback effect, measured by replay: a rejected benign pattern stops producing actions, while
every real incident still does (docs/feedback.md has the figures over more seeds)."""

from __future__ import annotations

import pytest

from ajan.evaluation.feedback_replay import run


@pytest.mark.parametrize("seed", [0, 1])
def test_rejecting_a_benign_pattern_cuts_its_actions_and_misses_no_incident(seed: int) -> None:
    without = run(seed, with_feedback=False)
    with_feedback = run(seed, with_feedback=True)
    # The scenario is only a test of feedback if the pattern does trip the guard without it.
    assert without.benign_acted >= 2
    assert with_feedback.benign_acted < without.benign_acted
    # The first run must be acted on and rejected before ajan can learn it; after that, at most one.
    assert with_feedback.benign_acted <= 1
    assert with_feedback.incidents_acted == with_feedback.incidents == without.incidents_acted
