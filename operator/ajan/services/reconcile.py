"""One evaluation of one CorrelationPolicy, carried out: query, assess, decide, write.

`PolicyEvaluator` is what each policy's kopf daemon calls every ``interval``. It keeps the policy's
incident in memory between evaluations, and reads it back from the policy's status after a restart.

Fail safe: when the metrics cannot be trusted (Prometheus unreachable or refusing, too little or
stale data, an invalid spec) the evaluation changes *no* plan and no incident, neither opening nor
resolving one, and says why in a ``Degraded`` condition; the next good evaluation clears it.

Crash safety, in the order of the writes:

1. the incident, with its plan's deterministic name, goes into the policy's status (the intent);
2. the plan is created (409 AlreadyExists: it was, before a crash; it is adopted);
3. its status is set to Proposed (a plan found without a phase gets it on the next evaluation);
4. older plans of the incident still waiting are marked Superseded (swept again after a restart).

A restart anywhere in between leads the next evaluation to the same names, so an action is never
proposed twice and never lost.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, Final

from kubernetes.client.rest import ApiException
from pydantic import ValidationError

from ajan import logs, metrics, tracing
from ajan.clients.feedback_store import (
    FeedbackHistory,
    FeedbackUnavailableError,
)
from ajan.clients.kubernetes import FORBIDDEN_HINT, refusal
from ajan.errors import DataError
from ajan.models import (
    API_VERSION,
    Action,
    Condition,
    ConditionStatus,
    CorrelationPolicySpec,
    DegradedReason,
    Evidence,
    GitOps,
    Incident,
    LadderStep,
    PlanPhase,
    PolicyConditionType,
    PolicyRef,
    RemediationPlan,
    RemediationPlanSpec,
    RemediationPlanStatus,
    Severity,
    find_condition,
    parse_duration,
)
from ajan.models.common import rfc3339, validation_message
from ajan.models.plan import peak_shifts_of
from ajan.services.assessment import Assessment, FloatArray
from ajan.services.conditions import set_condition, settle_transient
from ajan.services.execution import ExecutionNote, Executor, gitops_of, notify
from ajan.services.feedback import assessment_shifts, merge_shifts, status_shifts
from ajan.services.incident import Decision, Outcome, plan_name, policy_label
from ajan.services.runtime import Runtime
from ajan.services.step import Step, evaluate
from ajan.services.window import fetch_spread, fetch_window, spread_bounds, window_bounds

log = logging.getLogger(__name__)

LABEL_POLICY: Final = "aiops.ajan.dev/policy"
LABEL_INCIDENT: Final = "aiops.ajan.dev/incident"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
#: Retry delay when the spec cannot even say how often to evaluate.
INVALID_SPEC_RETRY_S: Final = 60.0
#: Plan phases an incident may still move: superseded on escalation, resolved on recovery.
WAITING: Final = frozenset({None, PlanPhase.PROPOSED, PlanPhase.APPROVED})
RESOLVABLE: Final = WAITING | {PlanPhase.EXECUTED, PlanPhase.DRY_RUN}
#: A plan's peakShifts are rewritten when a metric moved this many times further than recorded.
PEAK_STEP: Final = 1.1
#: A plan's evidence is rewritten when the confidence moves by a step of this size (or the set of
#: anomalous metrics changes), not at every evaluation.
CONFIDENCE_STEP: Final = 0.05


@dataclass(frozen=True)
class Note:
    """Something worth a Kubernetes Event on the policy."""

    reason: str
    message: str
    warning: bool = False


@dataclass(frozen=True)
class Report:
    """What one evaluation did: when to evaluate next, the outcome, the events to post."""

    delay_s: float
    outcome: Outcome | None
    reason: str | None = None
    notes: list[Note] = field(default_factory=list)
    assessment: Assessment | None = None


class _Untrusted(Exception):  # noqa: N818 (a condition, as the Prometheus client's errors)
    """An evaluation that cannot be trusted: the Degraded condition's ``reason`` and ``message``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _severity_of(action: Action, ladder: list[LadderStep]) -> Severity:
    return next((s.severity for s in ladder if s.action is action), Severity.WARNING)


