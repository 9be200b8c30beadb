"""CorrelationPolicy: one daemon per policy evaluates it every ``spec.interval``.

A daemon rather than a kopf timer: a timer's interval is fixed per handler, a policy's is its own.
kopf stops the daemon when the policy is deleted (its finalizer holds the deletion until then) and
hands it a live ``body``, so a spec edit applies from the next evaluation on.
"""

from __future__ import annotations

import asyncio
import copy
import random
import time
from typing import Any, Final

import kopf

from ajan import metrics
from ajan.models import GROUP, VERSION
from ajan.services.reconcile import PolicyEvaluator
from ajan.services.runtime import OperatorConfig, Runtime

#: After an unexpected error (the API server failing, a bug), try again within the policy's interval,
#: and never later than this: a retry storm is what the wait prevents, not a policy's own cadence.
ERROR_RETRY_S: Final = 30.0


def retry_delay(interval_s: float | None, draw: float) -> float:
    """How long to wait after an evaluation failed: the policy's interval (``None`` if unknown) but
    at most :data:`ERROR_RETRY_S`, less a random share of up to half (``draw`` in [0, 1)).

    The share spreads out the retries of policies that failed together (every policy fails at once
    when the API server goes), so that they do not all come back in the same second to a server that
    has just restarted.

    >>> retry_delay(15.0, 0.0), retry_delay(15.0, 0.5), retry_delay(300.0, 0.0), retry_delay(None, 0.0)
    (15.0, 11.25, 30.0, 30.0)
    """
    ceiling = ERROR_RETRY_S if interval_s is None else min(interval_s, ERROR_RETRY_S)
    return ceiling * (1.0 - 0.5 * draw)


def _owned(namespace: str | None, name: str, memo: kopf.Memo, **_: Any) -> bool:
    """Whether this replica evaluates the policy (``--shards``: one replica per shard owns it)."""
    config: OperatorConfig = memo.config
    return namespace is not None and config.shard.owns(namespace, name)


@kopf.daemon(GROUP, VERSION, "correlationpolicies", cancellation_timeout=10.0, when=_owned)
async def evaluate_policy(
    *,
    stopped: kopf.DaemonStopped,
    namespace: str | None,
    name: str,
    body: kopf.Body,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    """Evaluate the policy every interval; writes its status and its RemediationPlans, posts Events."""
    runtime: Runtime = memo.runtime
    assert namespace is not None  # a namespaced resource
    evaluator = PolicyEvaluator(runtime, namespace, name, logger)
    wakeup = runtime.wakeup(namespace, name)
    try:
        while not stopped:
            started = time.monotonic()
            try:
                # A copy: the live body may change under an evaluation that awaits.
                report = await evaluator.evaluate(copy.deepcopy(dict(body)))
            except Exception:  # log and skip, never a retry storm: the next interval tries again
                metrics.EVALUATIONS.labels(result="error").inc()
                delay = retry_delay(evaluator.interval_s, random.random())
                logger.exception("evaluation failed; retrying in %.0fs", delay)
            else:
                for note in report.notes:
                    post = kopf.warn if note.warning else kopf.info
                    post(body, reason=note.reason, message=note.message)
                delay = report.delay_s
            await _sleep(stopped, wakeup, max(0.0, delay - (time.monotonic() - started)))
    finally:
        # Also when kopf cancels the daemon mid-evaluation (the policy deleted while a query is out):
        # a deleted policy's series must not outlive it.
        metrics.forget_policy(namespace, name)


async def _sleep(stopped: kopf.DaemonStopped, wakeup: asyncio.Event, seconds: float) -> None:
    """Wait for the next evaluation: the interval, or a wake-up (an approval), or the daemon's end."""
    waits = [asyncio.ensure_future(stopped.wait(seconds)), asyncio.ensure_future(wakeup.wait())]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()
        wakeup.clear()
