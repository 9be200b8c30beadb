"""Who may judge a plan: the API server decides, by LocalSubjectAccessReview (ajan.api.authz).

On the real kube-apiserver (RBAC on): service-account tokens issued by it and an identity provider's
tokens, each without and with a RoleBinding that lets the caller patch the plan. A refused verdict
is a 403 that stores nothing, in Redis or on the plan.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
from kubernetes import client

from ajan.api import IdentityMapping, JwksSource
from ajan.api.auth import KUBE_DEFAULT_ISSUER, AuthError
from ajan.api.authz import AUTHENTICATED, ForbiddenError
from api.harness import POLICY, SigningKey, create_plan, get_plan, grant, running_api
from support.kube import Kube
from support.redis import RedisServer

T = TypeVar("T")
SERVICE_ACCOUNTS = IdentityMapping(kubernetes_issuer=True)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@pytest.fixture
def api_client(kube: Kube) -> client.ApiClient:
    return kube.api_client()


@pytest.fixture
def other_namespace(admin_api: client.ApiClient, namespace: str) -> str:
    """A second namespace: another team's, where a bot of theirs lives."""
    name = f"ajan-other-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(admin_api).create_namespace({"metadata": {"name": name}})
    return name


def service_account_token(api: client.ApiClient, namespace: str, name: str) -> str:
    core = client.CoreV1Api(api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": name}})
    spec = {"spec": {"audiences": ["ajan-feedback"], "expirationSeconds": 600}}
    return str(core.create_namespaced_service_account_token(name, namespace, spec).status.token)


def cluster_jwks(admin_api: client.ApiClient) -> Any:
    return lambda _url: JwksSource.from_kube_configuration(admin_api.configuration)


def verdict(namespace: str, plan: str = "plan-1") -> dict[str, str]:
    return {"namespace": namespace, "plan": plan, "verdict": "false-positive"}


def test_another_namespaces_service_account_may_not_judge_a_plan_until_granted(
    redis_server: RedisServer,
    admin_api: client.ApiClient,
    api_client: client.ApiClient,
    namespace: str,
    other_namespace: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The hole of issue 13: any service account's token was enough. Now 403, nothing written; with
    a RoleBinding in the plan's namespace (exactly `patch remediationplans`), 201."""
    create_plan(admin_api, namespace, "plan-1")
    token = service_account_token(admin_api, other_namespace, "random-bot")
    caplog.set_level(logging.INFO, logger="ajan.audit")

    async def scenario() -> tuple[Any, ...]:
        async with running_api(
            redis_server.url, api_client, [], issuer=KUBE_DEFAULT_ISSUER,
            source=cluster_jwks(admin_api), identities=SERVICE_ACCOUNTS,
        ) as api:  # fmt: skip
            refused = await api.post(verdict(namespace), token)
            stored_after_refusal = await api.store.get(namespace, POLICY, "plan-1")
            forbidden = api.metric("aiops_feedback_rejected_total", reason="forbidden")
            plan_after_refusal = get_plan(admin_api, namespace, "plan-1")
            account = {"kind": "ServiceAccount", "name": "random-bot", "namespace": other_namespace}
            grant(admin_api, namespace, account)
            accepted = await api.post(verdict(namespace), token)
            stored = await api.store.get(namespace, POLICY, "plan-1")
            return refused, stored_after_refusal, forbidden, plan_after_refusal, accepted, stored

    refused, stored_after_refusal, forbidden, plan_after_refusal, accepted, stored = run(scenario())

    user = f"system:serviceaccount:{other_namespace}:random-bot"
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"] == "forbidden"
    detail = refused.json()["detail"]
    assert user in detail and "patch remediationplans.aiops.ajan.dev" in detail and namespace in detail
    assert stored_after_refusal is None
    assert "feedback" not in plan_after_refusal["spec"]
    assert forbidden == 1.0
    audit = [json.loads(r.getMessage()) for r in caplog.records if r.name == "ajan.audit"]
    assert [(a["subject"], a["status"], a["reason"]) for a in audit] == [
        (user, 403, "forbidden"), (user, 201, None),
    ]  # fmt: skip

    assert accepted.status_code == 201, accepted.text
    assert stored is not None and stored.by == user
    assert get_plan(admin_api, namespace, "plan-1")["spec"]["feedback"]["by"] == user


def test_a_role_that_lacks_patch_is_not_enough(
    redis_server: RedisServer, admin_api: client.ApiClient, api_client: client.ApiClient, namespace: str
) -> None:
    """Reading plans (get, list, watch) does not make one their judge."""
    create_plan(admin_api, namespace, "plan-1")
    token = service_account_token(admin_api, namespace, "reader")
    account = {"kind": "ServiceAccount", "name": "reader", "namespace": namespace}
    grant(admin_api, namespace, account, verbs=("get", "list", "watch"))

    async def scenario() -> Any:
        async with running_api(
            redis_server.url, api_client, [], issuer=KUBE_DEFAULT_ISSUER,
            source=cluster_jwks(admin_api), identities=SERVICE_ACCOUNTS,
        ) as api:  # fmt: skip
            return await api.post(verdict(namespace), token)

    assert run(scenario()).status_code == 403


def test_an_identity_providers_groups_are_authorized_as_the_api_server_would_map_them(
    redis_server: RedisServer, admin_api: client.ApiClient, api_client: client.ApiClient, namespace: str
) -> None:
    """An IdP user in group ``oncall`` (prefixed ``oidc:`` as kube-apiserver's --oidc-groups-prefix
    would): refused until a RoleBinding names the group ``oidc:oncall``; then accepted, as the
    prefixed user."""
    create_plan(admin_api, namespace, "plan-1")
    key = SigningKey.rsa()
    mapping = IdentityMapping(
        kubernetes_issuer=False, username_claim="email", username_prefix="oidc:", groups_prefix="oidc:"
    )
    claims = {"email": "dana@example.test", "groups": ["oncall", "developers"]}

    async def scenario() -> tuple[Any, Any]:
        async with running_api(redis_server.url, api_client, [key], identities=mapping) as api:
            refused = await api.post(verdict(namespace), key.token(**{"sub": "123"}, extra=claims))
            grant(admin_api, namespace, {"kind": "Group", "name": "oidc:oncall"})
            accepted = await api.post(verdict(namespace), key.token(**{"sub": "123"}, extra=claims))
            return refused, accepted

    refused, accepted = run(scenario())

    assert refused.status_code == 403, refused.text
    assert "oidc:dana@example.test" in refused.json()["detail"]
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["by"] == "oidc:dana@example.test"


def test_an_identity_provider_cannot_claim_the_clusters_own_names(
    redis_server: RedisServer, admin_api: client.ApiClient, api_client: client.ApiClient, namespace: str
) -> None:
    """``system:masters`` in an IdP's groups claim is dropped (else any IdP user could be cluster
    admin here), and a ``system:`` user name is refused outright."""
    create_plan(admin_api, namespace, "plan-1")
    key = SigningKey.ec()
    mapping = IdentityMapping(kubernetes_issuer=False)

    async def scenario() -> tuple[Any, Any]:
        async with running_api(redis_server.url, api_client, [key], identities=mapping) as api:
            masters = await api.post(
                verdict(namespace), key.token(sub="mallory", extra={"groups": ["system:masters"]})
            )
            impostor = await api.post(
                verdict(namespace), key.token(sub=f"system:serviceaccount:{namespace}:default")
            )
            return masters, impostor

    masters, impostor = run(scenario())

    assert masters.status_code == 403, masters.text
    assert impostor.status_code == 403, impostor.text
    assert "the cluster's own" in impostor.json()["detail"]
    assert "feedback" not in get_plan(admin_api, namespace, "plan-1")["spec"]


def test_a_caller_without_the_right_cannot_tell_which_plans_exist(
    redis_server: RedisServer, admin_api: client.ApiClient, api_client: client.ApiClient, namespace: str
) -> None:
    """403 for a plan that exists and for one that does not: authorization comes before the lookup."""
    create_plan(admin_api, namespace, "plan-1")
    key = SigningKey.ec()

    async def scenario() -> tuple[Any, Any]:
        async with running_api(redis_server.url, api_client, [key]) as api:
            return (
                await api.post(verdict(namespace), key.token(sub="eve")),
                await api.post(verdict(namespace, "no-such-plan"), key.token(sub="eve")),
            )

    existing, missing = run(scenario())
    assert (existing.status_code, missing.status_code) == (403, 403)


def test_an_unreachable_api_server_is_503_and_nothing_is_stored(
    redis_server: RedisServer, admin_api: client.ApiClient, kube: Kube, namespace: str
) -> None:
    """A real fault: the authorizer's API server address has nothing listening. Nobody is let
    through for want of an answer."""
    create_plan(admin_api, namespace, "plan-1")
    grant(admin_api, namespace, {"kind": "User", "name": "alice@example.test"})
    key = SigningKey.ec()
    dead = client.Configuration()
    dead.host = "https://127.0.0.1:9"  # the discard port: connection refused
    dead.verify_ssl = False
    dead.retries = 0

    async def scenario() -> tuple[Any, Any]:
        async with running_api(
            redis_server.url, kube.api_client(), [key], authorizer_api=client.ApiClient(dead)
        ) as api:
            response = await api.post(verdict(namespace), key.token())
            return response, await api.store.get(namespace, POLICY, "plan-1")

    response, stored = run(scenario())
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "5"
    assert stored is None
    assert "feedback" not in get_plan(admin_api, namespace, "plan-1")["spec"]


@pytest.mark.parametrize(
    ("claims", "user", "groups"),
    [
        (
            {"sub": "system:serviceaccount:shop:bot", "kubernetes.io": {
                "namespace": "shop", "serviceaccount": {"name": "bot", "uid": "u-1"}}},
            "system:serviceaccount:shop:bot",
            ("system:serviceaccounts", "system:serviceaccounts:shop", AUTHENTICATED),
        ),
    ],
)  # fmt: skip
def test_a_service_account_token_maps_to_the_users_and_groups_kubernetes_gives_it(
    claims: dict[str, Any], user: str, groups: tuple[str, ...]
) -> None:
    identity = SERVICE_ACCOUNTS.identity(claims)
    assert (identity.user, identity.groups, identity.uid) == (user, groups, "u-1")


def test_the_clusters_issuer_speaks_only_for_service_accounts() -> None:
    """A token from the cluster's issuer without the service-account claim, or whose sub names
    another account than the claim, is not authenticated at all."""
    with pytest.raises(AuthError):
        SERVICE_ACCOUNTS.identity({"sub": "alice"})
    with pytest.raises(AuthError):
        SERVICE_ACCOUNTS.identity({
            "sub": "system:serviceaccount:kube-system:admin",
            "kubernetes.io": {"namespace": "shop", "serviceaccount": {"name": "bot"}},
        })  # fmt: skip
    with pytest.raises(ForbiddenError):
        IdentityMapping(kubernetes_issuer=False).identity({"sub": "system:admin"})