def new_plan(
    namespace: str,
    policy: str,
    policy_uid: str | None,
    spec: CorrelationPolicySpec,
    incident: Incident,
    severity: Severity,
    confidence: float,
    evidence: Evidence,
    gitops: GitOps | None,
) -> RemediationPlan:
    """The incident's current plan as the policy ``policy`` (uid ``policy_uid``) proposes it.

    ``spec.evidence`` holds the evidence as the assessment saw it (its lists already within the
    model's bounds); ``status`` is left out: it is written after the create, through the subresource.
    """
    return RemediationPlan(
        metadata={
            "name": incident.plan,
            "namespace": namespace,
            "labels": {
                LABEL_POLICY: policy_label(policy),
                LABEL_INCIDENT: incident.id,
                LABEL_MANAGED_BY: "ajan",
            },
            # Deleting the policy collects its plans; no blockOwnerDeletion (it needs more RBAC).
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": "CorrelationPolicy",
                    "name": policy,
                    "uid": policy_uid,
                    "controller": True,
                }
            ],
        },
        spec=RemediationPlanSpec(
            policy_ref=PolicyRef(name=policy),
            target_ref=spec.target_ref,
            action=incident.action,
            severity=severity,
            confidence=round(confidence, 4),
            evidence=evidence,
            mode=spec.remediation.mode,
            git_ops=gitops,
        ),
    )


def _patch(status: RemediationPlanStatus) -> dict[str, Any]:
    """The fields of ``status`` that were set, as a merge patch writes them (in the model's order)."""
    return status.model_dump(mode="json", by_alias=True, exclude_unset=True)


def _signature(names: list[str], confidence: float) -> tuple[tuple[str, ...], int]:
    return tuple(sorted(names)), round(confidence / CONFIDENCE_STEP)


