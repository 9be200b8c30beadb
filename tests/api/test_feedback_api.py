"""The feedback API over HTTP, on a real Redis, a real kube-apiserver and a real JWKS server.

Each test creates its RemediationPlan in a fresh namespace with the admin client, starts the API on
a free loopback port (`api.harness.running_api`) and talks to it with httpx.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest
from kubernetes import client

from ajan.api import IdentityMapping, RateLimiter
from ajan.models import Verdict
from api.harness import (
    AUDIENCE,
    POLICY,
    TTL_S,
    FakeClock,
    SigningKey,
    create_plan,
    get_plan,
    grant,
    running_api,
    standard_claims,
    unsigned_token,
)
from support.kube import Kube
from support.redis import RedisServer

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@pytest.fixture
def api_client(kube: Kube) -> client.ApiClient:
    """An admin client of the API's own (`KubeStore.close` closes it)."""
    return kube.api_client()


@pytest.fixture(autouse=True)
def judges(admin_api: client.ApiClient, namespace: str) -> None:
    """The users these tests post as may patch the namespace's plans (tests/api/test_authorization.py
    is about who may not)."""
    for user in ("alice@example.test", "alice", "bob"):
        grant(admin_api, namespace, {"kind": "User", "name": user})


def feedback(
    namespace: str, plan: str = "plan-1", verdict: str = "false-positive", **extra: Any
) -> dict[str, Any]:
    return {"namespace": namespace, "plan": plan, "verdict": verdict, **extra}


def test_a_valid_token_stores_the_verdict_in_redis_and_on_the_plan(
    redis_server: RedisServer, admin_api: client.ApiClient, api_client: client.ApiClient, namespace: str
) -> None:
    create_plan(admin_api, namespace, "plan-1")
    key = SigningKey.rsa()

    async def scenario() -> tuple[Any, ...]:
        async with running_api(redis_server.url, api_client, [key]) as api:
            body = feedback(namespace, comment="the nightly batch job")
            response = await api.post(body, key.token(sub="alice@example.test"))
            stored = await api.store.get(namespace, POLICY, "plan-1")
            ttl = await api.store.ttl(namespace, POLICY, "plan-1")
            metrics = (await api.http.get("/metrics")).text
            return response, stored, ttl, metrics

    response, stored, ttl, metrics = run(scenario())

    assert response.status_code == 201, response.text
    answer = response.json()
    assert answer["namespace"] == namespace
    assert answer["plan"] == "plan-1"
    assert answer["policy"] == POLICY
    assert answer["verdict"] == "false-positive"
    assert answer["by"] == "alice@example.test"
    assert stored is not None
    assert stored.verdict is Verdict.FALSE_POSITIVE
    assert stored.by == "alice@example.test"
    assert stored.comment == "the nightly batch job"
    assert TTL_S - 60 <= ttl <= TTL_S
    spec_feedback = get_plan(admin_api, namespace, "plan-1")["spec"]["feedback"]
    assert spec_feedback["verdict"] == "false-positive"
    assert spec_feedback["by"] == "alice@example.test"
    assert spec_feedback["comment"] == "the nightly batch job"
    assert spec_feedback["at"].endswith("Z")
    assert 'aiops_feedback_total{verdict="false-positive"} 1.0' in metrics.splitlines()
    assert 'aiops_feedback_total{verdict="true-positive"} 0.0' in metrics.splitlines()


