"""The feedback API on real parts: its HTTP server, a JWKS server, Redis, the kube-apiserver.

`running_api` starts, in the running event loop, a JWKS server publishing keys generated here, the
API (with a real `FeedbackStore` on the test's Redis and a real `KubeStore` on the test control
plane) on a free loopback port, and an httpx client for it; everything is stopped on exit.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from kubernetes import client
from prometheus_client import CollectorRegistry

from ajan.api import (
    IdentityMapping,
    JwksSource,
    JwksVerifier,
    RateLimiter,
    SubjectAccessReviewer,
    feedback_submitter,
    make_app,
    serve,
)
from ajan.clients.feedback_store import FeedbackStore
from ajan.clients.kubernetes import KubeStore

AUDIENCE: Final = "ajan-feedback"
ISSUER: Final = "https://idp.example.test"
POLICY: Final = "p"
#: The test's tokens come from an identity provider (its JWKS server), not from the cluster.
IDENTITY_PROVIDER: Final = IdentityMapping(kubernetes_issuer=False)
TTL_S: Final = 3600
GROUP, VERSION, PLURAL = "aiops.ajan.dev", "v1alpha1", "remediationplans"


class FakeClock:
    """Monotonic seconds that move only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class SigningKey:
    """A key pair of the test's identity provider, published under ``kid``."""

    kid: str
    alg: str
    private: Any

    @classmethod
    def ec(cls, kid: str | None = None) -> SigningKey:
        return cls(kid or uuid.uuid4().hex[:12], "ES256", ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def rsa(cls, kid: str | None = None) -> SigningKey:
        return cls(kid or uuid.uuid4().hex[:12], "RS256", rsa.generate_private_key(65537, 2048))

    def jwk(self) -> dict[str, Any]:
        algorithm = ECAlgorithm if self.alg.startswith("ES") else RSAAlgorithm
        data: dict[str, Any] = algorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {**data, "kid": self.kid, "alg": self.alg, "use": "sig"}

    def public_pem(self) -> bytes:
        return bytes(
            self.private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def token(
        self,
        claims: dict[str, Any] | None = None,
        *,
        kid: str | None = None,
        extra: dict[str, Any] | None = None,
        **overrides: Any,
    ) -> str:
        """A signed JWT: ``claims`` as given, or the standard ones with ``overrides``, plus ``extra``."""
        payload = {**(claims if claims is not None else standard_claims(**overrides)), **(extra or {})}
        return jwt.encode(payload, self.private, algorithm=self.alg, headers={"kid": kid or self.kid})


def standard_claims(
    sub: str = "alice@example.test", *, aud: str = AUDIENCE, iss: str = ISSUER, lifetime_s: float = 600
) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": sub, "aud": aud, "iss": iss, "iat": now, "exp": now + int(lifetime_s)}


def unsigned_token(header: dict[str, Any], claims: dict[str, Any], secret: bytes | None = None) -> str:
    """A JWT built by hand: ``alg: none`` (no secret) or HMAC-SHA256 with ``secret`` as the key."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    if secret is None:
        return signing_input + "."
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


@dataclass
class JwksServer:
    """A real HTTP server publishing ``published`` as a JWKS; counts the requests it answers."""

    published: list[SigningKey] = field(default_factory=list)
    requests: int = 0
    runner: web.AppRunner | None = None
    url: str = ""

    async def start(self) -> None:
        async def jwks(_: web.Request) -> web.Response:
            self.requests += 1
            return web.json_response({"keys": [k.jwk() for k in self.published]})

        app = web.Application()
        app.router.add_get("/jwks", jwks)
        self.runner = web.AppRunner(app, handle_signals=False)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}/jwks"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


@dataclass
class Api:
    """A running feedback API and what it stands on."""

    http: httpx.AsyncClient
    jwks: JwksServer
    verifier: JwksVerifier
    store: FeedbackStore
    kube: KubeStore
    registry: CollectorRegistry
    clock: FakeClock

    async def post(self, body: Any, token: str | None, *, raw: bytes | None = None) -> httpx.Response:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        if raw is not None:
            return await self.http.post("/v1/feedback", content=raw, headers=headers)
        return await self.http.post("/v1/feedback", json=body, headers=headers)

    def metric(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)


@asynccontextmanager
async def running_api(
    redis_url: str,
    api_client: client.ApiClient,
    keys: list[SigningKey],
    *,
    limiter: RateLimiter | None = None,
    clock: FakeClock | None = None,
    issuer: str | None = ISSUER,
    source: Callable[[str], JwksSource] = JwksSource.from_url,
    identities: IdentityMapping = IDENTITY_PROVIDER,
    authorizer_api: client.ApiClient | None = None,
) -> AsyncIterator[Api]:
    """The API serving on a free loopback port, its JWKS server publishing ``keys``.

    Callers are authorized by SubjectAccessReviews against the test's kube-apiserver (as the
    operator's are): a verdict needs a RoleBinding that lets its user patch the plan (`grant`).
    ``authorizer_api``: the client the reviews go through (default: one like ``api_client``).
    """
    clock = clock or FakeClock()
    jwks = JwksServer(published=list(keys))
    await jwks.start()
    store = FeedbackStore.from_url(redis_url, ttl_s=TTL_S)
    kube = KubeStore(api_client, max_workers=2)
    verifier = JwksVerifier(source(jwks.url), audience=AUDIENCE, issuer=issuer, clock=clock)
    registry = CollectorRegistry()
    authorizer = SubjectAccessReviewer(authorizer_api or client.ApiClient(api_client.configuration))
    app = make_app(
        submit=feedback_submitter(kube, store),
        verifier=verifier,
        authorizer=authorizer,
        limiter=RateLimiter(rate_per_s=100.0, burst=100, clock=clock) if limiter is None else limiter,
        registry=registry,
        identities=identities,
    )
    runner = await serve(app, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30.0) as http:
            yield Api(http, jwks, verifier, store, kube, registry, clock)
    finally:
        await runner.cleanup()
        await verifier.aclose()
        await jwks.stop()
        await store.close()
        kube.close()
        authorizer.close()


def grant(
    api: client.ApiClient, namespace: str, subject: dict[str, str], verbs: tuple[str, ...] = ("patch",)
) -> None:
    """A Role in ``namespace`` allowing ``verbs`` on remediationplans, bound to ``subject`` (an RBAC
    subject: ``{"kind": "User", "name": ...}``, a Group, or a ServiceAccount with its namespace)."""
    rbac = client.RbacAuthorizationV1Api(api)
    name = f"judge-{uuid.uuid4().hex[:8]}"
    rbac.create_namespaced_role(namespace, {
        "metadata": {"name": name},
        "rules": [{"apiGroups": [GROUP], "resources": [PLURAL], "verbs": list(verbs)}],
    })  # fmt: skip
    if subject["kind"] != "ServiceAccount":
        subject = {**subject, "apiGroup": "rbac.authorization.k8s.io"}
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [subject],
    })  # fmt: skip


def plan_body(name: str, policy: str = POLICY) -> dict[str, Any]:
    """A RemediationPlan the CRD accepts (without evidence: its anomaly signature is ``-``)."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RemediationPlan",
        "metadata": {"name": name, "labels": {"aiops.ajan.dev/policy": policy}},
        "spec": {
            "policyRef": {"name": policy}, "targetRef": {"name": "checkout"}, "action": "pause",
            "severity": "warning", "confidence": 0.8, "mode": "auto",
        },
    }  # fmt: skip


def create_plan(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    plan: dict[str, Any] = client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, plan_body(name)
    )
    return plan


def get_plan(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    plan: dict[str, Any] = client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name
    )
    return plan
