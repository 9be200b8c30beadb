"""The feedback API: people and outside systems mark a RemediationPlan true- or false-positive.

Routes (see docs/feedback-api.md):

* ``POST /v1/feedback``: ``{"namespace", "plan", "verdict", "comment"?}`` with a bearer JWT;
  201 with the stored record. Errors are ``{"error": code, "detail": text}``: 401 (token),
  429 (rate limit, ``Retry-After``), 422 (body), 403 (the caller may not patch that plan),
  404 (no such plan), 503 (Redis or the API server's authorization down, ``Retry-After``).
* ``GET /metrics``: Prometheus exposition of the registry given to `make_app`.
* ``GET /healthz``: 200 while the server answers.

A request is checked in the order that costs the least to refuse: token, rate limit (by the token's
user, so one noisy client cannot starve the others), body, authorization (a LocalSubjectAccessReview:
may this user ``patch`` that plan? see `ajan.api.authz`), then the plan and Redis. Authorization
comes before the plan is looked up, so a caller without the right cannot learn which plans exist.
Every feedback attempt, whatever its outcome, writes one JSON line to the ``ajan.audit`` logger.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any, Final, Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, ConfigDict, StrictStr, StringConstraints, ValidationError

from ajan.api.auth import AuthError, KeysUnavailableError, TokenVerifier
from ajan.api.authz import (
    AuthorizationUnavailableError,
    Authorizer,
    ForbiddenError,
    Identity,
    IdentityMapping,
)
from ajan.api.ratelimit import RateLimiter, retry_after_header
from ajan.clients.feedback_store import FeedbackRecord, FeedbackStore, FeedbackUnavailableError
from ajan.clients.kubernetes import KubeStore
from ajan.metrics import REJECT_REASONS as REJECT_REASONS  # where it was before issue 6
from ajan.metrics import FeedbackMetrics, feedback_metrics
from ajan.models import Verdict
from ajan.models.common import DNS_LABEL_PATTERN, ObjectName, rfc3339
from ajan.services.feedback import PlanNotFoundError, submit_feedback

log = logging.getLogger(__name__)
audit_log = logging.getLogger("ajan.audit")

#: Large enough for a 4096-character comment even if every character is a JSON ``\\uXXXX`` escape.
MAX_BODY_BYTES: Final = 64 * 1024
#: When a client should try again after Redis was unreachable: Redis restarts in seconds.
UNAVAILABLE_RETRY_AFTER_S: Final = 5
MAX_COMMENT_CHARS: Final = 4096
#: A subject longer than this does not fit the plan's ``spec.feedback.by``.
MAX_SUBJECT_CHARS: Final = 253
#: Audit fields copied from an invalid body are cut to this length: a log line stays a line.
AUDIT_FIELD_CHARS: Final = 253

NamespaceName = Annotated[
    StrictStr, StringConstraints(pattern=DNS_LABEL_PATTERN, min_length=1, max_length=63)
]


class FeedbackRequest(BaseModel):
    """The body of ``POST /v1/feedback``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    namespace: NamespaceName
    """The plan's namespace (a DNS label)."""

    plan: ObjectName
    """The RemediationPlan's name."""

    verdict: Verdict
    """true-positive: a real problem; false-positive: a false alarm."""

    comment: Annotated[StrictStr, StringConstraints(max_length=MAX_COMMENT_CHARS)] | None = None
    """Free text: what really happened."""


class Submit(Protocol):
    """Records a verdict (`ajan.services.feedback.submit_feedback` with its clients bound)."""

    def __call__(
        self,
        namespace: str,
        plan_name: str,
        verdict: Verdict,
        at: datetime,
        *,
        by: str | None = None,
        comment: str | None = None,
    ) -> Awaitable[FeedbackRecord]:
        """Store the verdict; raises `PlanNotFoundError` or `FeedbackUnavailableError`."""
        ...


def feedback_submitter(kube: KubeStore, store: FeedbackStore) -> Submit:
    """`submit_feedback` on the operator's own Kubernetes and Redis clients."""
    return partial(submit_feedback, kube, store)


