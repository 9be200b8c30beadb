"""Carrying out RemediationPlans on their Argo Rollout: by mode, within limits, exactly once.

The policy's evaluation loop calls :meth:`Executor.progress` after each good evaluation (never on
missing or stale data), so one writer moves a policy's plans on:

* **dry-run**: the patches that would be sent are built from the Rollout as it is and recorded in
  the plan's status (``dryRunPatch``, ``patchRequest``); the phase becomes DryRun; nothing is sent.
* **approve**: the plan waits in Proposed until a person sets ``spec.approval`` (Approved, then as
  auto; or Rejected), and expires after ``remediation.approvalTimeout``. An annotation does not
  wait: it changes nothing the canary does, so it is carried out as in auto mode.
* **auto**: the action is taken at once, within the limits.

Every action also annotates the Rollout with the plan that took it (a second patch, after the
plugin's), so the Rollout always names the newest plan that acted on it, not an earlier weaker one.
The plan's conditions follow its phase: AwaitingApproval, Throttled and Executing become False
when the plan moves past them (:func:`ajan.services.conditions.settle_transient`).

Limits (:func:`throttle`): annotations are free. Other actions wait for ``remediation.cooldown``
after the policy's last action unless they are stronger (an escalation is never held back); at most
``remediation.maxActionsPerHour`` per policy, counted from the plans' ``executedAt`` (it survives
restarts), and at most ``--max-actions-per-hour`` for the whole operator (in memory).

Exactly once: the intent (phase Executing and the exact patch) is written to the plan *before* the
patch is sent, and the Rollout is read back after it. A plan found in Executing after a restart is
finished: if the Rollout already shows the patch's effect, it is marked Executed without sending
again; otherwise the patch is sent. Every patch is idempotent (merge patches of absolute values; a
rollback is skipped when the template already equals the previous revision's), so the worst case of
a crash between sending and recording is one identical patch, never a second action.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Protocol

import httpx
from kubernetes.client.rest import ApiException

from ajan import logs, metrics, tracing
from ajan.clients import rollouts
from ajan.clients.kubernetes import refusal
from ajan.models import (
    Action,
    ConditionStatus,
    CorrelationPolicySpec,
    GitOps,
    GitOpsManager,
    PlanPhase,
    RemediationMode,
    RemediationPlan,
    RemediationPlanStatus,
    Verdict,
    find_condition,
    parse_duration,
)
from ajan.models.common import rfc3339
from ajan.services.conditions import condition, settle_transient, with_condition
from ajan.services.incident import ACTION_RANK

#: Plans the executor still has to move on.
PENDING: Final = frozenset({None, PlanPhase.PROPOSED, PlanPhase.APPROVED, PlanPhase.EXECUTING})
HOUR: Final = timedelta(hours=1)
#: Argo CD marks what it syncs with a tracking label (default) or annotation; Flux with its owner labels.
ARGOCD_LABEL: Final = "app.kubernetes.io/instance"
ARGOCD_ANNOTATION: Final = "argocd.argoproj.io/tracking-id"
FLUX_LABELS: Final = ("kustomize.toolkit.fluxcd.io/name", "helm.toolkit.fluxcd.io/name")


class PlanStore(Protocol):
    """Where the executor writes a plan's status (:class:`ajan.clients.kubernetes.KubeStore`)."""

    async def patch_plan_status(
        self, namespace: str, name: str, status: Mapping[str, Any]
    ) -> RemediationPlan: ...


def _conditions(status: RemediationPlanStatus) -> list[dict[str, Any]]:
    """The status's conditions as the helpers of :mod:`ajan.services.conditions` update them for a
    patch: a merge patch replaces the whole list, so the ones kept are written again."""
    return [c.to_kube() for c in status.conditions]


# --- pure decisions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Throttle:
    """Why an action must wait, and until when."""

    reason: str
    message: str
    until: datetime


@dataclass(frozen=True)
class Taken:
    """An action the policy took: when, and which."""

    at: datetime
    action: Action


