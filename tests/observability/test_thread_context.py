"""The Kubernetes clients' thread pools run calls in the caller's context, so the lines logged
there name the policy and plan (and join the trace) like the event loop's lines do."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from ajan import logs
from ajan.clients.kubernetes import call_in


def test_a_call_in_the_pool_sees_the_callers_log_context() -> None:
    async def scenario() -> tuple[dict[str, str], dict[str, str]]:
        with ThreadPoolExecutor(max_workers=1) as pool:
            with logs.bind(namespace="shop", policy="checkout", plan="checkout-x-pause"):
                inside = await call_in(pool, logs.context)
            outside = await call_in(pool, logs.context)
        return inside, outside

    inside, outside = asyncio.run(scenario())
    assert inside == {"namespace": "shop", "policy": "checkout", "plan": "checkout-x-pause"}
    assert outside == {}, "a later call must not inherit an earlier caller's context"