def _error(status: int, error: str, detail: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response({"error": error, "detail": detail}, status=status, headers=headers)


def _readable(err: ValidationError) -> str:
    """Pydantic's errors as ``field: message; ...`` (never echoing the input)."""
    parts = []
    for e in err.errors(include_url=False, include_input=False):
        where = ".".join(str(p) for p in e["loc"]) or "body"
        parts.append(f"{where}: {e['msg']}")
    return "; ".join(parts)


def _bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("missing", "an 'Authorization: Bearer <token>' header is required")
    return token.strip()


def _clip(value: Any) -> str | None:
    return value[:AUDIT_FIELD_CHARS] if isinstance(value, str) else None


class _Attempt:
    """What the audit line of one request says; filled in as the request is handled."""

    def __init__(self, request: web.Request, at: datetime) -> None:
        self.fields: dict[str, Any] = {
            "time": rfc3339(at),
            "event": "feedback",
            "subject": None,
            "client": request.remote,
            "namespace": None,
            "plan": None,
            "verdict": None,
            "outcome": None,
            "status": None,
            "reason": None,
        }

    def body(self, raw: bytes) -> None:
        """Copy what can be read of an invalid body, so that the audit says what was attempted."""
        try:
            data = json.loads(raw)
        except ValueError:
            return
        if isinstance(data, dict):
            for name in ("namespace", "plan", "verdict"):
                self.fields[name] = _clip(data.get(name))

    def done(self, response: web.Response, reason: str | None, detail: str | None = None) -> web.Response:
        self.fields["status"] = response.status
        self.fields["outcome"] = "accepted" if response.status < 300 else "rejected"
        self.fields["reason"] = reason
        if detail is not None:
            self.fields["detail"] = detail
        audit_log.info(json.dumps(self.fields, sort_keys=True))
        return response


def make_app(
    *,
    submit: Submit,
    verifier: TokenVerifier,
    authorizer: Authorizer,
    limiter: RateLimiter,
    registry: CollectorRegistry,
    identities: IdentityMapping,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    unavailable_retry_after_s: int = UNAVAILABLE_RETRY_AFTER_S,
) -> web.Application:
    """The feedback API as an aiohttp application (start it with `serve`).

    Parameters
    ----------
    submit
        Records a verdict: `feedback_submitter` of the operator's KubeStore and FeedbackStore.
    verifier
        Checks bearer tokens (`ajan.api.auth.JwksVerifier`).
    authorizer
        Decides whether the caller may judge the plan (`ajan.api.authz.SubjectAccessReviewer`).
    limiter
        Per-user rate limit.
    registry
        Where the API's metrics are registered and what ``/metrics`` exposes.
    identities
        How a verified token's claims become the user and groups that are authorized, and that
        are recorded as who gave the verdict (``by``): a service account for the cluster's own
        tokens, or an identity provider's user and groups (`ajan.api.authz.IdentityMapping`).
    clock
        The time of a verdict (``at``) and of audit lines.
    """
    # Shared with the plan handler, which counts verdicts set with kubectl in the same series.
    endpoint = _FeedbackEndpoint(
        submit, verifier, authorizer, limiter, identities, clock, unavailable_retry_after_s,
        feedback_metrics(registry),
    )  # fmt: skip

    async def get_metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.router.add_post("/v1/feedback", endpoint.post)
    app.router.add_get("/metrics", get_metrics)
    app.router.add_get("/healthz", healthz)
    return app


class _RejectedError(Exception):
    """A request refused at one stage of `_FeedbackEndpoint`: its response, and what the metrics
    (``reason``) and the audit line (``detail``) say."""

    def __init__(self, reason: str, response: web.Response, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.response = response
        self.detail = detail


@dataclass(frozen=True)
class _FeedbackEndpoint:
    """``POST /v1/feedback``: authenticate, rate-limit, validate, authorize, store, in that order;
    a stage that refuses raises `_RejectedError`, answered, counted and audited in one place (`post`)."""

    submit: Submit
    verifier: TokenVerifier
    authorizer: Authorizer
    limiter: RateLimiter
    identities: IdentityMapping
    clock: Callable[[], datetime]
    retry_after_s: int
    metrics: FeedbackMetrics

    async def post(self, request: web.Request) -> web.Response:
        """The request's answer; every one is timed and audited."""
        started = time.perf_counter()
        attempt = _Attempt(request, self.clock())
        try:
            return await self._handle(request, attempt)
        except _RejectedError as rejected:
            self.metrics.rejected.labels(reason=rejected.reason).inc()
            return attempt.done(rejected.response, rejected.reason, rejected.detail)
        finally:
            self.metrics.duration.observe(time.perf_counter() - started)

    async def _handle(self, request: web.Request, attempt: _Attempt) -> web.Response:
        identity = await self._identity(request)
        subject = identity.user
        attempt.fields["subject"] = subject
        self._rate_limit(subject)
        body = await self._body(request, attempt)
        attempt.fields.update(namespace=body.namespace, plan=body.plan, verdict=body.verdict.value)
        await self._authorize(identity, body)
        record = await self._store(body, subject)
        self.metrics.accepted.labels(verdict=body.verdict.value).inc()
        stored = asdict(record)
        stored.update(verdict=record.verdict.value, at=rfc3339(record.at))
        return attempt.done(web.json_response(stored, status=201), None)

    def _unavailable(self, message: str, err: Exception) -> _RejectedError:
        headers = {"Retry-After": str(self.retry_after_s)}
        return _RejectedError("unavailable", _error(503, "unavailable", message, headers), str(err))

    async def _identity(self, request: web.Request) -> Identity:
        try:
            identity = self.identities.identity(await self.verifier.verify(_bearer(request)))
            if not 0 < len(identity.user) <= MAX_SUBJECT_CHARS:
                raise AuthError("missing-claim", f"the user name is longer than {MAX_SUBJECT_CHARS}")
        except AuthError as err:
            challenge = f'Bearer error="invalid_token", error_description="{err.reason}"'
            response = _error(401, "invalid_token", err.detail, {"WWW-Authenticate": challenge})
            raise _RejectedError("unauthenticated", response, f"{err.reason}: {err.detail}") from err
        except ForbiddenError as err:
            raise _RejectedError("forbidden", _error(403, "forbidden", err.detail), err.detail) from err
        except KeysUnavailableError as err:
            log.warning("cannot verify tokens: %s", err)
            raise self._unavailable("the token issuer's keys cannot be fetched", err) from err
        return identity

    def _rate_limit(self, subject: str) -> None:
        wait = self.limiter.acquire(subject)
        if wait > 0:
            retry = retry_after_header(wait)
            response = _error(
                429, "rate_limited", f"too many requests; retry in {retry} s", {"Retry-After": retry}
            )
            raise _RejectedError("rate-limited", response, f"retry after {wait:.1f} s")

    async def _body(self, request: web.Request, attempt: _Attempt) -> FeedbackRequest:
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge as err:
            response = _error(413, "invalid_request", f"the body is larger than {MAX_BODY_BYTES} bytes")
            raise _RejectedError("invalid", response, "body too large") from err
        try:
            return FeedbackRequest.model_validate_json(raw)
        except ValidationError as err:
            attempt.body(raw)
            detail = _readable(err)
            raise _RejectedError("invalid", _error(422, "invalid_request", detail), detail) from err

    async def _authorize(self, identity: Identity, body: FeedbackRequest) -> None:
        try:
            await self.authorizer.check(identity, body.namespace, body.plan)
        except ForbiddenError as err:
            raise _RejectedError("forbidden", _error(403, "forbidden", err.detail), err.detail) from err
        except AuthorizationUnavailableError as err:
            log.warning("cannot authorize a verdict: %s", err)
            message = "the API server cannot say whether you may; nothing was stored"
            raise self._unavailable(message, err) from err

    async def _store(self, body: FeedbackRequest, subject: str) -> FeedbackRecord:
        try:
            return await self.submit(
                body.namespace, body.plan, body.verdict, self.clock(), by=subject, comment=body.comment
            )
        except PlanNotFoundError as err:
            raise _RejectedError("not-found", _error(404, "not_found", str(err)), str(err)) from err
        except FeedbackUnavailableError as err:
            log.warning("feedback not stored: %s", err)
            raise self._unavailable("the feedback store is unavailable; nothing was stored", err) from err
        except Exception as err:
            # The Kubernetes API refused or failed (Redis may hold the verdict already; the operator
            # re-reads it from there). The client may retry: writing the same verdict twice is harmless.
            log.exception("feedback on %s/%s failed", body.namespace, body.plan)
            response = _error(500, "internal", "the verdict could not be recorded; retrying is safe")
            raise _RejectedError("error", response, f"{type(err).__name__}: {err}") from err


async def serve(
    app: web.Application,
    host: str,
    port: int,
    *,
    shutdown_timeout_s: float = 5.0,
    access_log: bool = True,
) -> web.AppRunner:
    """Start serving ``app`` on ``host:port`` in the running event loop; stop with ``runner.cleanup()``.

    ``port`` 0 picks a free port: ``runner.addresses[0][1]`` is the one bound. Requests in flight get
    ``shutdown_timeout_s`` to finish at cleanup (short: an operator shutting down should not linger).
    ``access_log`` False: no line per request (probes and scrapes would be most of the log).
    """
    quiet: dict[str, Any] = {} if access_log else {"access_log": None}
    runner = web.AppRunner(app, shutdown_timeout=shutdown_timeout_s, handle_signals=False, **quiet)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    log.info("HTTP server listening on %s", runner.addresses)
    return runner