def _tokens(good: SigningKey, other: SigningKey) -> dict[str, Callable[[], str]]:
    """Tokens that must all be refused, by name: each lacks exactly one thing a valid token has."""
    public_pem = good.public_pem()
    return {
        # Signed by another key under the published kid.
        "bad-signature": lambda: other.token(kid=good.kid),
        "expired": lambda: good.token(lifetime_s=-3600),
        "wrong-audience": lambda: good.token(aud="someone-else"),
        "wrong-issuer": lambda: good.token(iss="https://evil.example.test"),
        # Never published, so not found after the one refetch either.
        "unknown-kid": lambda: other.token(),
        "no-exp": lambda: good.token({k: v for k, v in standard_claims().items() if k != "exp"}),
        "alg-none": lambda: unsigned_token({"alg": "none", "typ": "JWT", "kid": good.kid}, standard_claims()),
        # Algorithm confusion: HMAC with the public key (which everyone has) as the secret.
        "hs256-with-public-key": lambda: unsigned_token(
            {"alg": "HS256", "typ": "JWT", "kid": good.kid}, standard_claims(), secret=public_pem
        ),
        "not-a-jwt": lambda: "not-a-jwt",
    }


#: Why each is refused (the ``error_description`` of the challenge): refused for the right reason.
REASONS = {
    "bad-signature": "signature",
    "expired": "expired",
    "wrong-audience": "audience",
    "wrong-issuer": "issuer",
    "unknown-kid": "unknown-key",
    "no-exp": "missing-claim",
    "alg-none": "algorithm",
    "hs256-with-public-key": "algorithm",
    "not-a-jwt": "malformed",
    "no-header": "missing",
}


@pytest.mark.parametrize("kind", list(REASONS))
def test_an_invalid_token_is_refused_and_nothing_is_stored(
    kind: str,
    redis_server: RedisServer,
    admin_api: client.ApiClient,
    api_client: client.ApiClient,
    namespace: str,
) -> None:
    create_plan(admin_api, namespace, "plan-1")
    good = SigningKey.ec()
    token = None if kind == "no-header" else _tokens(good, SigningKey.ec())[kind]()

    async def scenario() -> tuple[Any, ...]:
        async with running_api(redis_server.url, api_client, [good]) as api:
            await api.verifier.refresh()  # the API has been up a while: its keys are fetched...
            api.clock.advance(31)  # ...long enough ago that an unknown kid may refetch them
            response = await api.post(feedback(namespace), token)
            stored = await api.store.get(namespace, POLICY, "plan-1")
            rejected = api.metric("aiops_feedback_rejected_total", reason="unauthenticated")
            return response, stored, rejected, api.jwks.requests

    response, stored, rejected, jwks_requests = run(scenario())

    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"] == (
        f'Bearer error="invalid_token", error_description="{REASONS[kind]}"'
    )
    assert response.json()["error"] == "invalid_token"
    assert stored is None
    assert "feedback" not in get_plan(admin_api, namespace, "plan-1")["spec"]
    assert rejected == 1.0
    # Only an unknown kid refetches the keys (once); no other refusal needs a fetch.
    assert jwks_requests == (2 if kind == "unknown-kid" else 1)


def test_a_valid_token_with_the_same_setup_is_accepted(
    redis_server: RedisServer, admin_api: client.ApiClient, api_client: client.ApiClient, namespace: str
) -> None:
    """The control of the refusals above: the same key and claims, unaltered, get through."""
    create_plan(admin_api, namespace, "plan-1")
    good = SigningKey.ec()

    async def scenario() -> Any:
        async with running_api(redis_server.url, api_client, [good]) as api:
            return await api.post(feedback(namespace), good.token())

    assert run(scenario()).status_code == 201


