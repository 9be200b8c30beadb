"""Operator start and stop: kopf's settings, the clients every evaluation shares (in ``memo``), and
the HTTP servers in the operator's loop (the feedback API, the metrics server)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

import httpx
import kopf
import prometheus_client
from aiohttp import web
from kubernetes import client

from ajan import __version__, logs, tracing
from ajan.api import JwksSource, JwksVerifier, RateLimiter, feedback_submitter, make_app, serve
from ajan.api.authz import IdentityMapping, SubjectAccessReviewer
from ajan.clients.feedback_store import FeedbackStore
from ajan.clients.kubernetes import KubeStore, api_client
from ajan.clients.rollouts import RolloutClient
from ajan.services.runtime import OperatorConfig, Runtime
from ajan.services.severity import load_classifier

PREFIX = "aiops.ajan.dev"
#: Seconds a replica's peering keep-alive counts: how long a crash leaves policies unevaluated.
PEERING_LIFETIME_S: Final = 30


def kube_api_client() -> client.ApiClient:
    """A client for the cluster ajan runs in, else for the current kubeconfig context."""
    # In-cluster first, as kopf logs in: the watches and ajan's writes go out as one identity.
    api, _ = api_client(first="in-cluster")
    # Named in the API server's audit log (kopf's own requests say kopf/...), and in tests that
    # hold manifests/' role to what ajan does.
    api.user_agent = f"ajan/{__version__}"
    return api


@kopf.on.startup()
async def configure(
    *, settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger, **_: Any
) -> None:
    """Set kopf's settings explicitly and build the shared clients into ``memo.runtime``.

    The metrics server starts first and answers ``/readyz`` with 503 until everything else is up.
    """
    operator_config: OperatorConfig = memo.get("config") or OperatorConfig()
    # kopf retries a startup handler that failed: the server of the first try keeps serving.
    readiness: Readiness = memo.setdefault("readiness", Readiness())
    if operator_config.metrics_listen is not None and memo.get("metrics_server") is None:
        host, port = operator_config.metrics_listen
        app = make_metrics_app(prometheus_client.REGISTRY, readiness)
        # No access log: probes and scrapes every few seconds would be most of the log.
        memo.metrics_server = await serve(app, host, port, access_log=False)
        logger.info("metrics server listening on %s:%d (/metrics, /readyz)", host, port)
    # Under ajan's own API group, not kopf.zalando.org: the RBAC and a reader both see whose marks they are.
    settings.persistence.finalizer = f"{PREFIX}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=PREFIX, key="last-handled-configuration"
    )
    # The API server ends a watch after server_timeout; a little slack on the client detects a dead
    # connection without cutting healthy ones.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 30
    # Peering (--peering): a replica that crashed is presumed dead after this, and a standby takes
    # over; kopf renews it 5-10 s before it lapses. Keep-alives are not worth a log line each.
    settings.peering.lifetime = PEERING_LIFETIME_S
    settings.peering.stealth = True
    # Watching named namespaces, ajan is bound with RoleBindings there: listing CRDs and namespaces
    # (cluster-scoped) is forbidden, and kopf would retry it for a minute at every start. The named
    # namespaces and ajan's CRDs are then taken as they are at start, as kopf does after a refusal.
    # Cluster-wide, kopf watches CRDs (the ClusterRole grants it) and notices a reinstalled one.
    settings.scanning.disabled = operator_config.namespaced
    # Events are how a user of kubectl describe sees what ajan did; info and above.
    settings.posting.level = logging.INFO
    slots = operator_config.concurrency
    http = httpx.AsyncClient(
        # More connections than queries in flight: waiting for a pooled one would eat a query's deadline.
        limits=httpx.Limits(max_connections=4 * slots, max_keepalive_connections=2 * slots),
        timeout=operator_config.query_timeout_s,
    )
    feedback = (
        FeedbackStore.from_url(operator_config.redis_url, ttl_s=operator_config.feedback_ttl_s)
        if operator_config.redis_url
        else None
    )
    # LiteRT prints its own lines to stderr, past Python's logging: keep JSON logs one object a line.
    with logs.native_output(logging.getLogger("ajan.severity")):
        classifier, fallback = load_classifier()
    if fallback is not None:
        logger.warning("severity model unusable, plans show rule-based severities: %s", fallback)
    memo.runtime = Runtime(
        operator_config,
        http,
        KubeStore(kube_api_client(), max_workers=slots),
        rollouts=RolloutClient(kube_api_client(), max_workers=max(2, slots // 2)),
        feedback=feedback,
        classifier=classifier,
    )
    if feedback is not None and not await feedback.ping():
        # Not fatal: decisions are made without feedback until Redis answers.
        logger.warning(
            "redis at %s does not answer (yet): deciding without feedback", operator_config.redis_url
        )
    if operator_config.feedback_listen is not None:
        if feedback is None:
            raise kopf.PermanentError("--feedback-listen needs --redis-url: the API stores verdicts in Redis")
        await _start_feedback_api(memo, operator_config, feedback, memo.runtime, logger)
    logger.info(
        "ajan started: default Prometheus %s, concurrency %d, feedback %s",
        operator_config.default_prometheus_url or "(none)",
        slots,
        "in redis" if feedback is not None else "off (no --redis-url)",
    )
    readiness.ready = True


class Readiness:
    """Whether the operator finished starting: what ``/readyz`` answers."""

    def __init__(self) -> None:
        self.ready = False


def make_metrics_app(registry: prometheus_client.CollectorRegistry, readiness: Readiness) -> web.Application:
    """``/metrics`` (``registry`` in Prometheus' text format) and ``/readyz`` (200 once ``readiness``
    says so, 503 before): the metrics server, apart from the feedback API so that it needs no Redis."""

    async def get_metrics(_: web.Request) -> web.Response:
        body = prometheus_client.generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": prometheus_client.CONTENT_TYPE_LATEST})

    async def readyz(_: web.Request) -> web.Response:
        if readiness.ready:
            return web.json_response({"status": "ready"})
        return web.json_response({"status": "starting"}, status=503)

    app = web.Application()
    app.router.add_get("/metrics", get_metrics)
    app.router.add_get("/readyz", readyz)
    return app


async def _start_feedback_api(
    memo: kopf.Memo, config: OperatorConfig, store: FeedbackStore, runtime: Runtime, logger: kopf.Logger
) -> None:
    """Serve the feedback API and /metrics in the operator's own event loop."""
    assert config.feedback_listen is not None
    source = (
        JwksSource.from_url(config.feedback_jwks_url)
        if config.feedback_jwks_url
        else JwksSource.from_kube_configuration(kube_api_client().configuration)
    )
    verifier = JwksVerifier(source, audience=config.feedback_audience, issuer=config.feedback_issuer)
    identities = IdentityMapping(
        kubernetes_issuer=not config.feedback_jwks_url,
        username_claim=config.feedback_username_claim,
        username_prefix=config.feedback_username_prefix,
        groups_claim=config.feedback_groups_claim or None,
        groups_prefix=config.feedback_groups_prefix,
    )
    # Who may judge a plan is the API server's to say: the right to patch it (ajan.api.authz).
    authorizer = SubjectAccessReviewer(kube_api_client())
    app = make_app(
        submit=feedback_submitter(runtime.kube, store),
        verifier=verifier,
        authorizer=authorizer,
        limiter=RateLimiter(),
        registry=prometheus_client.REGISTRY,
        identities=identities,
    )
    host, port = config.feedback_listen
    memo.feedback_api = await serve(app, host, port)
    memo.feedback_verifier = verifier
    memo.feedback_authorizer = authorizer
    logger.info("feedback API listening on %s:%d (audience %s)", host, port, config.feedback_audience)


@kopf.on.cleanup()
async def close(*, memo: kopf.Memo, **_: Any) -> None:
    """Stop the HTTP servers, close the shared clients, and send the spans still buffered."""
    for server in ("metrics_server", "feedback_api"):
        runner = memo.get(server)
        if runner is not None:
            await runner.cleanup()
    if memo.get("feedback_api") is not None:
        await memo.feedback_verifier.aclose()
        memo.feedback_authorizer.close()
    runtime: Runtime | None = memo.get("runtime")
    if runtime is not None:
        await runtime.close()
    # Blocking (an HTTP export): in a thread, so the loop's other shutdown work goes on meanwhile.
    await asyncio.to_thread(tracing.shutdown)
