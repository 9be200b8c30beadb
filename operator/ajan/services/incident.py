"""What an assessment means for a policy's incident: open, escalate, update, recover, resolve.

Pure: the policy's current :class:`~ajan.models.Incident` (or None) and a confidence in, a
:class:`Decision` out. One incident has one plan at a time; a new plan only on escalation (a stronger
ladder action), never on a weaker one, so a noisy confidence cannot flap between pause and resume;
the incident ends only after ``recoveryEvaluations`` consecutive evaluations below
:data:`RECOVERY_FRACTION` of the lowest rung (hysteresis).

Plan names are deterministic (policy, incident, action): the operator writes the incident, with the
plan's name, into the policy status *before* creating the plan, so after a crash it creates the same
name again (and adopts the existing object on 409) instead of a duplicate.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final

import numpy as np

from ajan.models import Action, Incident, LadderStep
from ajan.services.assessment import rung_for

#: The incident ends when the confidence stays under this share of the lowest rung's minimum.
RECOVERY_FRACTION: Final = 0.8
#: Abort and rollback are both final for a canary: neither escalates to the other.
ACTION_RANK: Final = {
    Action.NONE: 0,
    Action.ANNOTATE: 1,
    Action.PAUSE: 2,
    Action.ABORT: 3,
    Action.ROLLBACK: 3,
}
_MAX_NAME: Final = 253
_MAX_LABEL: Final = 63


class Outcome(StrEnum):
    """What an evaluation does to the incident."""

    QUIET = "quiet"
    """No incident, none opened."""
    OPEN = "open"
    """A new incident and its first plan."""
    ESCALATE = "escalate"
    """A stronger action: a new plan supersedes the incident's current one."""
    UPDATE = "update"
    """The incident goes on; its plan's evidence may be refreshed."""
    RECOVERING = "recovering"
    """Below the recovery threshold, not yet for long enough."""
    RESOLVE = "resolve"
    """Recovered: the incident's plans are resolved and the incident closed."""


@dataclass(frozen=True)
class Decision:
    """The outcome, the rung reached now, the incident afterwards and the plan it replaces or ends."""

    outcome: Outcome
    rung: LadderStep | None
    incident: Incident | None
    previous_plan: str | None = None


def incident_id(at: datetime) -> str:
    """Base 36 of the opening time in seconds: short, sortable, and stable across a restart."""
    n = int(at.timestamp())
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


def _shorten(name: str, limit: int) -> str:
    """``name`` if it fits, else a prefix and a hash of the whole (still a valid DNS name)."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: limit - 9].rstrip('-.')}-{digest}"


def plan_name(policy: str, incident: str, action: Action) -> str:
    """The plan of ``incident`` for ``action``: ``<policy>-<incident>-<action>``."""
    suffix = f"-{incident}-{action.value}"
    return _shorten(policy, _MAX_NAME - len(suffix)) + suffix


def policy_label(policy: str) -> str:
    """The value of the ``aiops.ajan.dev/policy`` label of a policy's plans (at most 63 characters)."""
    return _shorten(policy, _MAX_LABEL)


def decide(
    policy: str,
    incident: Incident | None,
    confidence: float,
    ladder: Sequence[LadderStep],
    recovery_evaluations: int,
    at: datetime,
) -> Decision:
    """The incident after an evaluation of confidence ``confidence`` at time ``at``.

    Parameters
    ----------
    policy
        Name of the policy (for plan names).
    incident
        The policy's open incident, or None.
    confidence
        The assessment's confidence, in [0, 1].
    ladder
        The policy's ladder, highest ``minConfidence`` first.
    recovery_evaluations
        Consecutive healthy evaluations that end an incident.
    """
    rung = rung_for(confidence, ladder)
    floor = min((step.min_confidence for step in ladder), default=np.inf)
    if incident is None:
        if rung is None:
            return Decision(Outcome.QUIET, None, None)
        ident = incident_id(at)
        opened = Incident(
            id=ident,
            opened_at=at,
            action=rung.action,
            plan=plan_name(policy, ident, rung.action),
            peak_confidence=confidence,
        )
        return Decision(Outcome.OPEN, rung, opened)
    peak = max(incident.peak_confidence, confidence)
    if rung is not None and ACTION_RANK[rung.action] > ACTION_RANK[incident.action]:
        escalated = incident.model_copy(
            update={
                "action": rung.action,
                "plan": plan_name(policy, incident.id, rung.action),
                "peak_confidence": peak,
                "healthy_evaluations": 0,
            }
        )
        return Decision(Outcome.ESCALATE, rung, escalated, previous_plan=incident.plan)
    if confidence < RECOVERY_FRACTION * floor:
        healthy = incident.healthy_evaluations + 1
        if healthy >= recovery_evaluations:
            return Decision(Outcome.RESOLVE, rung, None, previous_plan=incident.plan)
        recovering = incident.model_copy(update={"healthy_evaluations": healthy, "peak_confidence": peak})
        return Decision(Outcome.RECOVERING, rung, recovering)
    ongoing = incident.model_copy(update={"healthy_evaluations": 0, "peak_confidence": peak})
    return Decision(Outcome.UPDATE, rung, ongoing)
