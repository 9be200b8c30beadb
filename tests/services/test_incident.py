"""The incident state machine: one incident one plan, escalation only upwards, recovery with hysteresis."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ajan.models import Action, Incident, LadderStep, Severity
from ajan.models.common import DNS_SUBDOMAIN_PATTERN
from ajan.models.policy import DEFAULT_LADDER
from ajan.services.incident import (
    ACTION_RANK,
    RECOVERY_FRACTION,
    Outcome,
    decide,
    incident_id,
    plan_name,
    policy_label,
)

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
LADDER = list(DEFAULT_LADDER)  # abort >= 0.9, pause >= 0.75, annotate >= 0.5


def run(confidences: list[float], recovery: int = 3) -> list[tuple[Outcome, Incident | None]]:
    incident: Incident | None = None
    out = []
    for k, c in enumerate(confidences):
        decision = decide("checkout", incident, c, LADDER, recovery, T0 + timedelta(seconds=30 * k))
        incident = decision.incident
        out.append((decision.outcome, incident))
    return out


def test_quiet_below_the_ladder() -> None:
    assert [o for o, _ in run([0.0, 0.3, 0.49])] == [Outcome.QUIET] * 3


def test_open_then_update_keeps_one_plan() -> None:
    steps = run([0.6, 0.55, 0.7, 0.6])
    assert [o for o, _ in steps] == [Outcome.OPEN, Outcome.UPDATE, Outcome.UPDATE, Outcome.UPDATE]
    plans = {inc.plan for _, inc in steps if inc}
    assert len(plans) == 1
    assert plans.pop().endswith("-annotate")
    assert steps[-1][1] is not None and steps[-1][1].peak_confidence == 0.7


def test_escalation_makes_a_new_plan_and_names_the_old_one() -> None:
    incident = decide("checkout", None, 0.6, LADDER, 3, T0).incident
    assert incident is not None
    decision = decide("checkout", incident, 0.8, LADDER, 3, T0 + timedelta(minutes=1))
    assert decision.outcome is Outcome.ESCALATE
    assert decision.previous_plan == incident.plan
    assert decision.incident is not None
    assert decision.incident.id == incident.id
    assert decision.incident.action is Action.PAUSE
    assert decision.incident.plan.endswith("-pause")


def test_no_de_escalation_no_flapping() -> None:
    # pause, then a noisy confidence around the annotate/pause boundary: never a new plan.
    steps = run([0.8, 0.6, 0.78, 0.55, 0.76, 0.5])
    outcomes = [o for o, _ in steps]
    assert outcomes[0] is Outcome.OPEN
    assert set(outcomes[1:]) == {Outcome.UPDATE}
    assert {inc.plan for _, inc in steps if inc} == {steps[0][1].plan}  # type: ignore[union-attr]


def test_recovery_needs_consecutive_healthy_evaluations() -> None:
    low = RECOVERY_FRACTION * 0.5 - 0.01
    steps = run([0.6, low, low, 0.6, low, low, low], recovery=3)
    assert [o for o, _ in steps] == [
        Outcome.OPEN, Outcome.RECOVERING, Outcome.RECOVERING, Outcome.UPDATE,
        Outcome.RECOVERING, Outcome.RECOVERING, Outcome.RESOLVE,
    ]  # fmt: skip
    assert steps[-1][1] is None


def test_between_recovery_threshold_and_ladder_is_neither_healthy_nor_a_new_plan() -> None:
    between = (RECOVERY_FRACTION * 0.5 + 0.5) / 2
    steps = run([0.6, between, between, between, between])
    assert [o for o, _ in steps][1:] == [Outcome.UPDATE] * 4


def test_new_incident_after_resolution_has_a_new_id() -> None:
    steps = run([0.6, 0.0, 0.0, 0.0, 0.0, 0.6])
    first, last = steps[0][1], steps[-1][1]
    assert steps[-1][0] is Outcome.OPEN
    assert first is not None and last is not None and first.id != last.id and first.plan != last.plan


def test_abort_and_rollback_do_not_escalate_into_each_other() -> None:
    ladder = [
        LadderStep(min_confidence=0.95, severity=Severity.CRITICAL, action=Action.ROLLBACK),
        LadderStep(min_confidence=0.9, severity=Severity.CRITICAL, action=Action.ABORT),
    ]
    incident = decide("p", None, 0.91, ladder, 3, T0).incident
    assert incident is not None and incident.action is Action.ABORT
    assert decide("p", incident, 0.99, ladder, 3, T0).outcome is Outcome.UPDATE
    assert ACTION_RANK[Action.ABORT] == ACTION_RANK[Action.ROLLBACK]


def test_empty_ladder_never_opens() -> None:
    assert decide("p", None, 1.0, [], 3, T0).outcome is Outcome.QUIET


@pytest.mark.parametrize("policy", ["a", "checkout-canary", "x" * 253, "a." * 120 + "b"])
def test_plan_names_are_valid_and_deterministic(policy: str) -> None:
    ident = incident_id(T0)
    name = plan_name(policy, ident, Action.ABORT)
    assert name == plan_name(policy, ident, Action.ABORT)
    assert len(name) <= 253
    assert re.fullmatch(DNS_SUBDOMAIN_PATTERN, name)
    assert name.endswith(f"-{ident}-abort")
    label = policy_label(policy)
    assert len(label) <= 63 and re.fullmatch(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", label)


def test_long_names_that_share_a_prefix_stay_distinct() -> None:
    a, b = "x" * 250 + "a", "x" * 250 + "b"
    assert plan_name(a, "i", Action.PAUSE) != plan_name(b, "i", Action.PAUSE)
    assert policy_label(a) != policy_label(b)


def test_incident_id_is_base36_of_the_second() -> None:
    assert int(incident_id(T0), 36) == int(T0.timestamp())
    assert incident_id(T0) == incident_id(T0 + timedelta(milliseconds=400))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=60))
def test_properties_of_any_sequence(confidences: list[float]) -> None:
    """Whatever the confidences: the action never goes down within an incident, plans are unique per
    incident and action, and every incident's plans share its id."""
    incident: Incident | None = None
    seen: dict[str, set[str]] = {}
    for k, c in enumerate(confidences):
        decision = decide("p", incident, c, LADDER, 2, T0 + timedelta(seconds=k))
        new = decision.incident
        if incident is not None and new is not None and new.id == incident.id:
            assert ACTION_RANK[new.action] >= ACTION_RANK[incident.action]
        if decision.outcome in (Outcome.OPEN, Outcome.ESCALATE):
            assert new is not None
            assert new.plan not in seen.setdefault(new.id, set())
            seen[new.id].add(new.plan)
            assert new.id in new.plan
        if decision.outcome is Outcome.QUIET:
            assert incident is None and new is None
        incident = new
