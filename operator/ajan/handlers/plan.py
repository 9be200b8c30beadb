"""RemediationPlan: a person's approval or rejection wakes the plan's policy loop at once.

The policy's loop is the only writer of its plans (one writer, no races); this handler only tells it
not to wait for the rest of its interval. A raw event handler: it keeps no state on the plan, so
ajan needs no patch permission on plans.
"""

from __future__ import annotations

from typing import Any

import kopf

from ajan.models import GROUP, VERSION, PlanPhase


@kopf.on.event(GROUP, VERSION, "remediationplans")
def approval_given(*, body: kopf.Body, namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    """On any change of a plan that waits with ``spec.approval`` set: wake its policy's loop."""
    spec = body.get("spec") or {}
    phase = (body.get("status") or {}).get("phase")
    if namespace is None or spec.get("approval") is None or phase not in (None, PlanPhase.PROPOSED.value):
        return
    runtime = memo.get("runtime")
    if runtime is not None:
        runtime.wake(namespace, spec["policyRef"]["name"])
