"""RemediationPlan: a person's approval, rejection or verdict.

The policy's loop is the only writer of its plans' status (one writer, no races); this handler wakes
it for an approval or a false positive to revert, and copies a verdict set with ``kubectl`` into the
feedback store (Redis), where later decisions read it. A raw event handler: it keeps no state on the
plan, so ajan needs no patch permission on plans for it. Filtered: only events that ask something
of ajan reach it (the operator's own status writes, most events, do not).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

import kopf
from pydantic import ValidationError

from ajan import logs, metrics
from ajan.clients.feedback_store import FeedbackUnavailableError
from ajan.models import GROUP, VERSION, Feedback, PlanPhase, RemediationPlan
from ajan.services.execution import needs_revert
from ajan.services.feedback import merge_shifts, plan_shifts, record_of
from ajan.services.runtime import Runtime

#: How often a verdict that Redis refused is offered again.
STORE_RETRY_S: Final = 10.0


def _verdict_key(body: Mapping[str, Any]) -> tuple[str, ...]:
    """What a stored verdict is known by: the plan, the verdict, when, and how strong the alarm got."""
    meta, spec = body["metadata"], body.get("spec") or {}
    feedback = Feedback.model_validate(spec["feedback"])
    moved = plan_shifts(RemediationPlan.model_validate(dict(body)))
    return (
        meta["namespace"],
        meta["name"],
        feedback.verdict.value,
        str(feedback.at),
        str(sorted(moved.items())),
    )


def _reverts(body: Mapping[str, Any]) -> bool:
    """Whether the plan ``body`` (kopf's raw object) has an action to revert. A body the model
    refuses is one the CRD's schema would have refused too: nothing ajan could act on."""
    try:
        plan = RemediationPlan.model_validate(dict(body))
    except ValidationError:
        return False
    return needs_revert(plan)


def _awaits_ajan(body: kopf.Body, memo: kopf.Memo, **_: Any) -> bool:
    """Whether this event asks something of ajan: a verdict it has not stored, an approval of a
    plan still waiting, or a false positive to revert. Every other event (the operator's own status
    writes, most of them) skips the handler, and with it kopf's "Handler ... succeeded" line."""
    spec = body.get("spec") or {}
    runtime: Runtime | None = memo.get("runtime")
    if runtime is None:
        return False
    policy = (spec.get("policyRef") or {}).get("name")
    namespace = (body.get("metadata") or {}).get("namespace")
    if not (policy and namespace and runtime.config.shard.owns(namespace, policy)):
        return False  # another shard's plan: its replica stores the verdict and wakes the loop
    if spec.get("feedback") is not None and runtime.feedback is not None:
        try:
            if _verdict_key(body) not in runtime.stored_verdicts:
                return True
        except ValidationError:
            return False  # the schema stops such a verdict; nothing to store
    phase = (body.get("status") or {}).get("phase")
    approved = spec.get("approval") is not None and phase in (None, PlanPhase.PROPOSED.value)
    return approved or _reverts(body)


@kopf.on.event(GROUP, VERSION, "remediationplans", when=_awaits_ajan)
async def person_decided(
    *, body: kopf.Body, namespace: str | None, memo: kopf.Memo, logger: kopf.Logger, **_: Any
) -> None:
    """A plan got ``spec.approval`` or ``spec.feedback``: store the verdict, wake the policy's loop.

    The loop approves, rejects, or reverts an executed pause or abort called a false positive.
    """
    spec = body.get("spec") or {}
    runtime: Runtime | None = memo.get("runtime")
    if namespace is None or runtime is None:
        return
    if spec.get("feedback") is not None and runtime.feedback is not None:
        policy = (spec.get("policyRef") or {}).get("name")
        with logs.bind(namespace=namespace, policy=policy, plan=body["metadata"]["name"]):
            await _store_verdict(runtime, body, logger)
    phase = (body.get("status") or {}).get("phase")
    approved = spec.get("approval") is not None and phase in (None, PlanPhase.PROPOSED.value)
    if approved or _reverts(body):
        runtime.wake(namespace, spec["policyRef"]["name"])


async def _store_verdict(runtime: Runtime, body: kopf.Body, logger: kopf.Logger) -> None:
    """Copy the plan's ``spec.feedback`` into Redis, and again whenever the plan's alarm grew.

    A verdict is compared with later alarms by how strong the judged one got, so a plan whose
    ``status.peakShifts`` grew after the verdict updates the stored record (same time, same TTL).
    While Redis is down a background task retries every :data:`STORE_RETRY_S` (a plan may see no
    further event to bring the handler back); the verdict meanwhile stays on the plan.
    """
    store = runtime.feedback
    assert store is not None
    feedback = Feedback.model_validate(body["spec"]["feedback"])
    meta = body["metadata"]
    plan = RemediationPlan.model_validate(dict(body))
    moved = plan_shifts(plan)
    key = _verdict_key(body)
    if key in runtime.stored_verdicts:
        return
    runtime.stored_verdicts.add(key)
    policy = plan.spec.policy_ref.name

    async def store_it() -> None:
        while True:
            try:
                existing = await store.get(meta["namespace"], policy, meta["name"])
                if existing is not None and existing.verdict is not feedback.verdict:
                    existing = None  # a changed verdict replaces the old one
                if existing is not None and merge_shifts(existing.shifts, moved) == existing.shifts:
                    return  # stored already (by the feedback API, or before a restart), as strong
                # A verdict without a time counts from when ajan first stores it.
                now = datetime.fromtimestamp(runtime.clock(), tz=UTC)
                at = existing.at if existing is not None else feedback.at or now
                record = record_of(plan, feedback.verdict, at, feedback.by, feedback.comment)
                if existing is not None:
                    record = dataclasses.replace(record, shifts=merge_shifts(existing.shifts, record.shifts))
                await store.record(record)
                if existing is None:
                    # A new verdict, set with kubectl: the feedback API counted its own already (it
                    # stores before patching the plan, so the handler finds its record above).
                    metrics.feedback_metrics().accepted.labels(verdict=feedback.verdict.value).inc()
                logger.info("stored the %s verdict on %s", feedback.verdict.value, meta["name"])
                return
            except FeedbackUnavailableError as err:
                logger.warning("cannot store the verdict on %s yet: %s", meta["name"], err)
                await asyncio.sleep(STORE_RETRY_S)

    runtime.spawn(store_it())