def throttle(
    action: Action,
    history: Sequence[Taken],
    cooldown: timedelta,
    max_per_hour: int,
    now: datetime,
) -> Throttle | None:
    """Whether ``action`` must wait, given the policy's past actions (:mod:`ajan.services.execution`)."""
    if action in (Action.ANNOTATE, Action.NONE):
        return None
    disruptive = sorted(
        (t for t in history if t.action not in (Action.ANNOTATE, Action.NONE)), key=lambda t: t.at
    )
    last_hour = [t for t in disruptive if now - t.at < HOUR]
    if len(last_hour) >= max_per_hour:
        until = last_hour[0].at + HOUR if last_hour else now + HOUR
        return Throttle(
            "RateLimited",
            f"{len(last_hour)} actions in the last hour, remediation.maxActionsPerHour is {max_per_hour}",
            until,
        )
    if disruptive:
        last = disruptive[-1]
        if now - last.at < cooldown and ACTION_RANK[action] <= ACTION_RANK[last.action]:
            return Throttle(
                "CoolingDown",
                f"{last.action.value} at {rfc3339(last.at)}; "
                f"remediation.cooldown is {cooldown.total_seconds():g}s",
                last.at + cooldown,
            )
    return None


def gitops_of(rollout: Mapping[str, Any]) -> GitOps | None:
    """Whether a GitOps controller syncs the Rollout, from its tracking label or annotation."""
    meta = rollout.get("metadata") or {}
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    name = meta.get("name", "the rollout")
    revert = (
        f"revert the commit that introduced the canary's image in the repository the controller syncs, "
        f"so that the next sync brings {name} back to the stable version"
    )
    if ARGOCD_ANNOTATION in annotations or ARGOCD_LABEL in labels:
        source = (
            f"{ARGOCD_ANNOTATION}={annotations[ARGOCD_ANNOTATION]}"
            if ARGOCD_ANNOTATION in annotations
            else f"{ARGOCD_LABEL}={labels[ARGOCD_LABEL]}"
        )
        return GitOps(
            manager=GitOpsManager.ARGOCD,
            source=source,
            note="Argo CD syncs this Rollout: a rollback of spec.template would be reverted by the next sync "
            "(or mark the application OutOfSync); abort, which only changes status, is preferred.",
            suggestion=f"In Git: {revert}; or `argocd app rollback` to the last healthy revision.",
        )
    for label in FLUX_LABELS:
        if label in labels:
            return GitOps(
                manager=GitOpsManager.FLUX,
                source=f"{label}={labels[label]}",
                note="Flux reconciles this Rollout: a rollback of spec.template would be reverted at the "
                "next "
                "reconciliation; abort, which only changes status, is preferred.",
                suggestion=f"In Git: {revert}; or suspend the Flux Kustomization/HelmRelease before a "
                "rollback.",
            )
    return None


def needs_revert(plan: RemediationPlan) -> bool:
    """An executed pause or abort that a person marked a false positive, and not yet undone."""
    spec, status = plan.spec, plan.current
    return (
        spec.feedback is not None
        and spec.feedback.verdict is Verdict.FALSE_POSITIVE
        and status.executed_at is not None
        and spec.mode is not RemediationMode.DRY_RUN
        and spec.action in (Action.PAUSE, Action.ABORT)
        and find_condition(status.conditions, "Reverted") is None
    )


def history_of(plans: Sequence[RemediationPlan]) -> list[Taken]:
    """The actions the plans record as taken (dry-run plans took none)."""
    taken = []
    for plan in plans:
        at = plan.current.executed_at
        if at is not None and plan.spec.mode is not RemediationMode.DRY_RUN:
            taken.append(Taken(at, plan.spec.action))
    return taken


class OperatorLimit:
    """The operator-wide limit on actions per hour (in memory: it starts afresh after a restart)."""

    def __init__(self, per_hour: int) -> None:
        self.per_hour = per_hour
        self._times: collections.deque[datetime] = collections.deque()

    def _prune(self, now: datetime) -> None:
        while self._times and now - self._times[0] >= HOUR:
            self._times.popleft()

    def allows(self, now: datetime) -> bool:
        """Whether one more action fits in the last hour."""
        self._prune(now)
        return len(self._times) < self.per_hour

    def record(self, now: datetime) -> None:
        """Count an action taken now."""
        self._times.append(now)


def describe_request(namespace: str, name: str, patch: rollouts.RolloutPatch) -> str:
    """Method, path and content type of the request that carries ``patch``."""
    path = f"/apis/argoproj.io/v1alpha1/namespaces/{namespace}/rollouts/{name}"
    return f"PATCH {path}{'/' + patch.subresource if patch.subresource else ''} ({patch.content_type})"


