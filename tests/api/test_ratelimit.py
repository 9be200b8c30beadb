"""Per-client token buckets: refill, independent clients, bounded memory, Retry-After rounding."""

from __future__ import annotations

import pytest

from ajan.api.ratelimit import RateLimiter, retry_after_header
from api.harness import FakeClock


def test_a_burst_then_one_request_per_refill() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate_per_s=2.0, burst=3, clock=clock)
    assert [limiter.acquire("a") for _ in range(4)] == [0.0, 0.0, 0.0, 0.5]
    clock.advance(0.25)
    assert limiter.acquire("a") == 0.25  # half a token refilled, nothing taken by the refusal
    clock.advance(0.25)
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("b") == 0.0  # another client has its own bucket


def test_the_bucket_never_holds_more_than_the_burst() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate_per_s=1.0, burst=2, clock=clock)
    limiter.acquire("a")
    clock.advance(3600)
    assert [limiter.acquire("a") for _ in range(3)] == [0.0, 0.0, 1.0]


def test_a_clock_going_backwards_does_not_drain_or_fill() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate_per_s=1.0, burst=1, clock=clock)
    limiter.acquire("a")
    clock.advance(-10)
    assert limiter.acquire("a") == 1.0


def test_memory_is_bounded_and_the_least_recent_client_is_forgotten() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate_per_s=0.001, burst=1, max_clients=2, clock=clock)
    limiter.acquire("a")
    limiter.acquire("b")
    assert limiter.acquire("a") > 0  # a used again: b is now the least recent
    limiter.acquire("c")
    assert limiter.clients == 2
    assert limiter.acquire("a") > 0  # a was kept (still empty)
    assert limiter.acquire("b") == 0.0  # b was forgotten: a fresh bucket


@pytest.mark.parametrize(("seconds", "header"), [(0.01, "1"), (1.0, "1"), (1.2, "2"), (59.5, "60")])
def test_retry_after_is_whole_seconds_rounded_up(seconds: float, header: str) -> None:
    assert retry_after_header(seconds) == header


def test_nonsense_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        RateLimiter(rate_per_s=0)
    with pytest.raises(ValueError):
        RateLimiter(burst=0)