def test_key_rotation_refetches_once_per_interval_and_drops_withdrawn_keys(
    redis_server: RedisServer, admin_api: client.ApiClient, api_client: client.ApiClient, namespace: str
) -> None:
    create_plan(admin_api, namespace, "plan-1")
    old, new, stranger = SigningKey.rsa("old"), SigningKey.ec("new"), SigningKey.ec("stranger")
    clock = FakeClock()

    async def scenario() -> list[tuple[str, int, int]]:
        steps: list[tuple[str, int, int]] = []

        async def step(name: str, key: SigningKey) -> None:
            response = await api.post(feedback(namespace), key.token())
            steps.append((name, response.status_code, api.jwks.requests))

        async with running_api(redis_server.url, api_client, [old], clock=clock) as api:
            await step("old key, first fetch", old)
            clock.advance(31)
            api.jwks.published = [old, new]  # the issuer publishes its next key
            await step("new key, one refetch", new)
            clock.advance(1)
            await step("unknown kid within the interval: no refetch", stranger)
            await step("old key still published", old)
            await step("new key known now", new)
            clock.advance(31)
            api.jwks.published = [new]  # the old key is withdrawn
            await step("unknown kid after the interval: refetch", stranger)
            await step("withdrawn key", old)
            await step("new key after withdrawal", new)
        return steps

    assert run(scenario()) == [
        ("old key, first fetch", 201, 1),
        ("new key, one refetch", 201, 2),
        ("unknown kid within the interval: no refetch", 401, 2),
        ("old key still published", 201, 2),
        ("new key known now", 201, 2),
        ("unknown kid after the interval: refetch", 401, 3),
        ("withdrawn key", 401, 3),
        ("new key after withdrawal", 201, 3),
    ]


def test_concurrent_tokens_with_a_new_kid_cause_one_refetch(
    redis_server: RedisServer, admin_api: client.ApiClient, api_client: client.ApiClient, namespace: str
) -> None:
    create_plan(admin_api, namespace, "plan-1")
    old, new = SigningKey.ec("old"), SigningKey.ec("new")

    async def scenario() -> tuple[list[int], int]:
        async with running_api(redis_server.url, api_client, [old]) as api:
            await api.verifier.refresh()
            api.clock.advance(31)
            api.jwks.published = [old, new]
            responses = await asyncio.gather(*(api.post(feedback(namespace), new.token()) for _ in range(5)))
            return [r.status_code for r in responses], api.jwks.requests

    statuses, requests = run(scenario())
    assert statuses == [201] * 5
    assert requests == 2


def test_unreachable_jwks_is_503_not_401(
    redis_server: RedisServer, admin_api: client.ApiClient, api_client: client.ApiClient, namespace: str
) -> None:
    create_plan(admin_api, namespace, "plan-1")
    key = SigningKey.ec()

    async def scenario() -> Any:
        async with running_api(redis_server.url, api_client, [key]) as api:
            await api.jwks.stop()
            return await api.post(feedback(namespace), key.token())

    response = run(scenario())
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "5"


def test_rate_limit_per_subject_with_retry_after(
    redis_server: RedisServer, admin_api: client.ApiClient, api_client: client.ApiClient, namespace: str
) -> None:
    create_plan(admin_api, namespace, "plan-1")
    key = SigningKey.ec()
    clock = FakeClock()
    limiter = RateLimiter(rate_per_s=0.25, burst=2, clock=clock)

    async def scenario() -> list[tuple[int, str | None]]:
        async with running_api(redis_server.url, api_client, [key], limiter=limiter, clock=clock) as api:
            alice, bob = key.token(sub="alice"), key.token(sub="bob")
            results = []
            for token in (alice, alice, alice, bob):
                response = await api.post(feedback(namespace), token)
                results.append((response.status_code, response.headers.get("Retry-After")))
            clock.advance(3.5)
            response = await api.post(feedback(namespace), alice)
            results.append((response.status_code, response.headers.get("Retry-After")))
            clock.advance(0.5)
            response = await api.post(feedback(namespace), alice)
            results.append((response.status_code, response.headers.get("Retry-After")))
            return results

    assert run(scenario()) == [(201, None), (201, None), (429, "4"), (201, None), (429, "1"), (201, None)]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"namespace": "ns", "plan": ', "body: Invalid JSON"),
        (b"[]", "body: Input should be an object"),
        (None, "plan: Field required"),
        (
            b'{"namespace": "NS", "plan": "plan-1", "verdict": "false-positive"}',
            "namespace: String should match",
        ),
        (
            b'{"namespace": "ns", "plan": "plan-1", "verdict": "maybe"}',
            "verdict: Input should be 'true-positive'",
        ),
        (
            b'{"namespace": "ns", "plan": "plan-1", "verdict": "false-positive", "by": "mallory"}',
            "by: Extra inputs are not permitted",
        ),
        (
            json.dumps(
                {"namespace": "ns", "plan": "plan-1", "verdict": "true-positive", "comment": "x" * 4097}
            ).encode(),
            "comment: String should have at most 4096 characters",
        ),
    ],
    ids=[
        "malformed",
        "not-an-object",
        "missing-plan",
        "bad-namespace",
        "bad-verdict",
        "extra-field",
        "long-comment",
    ],
)
def test_an_invalid_body_is_422_naming_the_field(
    raw: bytes | None,
    expected: str,
    redis_server: RedisServer,
    admin_api: client.ApiClient,
    api_client: client.ApiClient,
    namespace: str,
) -> None:
    create_plan(admin_api, namespace, "plan-1")
    key = SigningKey.ec()
    body = (
        raw if raw is not None else json.dumps({"namespace": namespace, "verdict": "true-positive"}).encode()
    )

    async def scenario() -> Any:
        async with running_api(redis_server.url, api_client, [key]) as api:
            return await api.post(None, key.token(), raw=body)

    response = run(scenario())
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid_request"
    assert expected in response.json()["detail"]
    assert "feedback" not in get_plan(admin_api, namespace, "plan-1")["spec"]


