"""The feedback store against a real Redis (Debian's redis-server, configured as ajan ships it)."""

from __future__ import annotations

import asyncio
import signal
import time
from datetime import UTC, datetime, timedelta

import pytest
import redis

from ajan.clients.feedback_store import FeedbackRecord, FeedbackStore, FeedbackUnavailableError
from ajan.models import Verdict
from ajan.services.feedback import relevant
from ajan.simulate.stack import RedisServer

NAMESPACE = "shop"
POLICY = "checkout"


def record(plan: str, verdict: Verdict = Verdict.FALSE_POSITIVE, *, signature: str = "cpu+queue",
           at: datetime | None = None) -> FeedbackRecord:  # fmt: skip
    return FeedbackRecord(
        namespace=NAMESPACE, policy=POLICY, plan=plan, signature=signature, verdict=verdict,
        at=at or datetime.now(UTC), shifts={"cpu": 0.3}, confidence=0.8, action="pause", by="alice",
    )  # fmt: skip


def test_a_verdict_is_stored_with_its_ttl_and_read_back_by_policy(redis_server: RedisServer) -> None:
    async def go() -> None:
        store = FeedbackStore.from_url(redis_server.url, ttl_s=3600)
        try:
            await store.record(record("p1"))
            await store.record(record("p2", Verdict.TRUE_POSITIVE))
            await store.record(record("p3", signature="latency"))
            history = await store.history(NAMESPACE, POLICY, datetime.now(UTC))
            assert [r.plan for r in history.records] == ["p1", "p2", "p3"]
            assert (history.false_positives, history.true_positives) == (2, 1)
            assert history.records[0].shifts == {"cpu": 0.3}
            assert 3590 <= await store.ttl(NAMESPACE, POLICY, "p1") <= 3600
            about_latency = relevant(history, "latency")
            assert [r.plan for r in about_latency.records] == ["p3"]
            assert await store.history(NAMESPACE, "other", datetime.now(UTC)) == type(history)()
            got = await store.get(NAMESPACE, POLICY, "p1")
            assert got is not None and got == record("p1", at=got.at)
        finally:
            await store.close()

    asyncio.run(go())


def test_a_verdict_expires_after_the_ttl_and_recording_it_again_does_not_prolong_it(
    redis_server: RedisServer,
) -> None:
    async def go() -> None:
        store = FeedbackStore.from_url(redis_server.url, ttl_s=3)
        try:
            given = datetime.now(UTC)
            await store.record(record("p1", at=given))
            await asyncio.sleep(1.2)
            await store.record(record("p1", at=given))  # the operator copies a kubectl verdict again
            assert await store.ttl(NAMESPACE, POLICY, "p1") <= 2
            deadline = time.monotonic() + 10
            while await store.get(NAMESPACE, POLICY, "p1") is not None:
                assert time.monotonic() < deadline, "the verdict outlived its TTL"
                await asyncio.sleep(0.1)
            assert (await store.history(NAMESPACE, POLICY, datetime.now(UTC))).records == ()
            # A verdict given longer ago than the TTL is gone at once.
            await store.record(record("p2", at=given - timedelta(seconds=60)))
            assert await store.get(NAMESPACE, POLICY, "p2") is None
        finally:
            await store.close()

    asyncio.run(go())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["restart", "kill"])
def test_acknowledged_verdicts_survive_a_redis_restart(redis_server: RedisServer, sig: int) -> None:
    async def write() -> None:
        store = FeedbackStore.from_url(redis_server.url)
        try:
            for i in range(20):
                await store.record(record(f"p{i}"))
        finally:
            await store.close()

    async def read() -> int:
        store = FeedbackStore.from_url(redis_server.url)
        try:
            history = await store.history(NAMESPACE, POLICY, datetime.now(UTC))
            assert 0 < await store.ttl(NAMESPACE, POLICY, "p0") <= 7 * 86400
            return history.false_positives
        finally:
            await store.close()

    asyncio.run(write())
    # SIGKILL gives Redis no chance to flush: an acknowledged write is already in the append-only
    # file (written before the reply; fsync only matters if the machine itself goes down).
    redis_server.stop(sig)
    redis_server.start()
    assert asyncio.run(read()) == 20


def test_redis_killed_mid_write_keeps_each_verdict_whole(redis_server: RedisServer) -> None:
    acknowledged: list[str] = []
    failures: list[Exception] = []

    async def write() -> None:
        store = FeedbackStore.from_url(redis_server.url)
        try:
            for i in range(100_000):
                try:
                    await store.record(record(f"p{i}"))
                except FeedbackUnavailableError as err:
                    failures.append(err)
                    return
                acknowledged.append(f"p{i}")
                if i == 200:
                    redis_server.proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
        finally:
            await store.close()

    asyncio.run(write())
    assert failures, "the writer never noticed Redis die"
    redis_server.stop()
    redis_server.start()
    raw = redis.Redis.from_url(redis_server.url)
    try:
        keys = {k.decode().rsplit("/", 1)[1] for k in raw.scan_iter("ajan:feedback:plan:*")}
        index = {m.decode() for m in raw.zrange(f"ajan:feedback:index:{NAMESPACE}/{POLICY}", 0, -1)}
    finally:
        raw.close()
    assert set(acknowledged) <= keys, "an acknowledged verdict was lost"
    # MULTI/EXEC: a record and its index entry are written together or not at all.
    assert keys == index


def test_redis_down_is_a_clear_error_quickly(redis_server: RedisServer) -> None:
    redis_server.stop()

    async def go() -> None:
        store = FeedbackStore.from_url(redis_server.url)
        try:
            assert not await store.ping()
            with pytest.raises(FeedbackUnavailableError, match="redis refused the feedback on plan p1"):
                await store.record(record("p1"))
            with pytest.raises(FeedbackUnavailableError, match="redis did not answer"):
                await store.history(NAMESPACE, POLICY, datetime.now(UTC))
        finally:
            await store.close()

    asyncio.run(go())


def test_a_full_redis_refuses_rather_than_evicting(redis_server: RedisServer) -> None:
    raw = redis.Redis.from_url(redis_server.url)
    try:
        assert raw.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        assert raw.config_get("appendonly") == {"appendonly": "yes"}
        raw.set("ballast", b"x" * 2_000_000)
        raw.config_set("maxmemory", "1mb")
    finally:
        raw.close()

    async def go() -> None:
        store = FeedbackStore.from_url(redis_server.url)
        try:
            with pytest.raises(FeedbackUnavailableError, match="maxmemory"):
                await store.record(record("p1"))
        finally:
            await store.close()

    asyncio.run(go())
    raw = redis.Redis.from_url(redis_server.url)
    try:
        assert raw.exists("ballast"), "Redis evicted data to make room"
    finally:
        raw.close()
