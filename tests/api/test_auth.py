"""The JWT verifier on its own, against a real local JWKS server: configuration, key-set age, failures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import jwt
import pytest

from ajan.api import AuthError, JwksSource, JwksVerifier, KeysUnavailableError
from api.harness import AUDIENCE, ISSUER, FakeClock, JwksServer, SigningKey, standard_claims


@asynccontextmanager
async def verifier_on(
    keys: list[SigningKey], clock: FakeClock, **options: Any
) -> AsyncIterator[tuple[JwksVerifier, JwksServer]]:
    server = JwksServer(published=list(keys))
    await server.start()
    verifier = JwksVerifier(
        JwksSource.from_url(server.url), audience=AUDIENCE, issuer=ISSUER, clock=clock, **options
    )
    try:
        yield verifier, server
    finally:
        await verifier.aclose()
        await server.stop()


@pytest.mark.parametrize("algorithms", [["HS256"], ["RS256", "none"], []])
def test_symmetric_or_no_algorithm_cannot_be_configured(algorithms: list[str]) -> None:
    with pytest.raises(ValueError, match="asymmetric"):
        JwksVerifier(JwksSource.from_url("http://127.0.0.1:1/jwks"), audience=AUDIENCE, algorithms=algorithms)


def test_an_audience_is_required() -> None:
    with pytest.raises(ValueError, match="audience"):
        JwksVerifier(JwksSource.from_url("http://127.0.0.1:1/jwks"), audience="")


def test_the_claims_come_back_and_an_old_set_is_refetched_so_a_withdrawn_key_goes() -> None:
    key = SigningKey.ec()
    clock = FakeClock()

    async def scenario() -> tuple[Any, ...]:
        async with verifier_on([key], clock, max_age_s=300) as (verifier, server):
            claims = await verifier.verify(key.token(sub="carol"))
            server.published = []  # withdrawn: no unknown kid will ever show up to trigger a refetch
            clock.advance(299)
            still = await verifier.verify(key.token())
            clock.advance(2)
            with pytest.raises(AuthError) as refused:
                await verifier.verify(key.token())
            return claims, still, refused.value.reason, server.requests

    claims, still, reason, requests = asyncio.run(scenario())
    assert claims["sub"] == "carol" and claims["aud"] == AUDIENCE
    assert still["sub"]
    assert reason == "unknown-key"
    assert requests == 2


def test_a_failed_refetch_keeps_the_keys_fetched_before() -> None:
    key = SigningKey.ec()
    clock = FakeClock()

    async def scenario() -> tuple[Any, int]:
        async with verifier_on([key], clock, max_age_s=300) as (verifier, server):
            await verifier.verify(key.token())
            await server.stop()  # the identity provider is down
            clock.advance(400)
            claims = await verifier.verify(key.token())
            return claims, verifier.fetches

    claims, fetches = asyncio.run(scenario())
    assert claims["sub"]
    assert fetches == 2


def test_no_keys_ever_fetched_is_unavailable_and_retried_only_after_the_interval() -> None:
    key = SigningKey.ec()
    clock = FakeClock()

    async def scenario() -> list[str]:
        outcomes = []
        async with verifier_on([key], clock, refetch_interval_s=30) as (verifier, server):
            await server.stop()
            for advance in (0, 10):
                clock.advance(advance)
                with pytest.raises(KeysUnavailableError):
                    await verifier.verify(key.token())
                outcomes.append(f"unavailable after {verifier.fetches} fetch(es)")
            await server.start()
            verifier.source.url = server.url  # the restarted server is on another port
            clock.advance(30)
            await verifier.verify(key.token())
            outcomes.append(f"verified after {verifier.fetches} fetch(es)")
        return outcomes

    assert asyncio.run(scenario()) == [
        "unavailable after 1 fetch(es)",
        "unavailable after 1 fetch(es)",
        "verified after 2 fetch(es)",
    ]


def test_a_token_without_kid_is_accepted_only_from_a_single_key_set() -> None:
    one, two = SigningKey.ec(), SigningKey.ec()
    clock = FakeClock()

    async def scenario(keys: list[SigningKey]) -> str:
        async with verifier_on(keys, clock) as (verifier, _):
            token = jwt.encode(standard_claims(), one.private, algorithm="ES256")  # no kid header
            try:
                await verifier.verify(token)
            except AuthError as err:
                return err.reason
            return "accepted"

    assert asyncio.run(scenario([one])) == "accepted"
    assert asyncio.run(scenario([one, two])) == "unknown-key"


def test_a_key_published_for_another_algorithm_does_not_verify() -> None:
    """An RSA key published with ``alg: RS256`` cannot verify an RS-family token of another alg."""
    key = SigningKey.rsa()
    clock = FakeClock()

    async def scenario() -> str:
        async with verifier_on([key], clock, algorithms=["RS256", "RS512"]) as (verifier, _):
            token = jwt.encode(standard_claims(), key.private, algorithm="RS512", headers={"kid": key.kid})
            with pytest.raises(AuthError) as refused:
                await verifier.verify(token)
            return refused.value.reason

    assert asyncio.run(scenario()) == "algorithm"