class PolicyEvaluator:
    """Evaluations of one policy, in one operator process."""

    def __init__(
        self,
        runtime: Runtime,
        namespace: str,
        name: str,
        logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
    ) -> None:
        self.runtime = runtime
        self.namespace = namespace
        self.name = name
        self.log: logging.Logger | logging.LoggerAdapter[Any] = logger or logging.getLogger("ajan.policy")
        self.incident: Incident | None = None
        self.interval_s: float | None = None
        """The policy's interval at its last evaluation that got as far as reading it."""
        self._feedback_down = False
        self._loaded = False
        self._plans: dict[str, tuple[tuple[str, ...], int]] = {}  # plan name -> evidence signature
        self._peaks: dict[str, dict[str, float]] = {}  # plan name -> its peakShifts
        self._swept: set[str] = set()  # incidents whose older waiting plans are settled
        self._rollout: dict[str, Any] | None = None  # the target as read by this evaluation
        self._spread: tuple[tuple[object, ...], FloatArray] | None = None  # (grid and queries, spread)
        self.executor = (
            Executor(runtime.rollouts, runtime.kube, runtime.limit, runtime.http, namespace, name, self.log)
            if runtime.rollouts is not None
            else None
        )

    # --- the evaluation --------------------------------------------------------------------------

    async def evaluate(self, body: Mapping[str, Any]) -> Report:
        """Evaluate the policy ``body`` (its current manifest) once and write what follows.

        One ``ajan.evaluate`` span, and every log line inside names the namespace and policy.
        """
        with (
            logs.bind(namespace=self.namespace, policy=self.name),
            tracing.span("ajan.evaluate", namespace=self.namespace, policy=self.name) as span,
        ):
            started = time.perf_counter()
            try:
                with metrics.EVALUATION_SECONDS.time():
                    report = await self._evaluate(body)
            except BaseException:
                span.set_attribute("result", "error")
                raise
            result = report.reason or "evaluated"
            # Debug, and not on the policy's kopf logger: at INFO that one posts an Event per line.
            log.debug(
                "evaluation %s in %.0f ms: outcome %s, confidence %s",
                result,
                1000 * (time.perf_counter() - started),
                report.outcome.value if report.outcome else "-",
                f"{report.assessment.confidence:.2f}" if report.assessment else "-",
            )
            metrics.EVALUATIONS.labels(result=result).inc()
            span.set_attribute("result", result)
            assessment = report.assessment
            if assessment is not None:
                evidence = assessment.evidence
                metrics.record_evaluation(
                    self.namespace,
                    self.name,
                    confidence=assessment.confidence,
                    anomalous=len(evidence.anomalies),
                    metric_scores=assessment.metric_scores,
                    correlations=[(c.leader, c.follower, c.r) for c in evidence.correlations],
                )
                span.set_attribute("confidence", assessment.confidence)
                incident = self.incident
                span.set_attribute("action", incident.action.value if incident else Action.NONE.value)
        return report

    async def _evaluate(self, body: Mapping[str, Any]) -> Report:
        now = datetime.fromtimestamp(self.runtime.clock(), tz=UTC)
        generation = body.get("metadata", {}).get("generation")
        status = dict(body.get("status") or {})
        if not self._loaded:
            raw = status.get("incident")
            self.incident = Incident.model_validate(raw) if raw else None
            self._loaded = True
        notes: list[Note] = []
        delay = INVALID_SPEC_RETRY_S
        try:
            spec = self._spec_of(body)
            delay = self.interval_s = parse_duration(spec.interval).total_seconds()
            url = await self._checked_sources(spec)
            # Verdicts first: the step is pure and runs in a worker thread, with everything it needs.
            verdicts, notes = await self._verdicts(now)
            step = await self._assess(spec, url, now, verdicts)
        except _Untrusted as err:
            # The one way out for data or a spec ajan cannot trust: no plan and no incident moves.
            notes += await self._degraded(status, err.reason, err.message, now, generation)
            return Report(delay, None, err.reason, notes)
        try:
            decision = await self._decide(body, spec, step, now, notes)
            self.incident = decision.incident
            await self._execute(spec, now)
        except ApiException as err:
            if err.status != HTTPStatus.FORBIDDEN:
                raise
            # ajan's role changed under it: said where a person looks, not only in a log. The
            # incident (written first) stays, and its plan is made or moved on once allowed again.
            reason, message = DegradedReason.FORBIDDEN, f"{refusal(err)}; {FORBIDDEN_HINT}"
            notes += await self._degraded(status, reason, message, now, generation)
            return Report(delay, None, reason, notes, step.assessment)
        notes += await self._write_evaluated(status, spec, step.assessment, decision, now, generation)
        return Report(delay, decision.outcome, None, notes, step.assessment)

    @staticmethod
    def _spec_of(body: Mapping[str, Any]) -> CorrelationPolicySpec:
        try:
            return CorrelationPolicySpec.model_validate(body.get("spec") or {})
        except ValidationError as err:
            raise _Untrusted(DegradedReason.INVALID_SPEC, validation_message(err, ("spec",))) from err

    async def _checked_sources(self, spec: CorrelationPolicySpec) -> str:
        """The Prometheus URL to query, once it and the target are known to exist."""
        url = spec.prometheus.url if spec.prometheus else self.runtime.config.default_prometheus_url
        if not url:
            raise _Untrusted(
                DegradedReason.PROMETHEUS_UNAVAILABLE,
                "no Prometheus to query: set spec.prometheus.url, or start ajan with --prometheus-url",
            )
        missing = await self._missing_target(spec)
        if missing is not None:
            raise _Untrusted(DegradedReason.TARGET_NOT_FOUND, missing)
        return url

    async def _assess(
        self, spec: CorrelationPolicySpec, url: str, now: datetime, verdicts: FeedbackHistory | None
    ) -> Step:
        """The window and the week's spread from Prometheus, then the pure step, off the event loop."""
        try:
            opened_at = self.incident.opened_at.timestamp() if self.incident else None
            bounds = window_bounds(spec, self.runtime.clock(), opened_at)
            window = await fetch_window(self.runtime.source(url), spec, bounds.start, bounds.end, bounds.step)
            spread = await self._long_run_spread(url, spec, bounds.current_from)
            with tracing.span("ajan.analyse", metrics=len(spec.metrics)) as span:
                async with self.runtime.analysis_slots:
                    step = await asyncio.to_thread(
                        evaluate,
                        self.name,
                        spec,
                        window,
                        bounds.current_from,
                        self.incident,
                        now,
                        self.runtime.classifier,
                        verdicts,
                        spread,
                    )
                span.set_attribute("score", step.assessment.score)
                span.set_attribute("anomalous", len(step.assessment.evidence.anomalies))
        except DataError as err:
            metrics.QUERY_ERRORS.labels(reason=err.reason).inc()
            raise _Untrusted(err.reason, err.message) from err
        return step

    async def _decide(
        self,
        body: Mapping[str, Any],
        spec: CorrelationPolicySpec,
        step: Step,
        now: datetime,
        notes: list[Note],
    ) -> Decision:
        """Carry the step's decision out on the policy's plans (its Events go into ``notes``)."""
        assessment, decision = step.assessment, step.decision
        with tracing.span("ajan.decide") as span:
            if log.isEnabledFor(logging.DEBUG):
                # What a person debugging a surprising plan needs: which metrics, how far, what feedback did.
                log.debug(
                    "decided %s at confidence %.3f: anomalous %s%s",
                    decision.outcome.value,
                    assessment.confidence,
                    ", ".join(f"{a.metric} (z {a.z_score:+.1f}, {a.value:.4g} vs {a.baseline:.4g})"
                              for a in assessment.evidence.anomalies) or "none",
                    f"; feedback: {assessment.evidence.feedback}" if assessment.evidence.feedback else "",
                )  # fmt: skip
            with logs.bind(plan=decision.incident.plan if decision.incident is not None else None):
                decision, carried = await self._carry_out(body, spec, decision, assessment, now)
            notes += carried
            span.set_attribute("outcome", decision.outcome.value)
            span.set_attribute("confidence", assessment.confidence)
            if decision.incident is not None:
                span.set_attribute("action", decision.incident.action.value)
                span.set_attribute("plan", decision.incident.plan)
        return decision

    async def _write_evaluated(
        self,
        status: dict[str, Any],
        spec: CorrelationPolicySpec,
        assessment: Assessment,
        decision: Decision,
        now: datetime,
        generation: int | None,
    ) -> list[Note]:
        """The policy's status after a good evaluation; a Recovered note if it was degraded."""
        notes: list[Note] = []
        conditions = list(status.get("conditions") or [])
        was_degraded = find_condition([Condition.model_validate(c) for c in conditions], "Degraded")
        message = (
            f"evaluated {len(spec.metrics)} metrics over {spec.window}: "
            f"score {assessment.score:.2f}, confidence {assessment.confidence:.2f}"
        )
        conditions = set_condition(
            conditions, PolicyConditionType.READY, ConditionStatus.TRUE, "Evaluated", message, now, generation
        )
        conditions = set_condition(
            conditions,
            PolicyConditionType.DEGRADED,
            ConditionStatus.FALSE,
            "Evaluated",
            "the last evaluation had the data it needs",
            now,
            generation,
        )
        if was_degraded is not None and was_degraded.status is ConditionStatus.TRUE:
            notes.append(Note("Recovered", f"evaluation works again after {was_degraded.reason}"))
        patch: dict[str, Any] = {
            "observedGeneration": generation,
            "lastEvaluationTime": rfc3339(now),
            "conditions": conditions,
            "anomalyScore": round(assessment.score, 4),
            "confidence": round(assessment.confidence, 4),
            "topCorrelations": [c.to_kube() for c in assessment.top_correlations],
            "incident": decision.incident.to_kube() if decision.incident else None,
        }
        if decision.incident is not None:
            patch["lastPlan"] = decision.incident.plan
        await self.runtime.kube.patch_policy_status(self.namespace, self.name, patch)
        return notes

    async def _long_run_spread(
        self, url: str, spec: CorrelationPolicySpec, current_from: float
    ) -> FloatArray:
        """The metrics' spread over the past week (:func:`ajan.services.window.spread_bounds`): one
        coarse range query per metric, kept until the hour turns or the queries change, and asked
        again at the next evaluation when Prometheus did not answer."""
        grid = spread_bounds(spec, current_from)
        key = (url, grid, tuple(m.query for m in spec.metrics))
        if self._spread is not None and self._spread[0] == key:
            return self._spread[1]
        # Its own span: the hourly week-long queries must not read as the window's.
        with tracing.span("ajan.spread", metrics=len(spec.metrics)) as span:
            spread, answered = await fetch_spread(self.runtime.source(url), spec, grid)
            span.set_attribute("answered", answered)
        if answered:
            self._spread = (key, spread)
        return spread

    async def _verdicts(self, now: datetime) -> tuple[FeedbackHistory | None, list[Note]]:
        """Operators' live verdicts on this policy's plans, and a note when Redis goes or comes back.

        Without Redis (none configured, or down) the decision is made as if no verdict were given:
        feedback only ever refines a decision, it is never needed for one.
        """
        store = self.runtime.feedback
        if store is None:
            return None, []
        try:
            history = await store.history(self.namespace, self.name, now)
        except FeedbackUnavailableError as err:
            self.log.warning("deciding without feedback: %s", err)
            first = not self._feedback_down
            self._feedback_down = True
            message = f"deciding without operators' feedback: {err}"
            return None, [Note("FeedbackUnavailable", message, warning=True)] if first else []
        notes = (
            [Note("FeedbackAvailable", "operators' feedback is read again")] if self._feedback_down else []
        )
        self._feedback_down = False
        metrics.record_feedback(self.namespace, self.name, history.true_positives, history.false_positives)
        return history, notes

    async def _degraded(
        self, status: dict[str, Any], reason: str, message: str, now: datetime, generation: int | None
    ) -> list[Note]:
        """Say why the evaluation could not be trusted; touch no plan and no incident."""
        conditions = list(status.get("conditions") or [])
        old = find_condition([Condition.model_validate(c) for c in conditions], "Degraded")
        conditions = set_condition(
            conditions, PolicyConditionType.READY, ConditionStatus.FALSE, reason, message, now, generation
        )
        conditions = set_condition(
            conditions, PolicyConditionType.DEGRADED, ConditionStatus.TRUE, reason, message, now, generation
        )
        await self.runtime.kube.patch_policy_status(
            self.namespace,
            self.name,
            {"observedGeneration": generation, "lastEvaluationTime": rfc3339(now), "conditions": conditions},
        )
        self.log.warning("evaluation degraded (%s): %s", reason, message)
        if old is None or old.status is not ConditionStatus.TRUE or old.reason != reason:
            return [Note(reason, f"no action: {message}", warning=True)]
        return []

    # --- plans -----------------------------------------------------------------------------------

    async def _execute(self, spec: CorrelationPolicySpec, now: datetime) -> None:
        """Move the policy's pending plans on (after a good evaluation only: never on bad data)."""
        if self.executor is None or self.runtime.rollouts is None:
            return
        selector = f"{LABEL_POLICY}={policy_label(self.name)}"
        plans = [
            p for p in await self.runtime.kube.list_plans(self.namespace, selector)
            if p.spec.policy_ref.name == self.name
        ]  # fmt: skip
        for note in await self.executor.progress(spec, plans, now):
            await self._post(note, plans)

    async def _post(self, note: ExecutionNote, plans: list[RemediationPlan]) -> None:
        """An execution's Event on its plan, and on the Rollout for an action taken."""
        client = self.runtime.rollouts
        assert client is not None
        kind = "Warning" if note.warning else "Normal"
        plan = next((p for p in plans if p.name == note.plan), None)
        # The plan is a model, the Rollout (not ajan's resource) a raw object: both as the Event's
        # involvedObject.
        objects = [] if plan is None else [(plan.api_version, plan.kind, plan.metadata)]
        if note.rollout is not None:
            rollout = note.rollout
            objects.append((rollout["apiVersion"], rollout["kind"], rollout["metadata"]))
        for api_version, obj_kind, meta in objects:
            ref = {
                "apiVersion": api_version, "kind": obj_kind, "name": meta["name"],
                "namespace": self.namespace, "uid": meta.get("uid"),
            }  # fmt: skip
            try:
                await client.post_event(self.namespace, ref, note.reason, note.message, kind)
            except Exception as err:  # an Event is a courtesy: never let it stop the work
                self.log.warning("could not post event %s on %s: %s", note.reason, meta["name"], err)

    async def _missing_target(self, spec: CorrelationPolicySpec) -> str | None:
        """Why the policy guards nothing (its Rollout does not exist), or None.

        Read at every evaluation: a policy must not look Ready while its target is gone, and the
        Rollout read here is also what the GitOps probe of a new plan looks at. Another error
        (the API server busy, a 5xx) is not the target's absence: the evaluation goes on.
        """
        self._rollout = None
        if self.runtime.rollouts is None:
            return None
        name = spec.target_ref.name
        try:
            self._rollout = await self.runtime.rollouts.get(self.namespace, name)
        except ApiException as err:
            if err.status == 404:
                return (
                    f"rollout {name} not found in namespace {self.namespace}: nothing to guard, no plan "
                    "is made until it exists (check spec.targetRef.name)"
                )
            self.log.warning("cannot read rollout %s: HTTP %s", name, err.status)
        return None

    def _gitops(self) -> GitOps | None:
        """Whether Argo CD or Flux syncs the target Rollout (None if unknown or unreadable)."""
        return gitops_of(self._rollout) if self._rollout is not None else None

    async def _carry_out(
        self,
        body: Mapping[str, Any],
        spec: CorrelationPolicySpec,
        decision: Decision,
        assessment: Assessment,
        now: datetime,
    ) -> tuple[Decision, list[Note]]:
        incident = decision.incident
        notes: list[Note] = []
        if decision.outcome in (Outcome.OPEN, Outcome.ESCALATE):
            assert incident is not None and decision.rung is not None
            rung = decision.rung
            gitops = self._gitops()
            if gitops is not None and incident.action is Action.ROLLBACK:
                # The next sync would undo a rollback of spec.template; abort changes only status.
                incident = incident.model_copy(
                    update={"action": Action.ABORT, "plan": plan_name(self.name, incident.id, Action.ABORT)}
                )
                decision = dataclasses.replace(decision, incident=incident)
            # The intent first: after a crash from here on, the status names the plan to (re)create.
            await self.runtime.kube.patch_policy_status(
                self.namespace, self.name, {"incident": incident.to_kube(), "lastPlan": incident.plan}
            )
            # Written: from here on it is the incident, also when a write below fails (the next
            # evaluation makes this plan, never a second incident's).
            self.incident = incident
            created = await self._ensure_plan(body, spec, incident, rung.severity, assessment, now, gitops)
            if created and spec.notification is not None:
                plan = await self.runtime.kube.get_plan(self.namespace, incident.plan)
                if plan is not None:
                    await notify(self.runtime.http, spec.notification.webhook_url, self.namespace, plan,
                                 "proposed", self.log)  # fmt: skip
            if created:
                metrics.PLANS.labels(action=incident.action.value, severity=rung.severity.value).inc()
                notes.append(
                    Note(
                        "PlanProposed",
                        f"{incident.plan}: {incident.action.value} ({rung.severity.value}), "
                        f"confidence {assessment.confidence:.2f}",
                    )
                )
            if decision.outcome is Outcome.OPEN:
                self._swept.add(incident.id)  # a new incident has no older plans
            notes += await self._sweep(incident, now, force=decision.outcome is Outcome.ESCALATE)
        elif decision.outcome in (Outcome.UPDATE, Outcome.RECOVERING):
            assert incident is not None
            severity = _severity_of(incident.action, spec.remediation.ladder)
            await self._ensure_plan(body, spec, incident, severity, assessment, now)
            notes += await self._sweep(incident, now)
            await self._refresh(incident, assessment, now)
        elif decision.outcome is Outcome.RESOLVE:
            assert self.incident is not None
            notes += await self._resolve(self.incident, now, spec.remediation.recovery_evaluations)
        return decision, notes

    async def _ensure_plan(
        self,
        body: Mapping[str, Any],
        spec: CorrelationPolicySpec,
        incident: Incident,
        severity: Severity,
        assessment: Assessment,
        now: datetime,
        gitops: GitOps | None = None,
    ) -> bool:
        """Make sure the incident's current plan exists and is Proposed; True if it was created now."""
        if incident.plan in self._plans:
            return False
        kube = self.runtime.kube
        plan = await kube.get_plan(self.namespace, incident.plan)
        created = False
        if plan is None:
            uid = (body.get("metadata") or {}).get("uid")
            proposal = new_plan(
                self.namespace, self.name, uid, spec, incident, severity,
                assessment.confidence, assessment.evidence, gitops,
            )  # fmt: skip
            plan, created = await kube.create_plan(self.namespace, proposal)
        status = plan.current
        if status.phase is None:
            confidence = round(assessment.confidence, 4)
            status = RemediationPlanStatus(
                phase=PlanPhase.PROPOSED,
                proposed_at=now,
                confidence=confidence,
                peak_confidence=confidence,
                last_evaluation_time=now,
                peak_shifts=peak_shifts_of(assessment_shifts(assessment)),
            )
            # Only the fields set here: a merge patch must not clear what another writer added.
            await kube.patch_plan_status(self.namespace, incident.plan, _patch(status))
            metrics.plan_entered(plan.spec.action.value, PlanPhase.PROPOSED.value)
        self._peaks[incident.plan] = status_shifts(status)
        evidence = status.latest_evidence if status.latest_evidence is not None else plan.spec.evidence
        anomalous = [a.metric for a in evidence.anomalies]
        self._plans[incident.plan] = _signature(anomalous, status.confidence or 0.0)
        return created

    async def _refresh(self, incident: Incident, assessment: Assessment, now: datetime) -> None:
        """Rewrite the plan's evidence when it changed enough to matter to a reader."""
        signature = _signature([a.metric for a in assessment.evidence.anomalies], assessment.confidence)
        peaks = self._peaks.get(incident.plan, {})
        grown = merge_shifts(peaks, assessment_shifts(assessment))
        # The strongest the alarm got is what a verdict on it is compared by: keep it as it grows.
        stronger = any(shift > PEAK_STEP * peaks.get(metric, 0.0) for metric, shift in grown.items())
        if self._plans.get(incident.plan) == signature and not stronger:
            return
        patch: dict[str, Any] = {
            "confidence": round(assessment.confidence, 4),
            "peakConfidence": round(incident.peak_confidence, 4),
            "lastEvaluationTime": rfc3339(now),
            "latestEvidence": assessment.evidence.to_kube(),
        }
        if stronger:
            patch["peakShifts"] = [shift.to_kube() for shift in peak_shifts_of(grown)]
        await self.runtime.kube.patch_plan_status(self.namespace, incident.plan, patch)
        self._plans[incident.plan] = signature
        self._peaks[incident.plan] = grown

    async def _incident_plans(self, incident: Incident) -> list[RemediationPlan]:
        selector = f"{LABEL_POLICY}={policy_label(self.name)},{LABEL_INCIDENT}={incident.id}"
        return await self.runtime.kube.list_plans(self.namespace, selector)

    async def _sweep(self, incident: Incident, now: datetime, *, force: bool = False) -> list[Note]:
        """Supersede the incident's older plans that still wait: on escalation, and once per incident
        and process (which catches an escalation interrupted by a restart)."""
        if incident.id in self._swept and not force:
            return []
        notes = []
        for plan in await self._incident_plans(incident):
            name = plan.name
            if name == incident.plan or plan.current.phase not in WAITING:
                continue
            condition = set_condition(
                [c.to_kube() for c in plan.current.conditions],
                "Superseded",
                ConditionStatus.TRUE,
                "Escalated",
                f"superseded by {incident.plan} ({incident.action.value})",
                now,
                None,
            )
            await self._settle_plan(plan, PlanPhase.SUPERSEDED, condition, now)
            notes.append(Note("PlanSuperseded", f"{name} superseded by {incident.plan}"))
        self._swept.add(incident.id)
        return notes

    async def _settle_plan(
        self, plan: RemediationPlan, phase: PlanPhase, conditions: list[dict[str, Any]], now: datetime
    ) -> None:
        """Write a plan's last phase (Superseded or Resolved) and when, and count the transition."""
        name = plan.name
        conditions = settle_transient(conditions, phase, now)
        with logs.bind(plan=name):
            await self.runtime.kube.patch_plan_status(
                self.namespace,
                name,
                {"phase": phase.value, "resolvedAt": rfc3339(now), "conditions": conditions},
            )
        metrics.plan_entered(plan.spec.action.value, phase.value)

    async def _resolve(self, incident: Incident, now: datetime, evaluations: int) -> list[Note]:
        """The metrics recovered: resolve every plan of the incident that is not settled otherwise."""
        notes = []
        for plan in await self._incident_plans(incident):
            name = plan.name
            if plan.current.phase not in RESOLVABLE:
                continue
            conditions = set_condition(
                [c.to_kube() for c in plan.current.conditions],
                "Resolved",
                ConditionStatus.TRUE,
                "MetricsRecovered",
                f"the confidence stayed below the recovery threshold for {evaluations} evaluations",
                now,
                None,
            )
            await self._settle_plan(plan, PlanPhase.RESOLVED, conditions, now)
            self._plans.pop(name, None)
            self._peaks.pop(name, None)
            notes.append(Note("PlanResolved", f"{name}: metrics recovered"))
        self._swept.discard(incident.id)
        return notes
