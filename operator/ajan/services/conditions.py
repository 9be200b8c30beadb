"""Status conditions in the shape of ``metav1.Condition``, for policies and plans alike."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from ajan.models import ConditionStatus, PlanPhase
from ajan.models.common import rfc3339

#: metav1.Condition's limit on a message.
MAX_MESSAGE: int = 32768
#: A plan's conditions that describe a state it passes through, and the phases in which they can
#: hold. Leaving those phases turns them False (``kubectl wait --for=condition=AwaitingApproval=false``
#: works); the other conditions record what happened (Approved, Executed...) and stay True.
TRANSIENT: Final[Mapping[str, frozenset[PlanPhase]]] = {
    "AwaitingApproval": frozenset({PlanPhase.PROPOSED}),
    "Throttled": frozenset({PlanPhase.PROPOSED, PlanPhase.APPROVED}),
    "Executing": frozenset({PlanPhase.EXECUTING}),
}


def condition(
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    now: datetime,
    generation: int | None = None,
) -> dict[str, Any]:
    """A condition, ready for a status patch."""
    out: dict[str, Any] = {
        "type": type_,
        "status": status.value,
        "reason": reason,
        "message": message[:MAX_MESSAGE],
        "lastTransitionTime": rfc3339(now),
    }
    if generation is not None:
        out["observedGeneration"] = generation
    return out


def with_condition(existing: Sequence[Mapping[str, Any]], new: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``existing`` with ``new`` in place of the condition of its type, last; the lastTransitionTime
    moves only when the status does (a new reason or message alone is not a transition)."""
    out = []
    for old in existing:
        if old.get("type") == new["type"]:
            if old.get("status") == new["status"] and old.get("lastTransitionTime"):
                new = {**new, "lastTransitionTime": old["lastTransitionTime"]}
            continue
        out.append(dict(old))
    return [*out, dict(new)]


def set_condition(
    conditions: Sequence[Mapping[str, Any]],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    now: datetime,
    generation: int | None = None,
) -> list[dict[str, Any]]:
    """``conditions`` with ``type_`` set (see :func:`with_condition`)."""
    return with_condition(conditions, condition(type_, status, reason, message, now, generation))


def settle_transient(
    conditions: Sequence[Mapping[str, Any]], phase: PlanPhase, now: datetime
) -> list[dict[str, Any]]:
    """``conditions`` of a plan entering ``phase``, with every :data:`TRANSIENT` condition that can no
    longer hold set False: the reason is the new phase, the transition time now."""
    out = [dict(c) for c in conditions]
    for entry in out:
        holds_in = TRANSIENT.get(str(entry.get("type")))
        if holds_in is None or phase in holds_in or entry.get("status") != ConditionStatus.TRUE.value:
            continue
        entry.update(
            status=ConditionStatus.FALSE.value,
            reason=phase.value,
            message=f"no longer: the plan is {phase.value}",
            lastTransitionTime=rfc3339(now),
        )
    return out