def approval_command(namespace: str, plan: str) -> str:
    """How a person approves a plan (the message of an AwaitingApproval condition)."""
    body = '{"spec":{"approval":{"approved":true,"by":"YOUR-NAME"}}}'
    return f"kubectl -n {namespace} patch remediationplan {plan} --type merge -p '{body}'"


# --- carrying plans out ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ExecutionNote:
    """Something worth an Event on the plan (and on the Rollout, for an action taken)."""

    plan: str
    reason: str
    message: str
    warning: bool = False
    rollout: Mapping[str, Any] | None = None
    """The Rollout acted on, when the note is about an action on it (an Event goes there too)."""


class Executor:
    """Moves one policy's plans on (see the module docstring); the policy's evaluation loop owns it."""

    def __init__(
        self,
        client: rollouts.RolloutClient,
        store: PlanStore,
        limit: OperatorLimit,
        http: httpx.AsyncClient | None,
        namespace: str,
        policy: str,
        logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
    ) -> None:
        self.client = client
        self.store = store
        self.limit = limit
        self.http = http
        self.namespace = namespace
        self.policy = policy
        self.log: logging.Logger | logging.LoggerAdapter[Any] = logger or logging.getLogger("ajan.execution")

    async def progress(
        self, spec: CorrelationPolicySpec, plans: Sequence[RemediationPlan], now: datetime
    ) -> list[ExecutionNote]:
        """Move every pending plan of the policy on by one step (or to its end).

        Each plan's ``status`` is replaced by what the API server answered to each write (see
        :meth:`_set`), so the caller's plans show where this call left them.
        """
        notes: list[ExecutionNote] = []
        history = history_of(plans)
        for plan in plans:
            if plan.current.phase not in PENDING:
                continue
            # `history` grows with each action taken, so the limits hold within one call too.
            with logs.bind(plan=plan.name):
                notes += await self._progress_one(spec, plan, history, now)
        for plan in plans:
            if needs_revert(plan):
                with logs.bind(plan=plan.name):
                    notes += await self._revert(plan, now)
        return notes

    async def _revert(self, plan: RemediationPlan, now: datetime) -> list[ExecutionNote]:
        """A person said the alarm was false: undo ajan's action (unpause after a pause, retry after an
        abort, as `kubectl argo rollouts` does). Once: a Reverted condition records it."""
        name = plan.name
        target = plan.spec.target_ref.name
        action = plan.spec.action
        try:
            rollout = await self.client.get(self.namespace, target)
            # Undo what ajan did and nothing more: its spec.paused (a canary step's own pause stays,
            # and the canary does not move on), or its abort.
            patch = rollouts.unpause() if action is Action.PAUSE else rollouts.retry()
            sent = () if rollouts.applied(rollout, patch) else (patch,)
            for one in sent:
                await self.client.apply(self.namespace, target, one)
            after = await self.client.get(self.namespace, target)
        except ApiException as err:
            self.log.warning("plan %s: reverting failed: HTTP %s %s", name, err.status, err.reason)
            return []
        verb = "unpause" if action is Action.PAUSE else "retry"
        text = "; ".join(p.render() for p in sent) or "nothing: the Rollout already went on"
        reverted = condition(
            "Reverted", ConditionStatus.TRUE, "FalsePositive",
            f"false positive per spec.feedback: {verb} sent: {text}", now,
        )  # fmt: skip
        await self.store.patch_plan_status(
            self.namespace, name, {"conditions": with_condition(_conditions(plan.current), reverted)}
        )
        message = f"{verb} after plan {name} was marked a false positive"
        return [ExecutionNote(name, "Reverted", message, rollout=after)]

    async def _progress_one(
        self,
        spec: CorrelationPolicySpec,
        plan: RemediationPlan,
        history: list[Taken],
        now: datetime,
    ) -> list[ExecutionNote]:
        name = plan.name
        mode = plan.spec.mode
        waits = mode is RemediationMode.APPROVE and plan.spec.action is not Action.ANNOTATE
        if plan.current.phase in (None, PlanPhase.PROPOSED) and waits:
            approval = plan.spec.approval
            if approval is None:
                return await self._await_approval(plan, spec, now)
            if not approval.approved:
                await self._set(
                    plan,
                    PlanPhase.REJECTED,
                    now,
                    condition(
                        "Rejected",
                        ConditionStatus.TRUE,
                        "Rejected",
                        f"rejected by {approval.by}",
                        now,
                    ),
                    resolved=True,
                )
                return [ExecutionNote(name, "PlanRejected", f"{name}: rejected by {approval.by}")]
            await self._set(
                plan,
                PlanPhase.APPROVED,
                now,
                condition("Approved", ConditionStatus.TRUE, "Approved", f"approved by {approval.by}", now),
            )
        attributes = {"action": plan.spec.action.value, "dry_run": mode is RemediationMode.DRY_RUN}
        with tracing.span("ajan.act", plan=name, **attributes) as span:
            notes = await self._execute(spec, plan, mode, history, now)
            phase = plan.current.phase
            span.set_attribute("phase", str(phase.value if phase is not None else None))
            return notes

    async def _await_approval(
        self, plan: RemediationPlan, spec: CorrelationPolicySpec, now: datetime
    ) -> list[ExecutionNote]:
        name = plan.name
        status = plan.current
        expires = status.expires_at
        if expires is None:
            proposed = status.proposed_at or now
            expires = proposed + parse_duration(spec.remediation.approval_timeout)
            waiting = condition(
                "AwaitingApproval", ConditionStatus.TRUE, "AwaitingApproval",
                f"approve or reject before {rfc3339(expires)}: {approval_command(self.namespace, name)}", now,
            )  # fmt: skip
            await self.store.patch_plan_status(self.namespace, name, {
                "expiresAt": rfc3339(expires),
                "conditions": with_condition(_conditions(status), waiting),
            })  # fmt: skip
            return [
                ExecutionNote(name, "AwaitingApproval", f"{name} waits for approval until {rfc3339(expires)}")
            ]
        if now >= expires:
            await self._set(plan, PlanPhase.EXPIRED, now, condition(
                "Expired", ConditionStatus.TRUE, "ApprovalTimeout",
                f"no approval within remediation.approvalTimeout ({spec.remediation.approval_timeout})", now,
            ), resolved=True)  # fmt: skip
            return [ExecutionNote(name, "PlanExpired", f"{name}: no approval in time", warning=True)]
        return []

    async def _set(
        self,
        plan: RemediationPlan,
        phase: PlanPhase,
        now: datetime,
        cond: Mapping[str, Any],
        *,
        resolved: bool = False,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        before = plan.current.phase
        conditions = settle_transient(with_condition(_conditions(plan.current), cond), phase, now)
        patch: dict[str, Any] = {"phase": phase.value, "conditions": conditions, **(extra or {})}
        if resolved:
            patch["resolvedAt"] = rfc3339(now)
        updated = await self.store.patch_plan_status(self.namespace, plan.name, patch)
        if before is not phase:
            metrics.plan_entered(plan.spec.action.value, phase.value)
            self.log.debug("plan %s: %s -> %s", plan.name, before, phase.value)
        # In place: later steps of the same call (and the caller's list) see what was just written.
        plan.status = updated.status

    async def _execute(
        self,
        spec: CorrelationPolicySpec,
        plan: RemediationPlan,
        mode: RemediationMode,
        history: list[Taken],
        now: datetime,
    ) -> list[ExecutionNote]:
        name = plan.name
        action = plan.spec.action
        target = plan.spec.target_ref.name
        executing = plan.current.phase is PlanPhase.EXECUTING
        if target != spec.target_ref.name:
            # Never touch a Rollout the policy does not name (a plan edited, or the policy retargeted).
            await self._fail(
                plan,
                now,
                "TargetMismatch",
                f"the plan targets {target}, the policy {spec.target_ref.name}: not acting",
            )
            return [
                ExecutionNote(name, "TargetMismatch", f"{name}: target is not the policy's", warning=True)
            ]
        try:
            rollout = await self.client.get(self.namespace, target)
            patches = await self._build(plan, action, rollout)
        except ApiException as err:
            return await self._api_error(plan, now, err, "reading")
        except rollouts.RolloutError as err:
            await self._fail(plan, now, type(err).__name__.removesuffix("Error"), str(err))
            return [ExecutionNote(name, "CannotAct", f"{name}: {err}", warning=True)]
        request = "\n".join(describe_request(self.namespace, target, p) for p in patches)
        recorded = {"dryRunPatch": "\n".join(p.render() for p in patches), "patchRequest": request}

        if mode is RemediationMode.DRY_RUN:
            return await self._record_dry_run(spec, plan, patches, recorded, now)

        if not executing:
            held = await self._hold(spec, plan, history, now)
            if held is not None:
                return held
            # The intent, before anything is sent: after a crash from here on, the plan says what to finish.
            await self._set(
                plan,
                PlanPhase.EXECUTING,
                now,
                condition("Executing", ConditionStatus.TRUE, "Sending", request, now),
                extra=recorded,
            )

        try:
            for patch in patches:
                if rollouts.applied(rollout, patch):
                    continue
                if patch.type == "json":  # a rollback: re-read, re-decide and retry on conflict
                    await self.client.rollback(self.namespace, target)
                else:
                    await self.client.apply(self.namespace, target, patch)
            after = await self.client.get(self.namespace, target)
        except ApiException as err:
            return await self._api_error(plan, now, err, "patching")
        except rollouts.RolloutError as err:  # conflicts beyond the retries: try again next time
            self.log.warning("plan %s: %s; retrying at the next evaluation", name, err)
            return []
        if not all(rollouts.applied(after, patch) for patch in patches):
            await self._fail(
                plan, now, "NotApplied", "the Rollout does not show the patch's effect after it was sent"
            )
            return [ExecutionNote(name, "NotApplied", f"{name}: not applied", warning=True)]
        return await self._record_executed(spec, plan, after, history, now)

    async def _record_dry_run(
        self,
        spec: CorrelationPolicySpec,
        plan: RemediationPlan,
        patches: Sequence[rollouts.RolloutPatch],
        recorded: dict[str, str],
        now: datetime,
    ) -> list[ExecutionNote]:
        """Dry-run: the plan keeps the exact patches and requests it would have sent; nothing is sent."""
        await self._set(plan, PlanPhase.DRY_RUN, now, condition(
            "DryRun", ConditionStatus.TRUE, "DryRun", "not sent (dry-run mode): see dryRunPatch", now,
        ), extra={**recorded, "executedAt": rfc3339(now)})  # fmt: skip
        await self._notify(spec, plan, "recorded (dry-run)")
        lines = zip(recorded["patchRequest"].splitlines(), patches, strict=True)
        shown = "; ".join(f"{r}: {p.render()}" for r, p in lines)
        return [ExecutionNote(plan.name, "DryRun", f"{plan.name}: would send {shown}")]

    async def _record_executed(
        self,
        spec: CorrelationPolicySpec,
        plan: RemediationPlan,
        after: dict[str, Any],
        history: list[Taken],
        now: datetime,
    ) -> list[ExecutionNote]:
        """The Rollout shows every patch's effect: the plan is Executed, and the action counts toward
        the policy's rate limit and cooldown."""
        action, target = plan.spec.action, plan.spec.target_ref.name
        await self._set(plan, PlanPhase.EXECUTED, now, condition(
            "Executed", ConditionStatus.TRUE, "Applied", f"{action.value} applied to rollout {target}", now,
        ), extra={"executedAt": rfc3339(now)})  # fmt: skip
        if action is not Action.ANNOTATE:
            self.limit.record(now)
        metrics.ACTIONS.labels(action=action.value).inc()
        history.append(Taken(now, action))
        await self._notify(spec, plan, "executed")
        message = f"{action.value} by plan {plan.name} (confidence {plan.spec.confidence:.2f})"
        return [ExecutionNote(plan.name, f"Action{action.value.capitalize()}", message, rollout=after)]

    async def _hold(
        self, spec: CorrelationPolicySpec, plan: RemediationPlan, history: list[Taken], now: datetime
    ) -> list[ExecutionNote] | None:
        """None when the plan's action may be sent now; else the notes of holding it back. The
        Throttled condition is written when the reason is new, not again at every evaluation."""
        name, action = plan.name, plan.spec.action
        wait = throttle(
            action, history, parse_duration(spec.remediation.cooldown),
            spec.remediation.max_actions_per_hour, now,
        )  # fmt: skip
        if wait is None and action is not Action.ANNOTATE and not self.limit.allows(now):
            wait = Throttle(
                "OperatorRateLimited",
                f"the operator's --max-actions-per-hour ({self.limit.per_hour}) is reached",
                now + HOUR,
            )
        if wait is None:
            return None
        cond = condition(
            "Throttled",
            ConditionStatus.TRUE,
            wait.reason,
            f"{wait.message}; next try after {rfc3339(wait.until)}",
            now,
        )
        known = find_condition(plan.current.conditions, "Throttled")
        if known is not None and known.reason == wait.reason and known.status is ConditionStatus.TRUE:
            return []
        await self.store.patch_plan_status(
            self.namespace, name, {"conditions": with_condition(_conditions(plan.current), cond)}
        )
        return [ExecutionNote(name, wait.reason, f"{name}: {cond['message']}")]

    async def _build(
        self, plan: RemediationPlan, action: Action, rollout: Mapping[str, Any]
    ) -> tuple[rollouts.RolloutPatch, ...]:
        """The patches of the plan's action, in sending order: the plugin's patch (none for a
        rollback already in place), then ajan's annotations naming this plan."""
        label = rollouts.annotate(plan.name, action.value, plan.spec.confidence)
        # A paused Rollout (ajan's own earlier pause, typically) would not carry out an abort or
        # rollback: its pause is lifted after them.
        lift = rollouts.unpause_after(rollout)
        if action is Action.PAUSE:
            return rollouts.pause(), label
        if action is Action.ABORT:
            return rollouts.abort(), *lift, label
        if action is Action.ROLLBACK:
            replicasets = await self.client.replicasets(self.namespace, rollout)
            undo = rollouts.rollback(rollout, replicasets)
            return (undo, *lift, label) if undo is not None else (*lift, label)
        return (label,)

    async def _fail(self, plan: RemediationPlan, now: datetime, reason: str, message: str) -> None:
        self.log.warning("plan %s failed (%s): %s", plan.name, reason, message)
        await self._set(
            plan,
            PlanPhase.FAILED,
            now,
            condition("Failed", ConditionStatus.TRUE, reason, message, now),
            resolved=True,
        )

    async def _api_error(
        self, plan: RemediationPlan, now: datetime, err: ApiException, doing: str
    ) -> list[ExecutionNote]:
        name = plan.name
        reason = {403: "Forbidden", 404: "RolloutNotFound", 422: "Invalid"}.get(err.status or 0)
        # The API server's sentence, as a Forbidden condition of the policy gives it.
        message = f"{doing} the Rollout: {refusal(err)}"
        if reason is not None:  # will not get better by itself
            await self._fail(plan, now, reason, message)
            return [ExecutionNote(name, reason, f"{name}: {message}", warning=True)]
        # Conflicts beyond the retries, timeouts, a 5xx: the intent is recorded; try again next time.
        self.log.warning("plan %s: %s; retrying at the next evaluation", name, message)
        return []

    async def _notify(self, spec: CorrelationPolicySpec, plan: RemediationPlan, what: str) -> None:
        if spec.notification is None or self.http is None:
            return
        await notify(self.http, spec.notification.webhook_url, self.namespace, plan, what, self.log)


def summary_text(namespace: str, plan: RemediationPlan, what: str) -> str:
    """One line for a person: which plan, what happened, on what, how sure."""
    spec = plan.spec
    top = ", ".join(f"{a.metric} z={a.z_score:+.1f}" for a in spec.evidence.anomalies[:3])
    # The most likely breach first: "p99 predicted to cross 0.5 in about 3 min (2-5 min)".
    ahead = sorted(spec.evidence.forecasts, key=lambda f: -f.probability)[:1]
    return (
        f"ajan: plan {namespace}/{plan.name} {what}: {spec.action.value} on rollout "
        f"{spec.target_ref.name} ({spec.severity.value}, confidence {spec.confidence:.2f}, "
        f"mode {spec.mode.value})"
        + (f"; anomalous: {top}" if top else "")
        + "".join(f"; {f.sentence()}" for f in ahead if f.probability > 0.0)
    )


async def notify(
    http: httpx.AsyncClient,
    url: str,
    namespace: str,
    plan: RemediationPlan,
    what: str,
    log: logging.Logger | logging.LoggerAdapter[Any],
) -> bool:
    """POST a plan's summary to a webhook (Slack-compatible ``text``); never raises, True if accepted."""
    spec, phase = plan.spec, plan.current.phase
    body = {
        "text": summary_text(namespace, plan, what),
        "event": what,
        "plan": plan.name,
        "namespace": namespace,
        "policy": spec.policy_ref.name,
        "target": spec.target_ref.name,
        "action": spec.action.value,
        "severity": spec.severity.value,
        "confidence": spec.confidence,
        "mode": spec.mode.value,
        "phase": phase.value if phase is not None else None,
    }
    try:
        response = await http.post(url, json=body, timeout=5.0)
    except httpx.HTTPError as err:
        log.warning("webhook %s failed: %s: %s", url, type(err).__name__, err)
        return False
    if response.status_code >= 300:
        log.warning("webhook %s answered HTTP %d", url, response.status_code)
        return False
    return True
