"""Per-client token buckets for the feedback API.

Each client (a token's subject) has a bucket of ``burst`` tokens refilled at ``rate_per_s``; a
request takes one or waits. Buckets live in an LRU of at most ``max_clients``: memory stays bounded
whoever calls, and a forgotten client simply starts again with a full bucket, which is what an idle
client would have anyway.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

#: One verdict every 2 s on average per client, bursts of 10: a person clicking through an incident's
#: plans, or a webhook replaying a batch, fits; a loop gone wrong does not.
DEFAULT_RATE_PER_S: Final = 0.5
DEFAULT_BURST: Final = 10
DEFAULT_MAX_CLIENTS: Final = 10_000


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets by client, on an injected monotonic clock (seconds)."""

    def __init__(
        self,
        rate_per_s: float = DEFAULT_RATE_PER_S,
        burst: int = DEFAULT_BURST,
        *,
        max_clients: int = DEFAULT_MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_per_s <= 0 or burst < 1 or max_clients < 1:
            raise ValueError(
                f"rate ({rate_per_s}/s), burst ({burst}) and max_clients ({max_clients}) must be positive"
            )
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_clients = max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def acquire(self, client: str) -> float:
        """Take a token for ``client``: 0.0 if it may go ahead, else the seconds until it may retry.

        A refused request takes nothing, so retrying after the returned delay succeeds.
        """
        now = self._clock()
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = _Bucket(tokens=float(self.burst), updated=now)
            self._buckets[client] = bucket
            if len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(client)
            # max(): a clock that went backwards must not drain the bucket.
            elapsed = max(now - bucket.updated, 0.0)
            bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.rate_per_s)
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate_per_s

    @property
    def clients(self) -> int:
        """Clients with a bucket now (at most ``max_clients``)."""
        # Not __len__: an empty limiter would be falsy, and ``limiter or default`` would drop it.
        return len(self._buckets)


def retry_after_header(seconds: float) -> str:
    """A ``Retry-After`` value: whole seconds, rounded up (never 0 for a refusal)."""
    return str(max(1, math.ceil(seconds)))