def test_an_oversized_body_is_413_before_it_is_parsed(
    redis_server: RedisServer, admin_api: client.ApiClient, api_client: client.ApiClient, namespace: str
) -> None:
    create_plan(admin_api, namespace, "plan-1")
    key = SigningKey.ec()
    body = json.dumps(feedback(namespace, comment="x" * 100_000)).encode()

    async def scenario() -> Any:
        async with running_api(redis_server.url, api_client, [key]) as api:
            return await api.post(None, key.token(), raw=body)

    response = run(scenario())
    assert response.status_code == 413, response.text
    assert response.json()["error"] == "invalid_request"
    assert "feedback" not in get_plan(admin_api, namespace, "plan-1")["spec"]


def test_an_unknown_plan_is_404(
    redis_server: RedisServer, api_client: client.ApiClient, namespace: str
) -> None:
    key = SigningKey.ec()

    async def scenario() -> Any:
        async with running_api(redis_server.url, api_client, [key]) as api:
            return await api.post(feedback(namespace, plan="no-such-plan"), key.token())

    response = run(scenario())
    assert response.status_code == 404, response.text
    assert response.json()["error"] == "not_found"
    assert "no-such-plan" in response.json()["detail"]


def test_redis_down_is_503_and_the_plan_is_untouched_and_earlier_verdicts_survive(
    redis_server: RedisServer, admin_api: client.ApiClient, api_client: client.ApiClient, namespace: str
) -> None:
    create_plan(admin_api, namespace, "plan-1")
    create_plan(admin_api, namespace, "plan-2")
    key = SigningKey.ec()

    async def scenario() -> tuple[Any, ...]:
        async with running_api(redis_server.url, api_client, [key]) as api:
            before = await api.post(feedback(namespace, "plan-1", "true-positive"), key.token())
            await asyncio.to_thread(redis_server.stop)
            during = await api.post(feedback(namespace, "plan-2"), key.token())
            plan_during = await asyncio.to_thread(get_plan, admin_api, namespace, "plan-2")
            await asyncio.to_thread(redis_server.start)
            earlier = await api.store.get(namespace, POLICY, "plan-1")
            after = await api.post(feedback(namespace, "plan-2"), key.token())
            unavailable = api.metric("aiops_feedback_rejected_total", reason="unavailable")
            return before, during, plan_during, earlier, after, unavailable

    before, during, plan_during, earlier, after, unavailable = run(scenario())

    assert before.status_code == 201, before.text
    assert during.status_code == 503, during.text
    assert during.headers["Retry-After"] == "5"
    assert during.json()["error"] == "unavailable"
    assert "feedback" not in plan_during["spec"]
    assert earlier is not None and earlier.verdict is Verdict.TRUE_POSITIVE
    assert after.status_code == 201, after.text
    assert unavailable == 1.0


