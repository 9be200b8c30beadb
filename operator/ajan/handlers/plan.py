"""RemediationPlan: a person's approval, rejection or false-positive verdict wakes its policy loop.

The policy's loop is the only writer of its plans (one writer, no races); this handler only tells it
not to wait for the rest of its interval. A raw event handler: it keeps no state on the plan, so
ajan needs no patch permission on plans.
"""

from __future__ import annotations

from typing import Any

import kopf

from ajan.models import GROUP, VERSION, PlanPhase
from ajan.services.execution import needs_revert


@kopf.on.event(GROUP, VERSION, "remediationplans")
def person_decided(*, body: kopf.Body, namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    """A waiting plan got ``spec.approval``, or an executed one a false-positive ``spec.feedback``:
    wake its policy's loop, which approves, rejects or reverts."""
    spec = body.get("spec") or {}
    phase = (body.get("status") or {}).get("phase")
    approved = spec.get("approval") is not None and phase in (None, PlanPhase.PROPOSED.value)
    if namespace is None or not (approved or needs_revert(body)):
        return
    runtime = memo.get("runtime")
    if runtime is not None:
        runtime.wake(namespace, spec["policyRef"]["name"])
