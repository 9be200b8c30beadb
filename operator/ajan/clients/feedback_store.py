"""Operators' verdicts on plans, kept in Redis for a week (configurable).

Redis holds the feedback that changes later decisions; the plan's own ``spec.feedback`` is what a
person sees with ``kubectl``. A verdict is one key per plan (``SET ... EX ttl``), indexed per policy
by a sorted set scored by the time of the verdict, both written in one
``MULTI``/``EXEC`` transaction: a Redis killed mid-write keeps both or neither. Giving a plan a new
verdict replaces the old one (one plan, one verdict), so writing the same verdict twice is harmless.

Expiry is Redis's own (``EX``) for the records; the indexes drop members older than the TTL when read
and expire a TTL after their last write.

Every Redis failure (down, refusing writes when full under ``noeviction``, timing out) raises
`FeedbackUnavailableError`: the feedback API answers 503 and the analysis goes on without feedback.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Final

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ajan.models import Verdict

#: Seven days: long enough to learn a weekly pattern, short enough that a fixed bug is forgotten.
DEFAULT_TTL_S: Final = 7 * 86400
#: Feedback must answer fast or not at all: an evaluation never waits long for it.
SOCKET_TIMEOUT_S: Final = 2.0
PREFIX: Final = "ajan:feedback"


class FeedbackUnavailableError(RuntimeError):
    """Redis cannot be reached or refused the command."""


@dataclass(frozen=True)
class FeedbackRecord:
    """One verdict on one plan.

    signature: the plan's anomaly signature (:func:`ajan.services.feedback.signature`).
    shifts: per anomalous metric, the largest distance from its baseline the plan's evidence showed
        (in the metric's unit): how strong the alarm was. Distances, not z-scores: a calibrated z
        saturates, so a pattern three times its usual size scores barely higher.
    """

    namespace: str
    policy: str
    plan: str
    signature: str
    verdict: Verdict
    at: datetime
    shifts: dict[str, float]
    confidence: float
    action: str
    by: str | None = None
    comment: str | None = None

    def to_json(self) -> str:
        """The stored form."""
        data = asdict(self)
        data["verdict"] = self.verdict.value
        data["at"] = self.at.astimezone(UTC).isoformat()
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, raw: str | bytes) -> FeedbackRecord:
        """The inverse of `to_json`."""
        data: dict[str, Any] = json.loads(raw)
        data["verdict"] = Verdict(data["verdict"])
        data["at"] = datetime.fromisoformat(data["at"])
        return cls(**data)


@dataclass(frozen=True)
class FeedbackHistory:
    """Live verdicts on one policy's plans."""

    records: tuple[FeedbackRecord, ...] = ()

    @property
    def true_positives(self) -> int:
        """Plans of this signature confirmed as real incidents."""
        return sum(r.verdict is Verdict.TRUE_POSITIVE for r in self.records)

    @property
    def false_positives(self) -> int:
        """Plans of this signature rejected as false alarms."""
        return sum(r.verdict is Verdict.FALSE_POSITIVE for r in self.records)


def _record_key(namespace: str, policy: str, plan: str) -> str:
    return f"{PREFIX}:plan:{namespace}/{policy}/{plan}"


def _index_key(namespace: str, policy: str) -> str:
    return f"{PREFIX}:index:{namespace}/{policy}"


class FeedbackStore:
    """Verdicts in Redis, each living ``ttl_s`` seconds from when it was given."""

    def __init__(self, client: aioredis.Redis, *, ttl_s: int = DEFAULT_TTL_S) -> None:
        if ttl_s <= 0:
            raise ValueError(f"the feedback TTL must be positive, got {ttl_s}s")
        self._redis = client
        self.ttl_s = ttl_s

    @classmethod
    def from_url(cls, url: str, *, ttl_s: int = DEFAULT_TTL_S) -> FeedbackStore:
        """A store on the Redis at ``url`` (``redis://host:port/db``); connects lazily."""
        client = aioredis.Redis.from_url(
            url, socket_timeout=SOCKET_TIMEOUT_S, socket_connect_timeout=SOCKET_TIMEOUT_S
        )
        return cls(client, ttl_s=ttl_s)

    async def close(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()

    async def ping(self) -> bool:
        """Whether Redis answers."""
        try:
            # redis-py types ping() for its sync and async clients at once.
            return bool(await self._redis.ping())  # type: ignore[misc]
        except (RedisError, OSError):
            return False

    async def record(self, record: FeedbackRecord) -> None:
        """Store a verdict (replacing any earlier one on the same plan) until ``ttl_s`` after it was given.

        A verdict older than the TTL is simply gone at once (Redis deletes a key set to expire in the
        past).

        Raises `FeedbackUnavailableError` when Redis does not acknowledge it; then nothing was written.
        """
        key = _record_key(record.namespace, record.policy, record.plan)
        index = _index_key(record.namespace, record.policy)
        # The verdict lives ttl_s from when it was *given*: recording it again (the operator does,
        # after a restart, for verdicts set with kubectl) must not make it live longer.
        expires = math.floor(record.at.timestamp() + self.ttl_s)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(key, record.to_json(), exat=expires)
                pipe.zadd(index, {record.plan: record.at.timestamp()})
                # The index lives as long as its newest verdict: NX sets a first expiry, GT only
                # ever extends it (Redis counts a key without expiry as infinite for GT).
                pipe.expireat(index, expires, nx=True)
                pipe.expireat(index, expires, gt=True)
                await pipe.execute()
        except (RedisError, OSError) as err:
            raise FeedbackUnavailableError(
                f"redis refused the feedback on plan {record.plan}: {err}"
            ) from err

    async def history(self, namespace: str, policy: str, now: datetime) -> FeedbackHistory:
        """The live verdicts on ``policy``'s plans, oldest first.

        Raises `FeedbackUnavailableError` when Redis does not answer.
        """
        index = _index_key(namespace, policy)
        try:
            await self._redis.zremrangebyscore(index, "-inf", f"({now.timestamp() - self.ttl_s}")
            plans: Sequence[bytes] = await self._redis.zrange(index, 0, -1)
            if not plans:
                return FeedbackHistory()
            raws = await self._redis.mget([_record_key(namespace, policy, p.decode()) for p in plans])
        except (RedisError, OSError) as err:
            raise FeedbackUnavailableError(
                f"redis did not answer for the feedback of {policy}: {err}"
            ) from err
        # A record may have expired before its index entry was trimmed: it is simply gone.
        return FeedbackHistory(tuple(FeedbackRecord.from_json(raw) for raw in raws if raw is not None))

    async def get(self, namespace: str, policy: str, plan: str) -> FeedbackRecord | None:
        """The live verdict on one plan, if any."""
        try:
            raw = await self._redis.get(_record_key(namespace, policy, plan))
        except (RedisError, OSError) as err:
            raise FeedbackUnavailableError(f"redis did not answer for the feedback on {plan}: {err}") from err
        return None if raw is None else FeedbackRecord.from_json(raw)

    async def ttl(self, namespace: str, policy: str, plan: str) -> int:
        """Seconds the verdict on ``plan`` still lives (-2 when there is none), as Redis counts."""
        try:
            return int(await self._redis.ttl(_record_key(namespace, policy, plan)))
        except (RedisError, OSError) as err:
            raise FeedbackUnavailableError(f"redis did not answer for the feedback on {plan}: {err}") from err