def test_every_attempt_writes_one_audit_line(
    redis_server: RedisServer,
    admin_api: client.ApiClient,
    api_client: client.ApiClient,
    namespace: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    create_plan(admin_api, namespace, "plan-1")
    key = SigningKey.ec()
    caplog.set_level(logging.INFO, logger="ajan.audit")

    async def scenario() -> None:
        async with running_api(redis_server.url, api_client, [key]) as api:
            await api.post(feedback(namespace), key.token(sub="alice"))
            await api.post(feedback(namespace), key.token(aud="other"))
            await api.post(feedback(namespace, "missing"), key.token(sub="bob"))
            await api.http.get("/healthz")  # not a feedback attempt: no audit line

    run(scenario())

    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "ajan.audit"]
    assert [(x["subject"], x["plan"], x["verdict"], x["outcome"], x["status"]) for x in lines] == [
        ("alice", "plan-1", "false-positive", "accepted", 201),
        (None, None, None, "rejected", 401),
        ("bob", "missing", "false-positive", "rejected", 404),
    ]
    assert all(x["client"] == "127.0.0.1" and x["namespace"] in (namespace, None) for x in lines)
    assert lines[1]["reason"] == "unauthenticated" and lines[1]["detail"].startswith("audience")
    assert all(x["time"].endswith("Z") for x in lines)


def test_healthz_and_metrics_answer(redis_server: RedisServer, api_client: client.ApiClient) -> None:
    async def scenario() -> tuple[Any, Any]:
        async with running_api(redis_server.url, api_client, [SigningKey.ec()]) as api:
            return await api.http.get("/healthz"), await api.http.get("/metrics")

    health, metrics = run(scenario())
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert metrics.status_code == 200
    assert metrics.headers["Content-Type"].startswith("text/plain")
    assert 'aiops_feedback_total{verdict="false-positive"} 0.0' in metrics.text.splitlines()
    assert 'aiops_feedback_rejected_total{reason="rate-limited"} 0.0' in metrics.text.splitlines()


def test_a_service_account_token_from_the_cluster_is_verified_against_its_own_jwks(
    redis_server: RedisServer, admin_api: client.ApiClient, api_client: client.ApiClient, namespace: str
) -> None:
    """TokenRequest for a service account, verified with the API server's ``/openid/v1/jwks``."""
    from ajan.api import JwksSource
    from ajan.api.auth import KUBE_DEFAULT_ISSUER

    create_plan(admin_api, namespace, "plan-1")
    core = client.CoreV1Api(admin_api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "oncall-bot"}})
    grant(admin_api, namespace, {"kind": "ServiceAccount", "name": "oncall-bot", "namespace": namespace})

    def request_token(audience: str) -> str:
        spec = {"spec": {"audiences": [audience], "expirationSeconds": 600}}
        result = core.create_namespaced_service_account_token("oncall-bot", namespace, spec)
        return str(result.status.token)

    for_us, for_others = request_token(AUDIENCE), request_token("someone-else")

    def kube_jwks(_: str) -> JwksSource:
        return JwksSource.from_kube_configuration(admin_api.configuration)

    async def scenario() -> tuple[Any, Any, int]:
        async with running_api(
            redis_server.url,
            api_client,
            [],
            issuer=KUBE_DEFAULT_ISSUER,
            source=kube_jwks,
            identities=IdentityMapping(kubernetes_issuer=True),
        ) as api:
            accepted = await api.post(feedback(namespace), for_us)
            refused = await api.post(feedback(namespace), for_others)
            return accepted, refused, api.verifier.fetches

    accepted, refused, fetches = run(scenario())

    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["by"] == f"system:serviceaccount:{namespace}:oncall-bot"
    assert get_plan(admin_api, namespace, "plan-1")["spec"]["feedback"]["by"] == (
        f"system:serviceaccount:{namespace}:oncall-bot"
    )
    assert refused.status_code == 401
    assert fetches == 1
