"""The policy daemon's wait after a failed evaluation (the API server gone, a bug)."""

from __future__ import annotations

import random

import pytest

from ajan.handlers.policy import ERROR_RETRY_S, retry_delay


@pytest.mark.parametrize(
    ("interval_s", "ceiling"), [(5.0, 5.0), (15.0, 15.0), (30.0, 30.0), (600.0, ERROR_RETRY_S)]
)
def test_a_failed_evaluation_is_retried_within_its_interval_and_never_later_than_the_cap(
    interval_s: float, ceiling: float
) -> None:
    delays = [retry_delay(interval_s, draw) for draw in (0.0, 0.25, 0.5, 0.999)]
    assert delays[0] == ceiling
    assert all(ceiling / 2 < d <= ceiling for d in delays)


def test_without_a_known_interval_the_cap_is_the_wait() -> None:
    # The spec never parsed (or the very first read failed): no interval to go by.
    assert retry_delay(None, 0.0) == ERROR_RETRY_S


def test_policies_that_fail_together_do_not_come_back_in_the_same_second() -> None:
    draws = random.Random(7)
    delays = sorted(retry_delay(15.0, draws.random()) for _ in range(100))
    # A hundred policies spread over the upper half of the interval, not one burst.
    assert delays[-1] - delays[0] > 0.4 * 15.0
    assert len({round(d) for d in delays}) >= 6
