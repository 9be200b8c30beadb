"""CorrelationPolicy: one daemon per policy evaluates it every ``spec.interval``.

A daemon rather than a kopf timer: a timer's interval is fixed per handler, a policy's is its own.
kopf stops the daemon when the policy is deleted (its finalizer holds the deletion until then) and
hands it a live ``body``, so a spec edit applies from the next evaluation on.
"""

from __future__ import annotations

import asyncio
import copy
import time
from typing import Any, Final

import kopf

from ajan import metrics
from ajan.models import GROUP, VERSION
from ajan.services.reconcile import PolicyEvaluator
from ajan.services.runtime import OperatorConfig, Runtime

#: After an unexpected error (the API server failing, a bug), wait this long before trying again.
ERROR_RETRY_S: Final = 30.0


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
                logger.exception("evaluation failed; retrying in %.0fs", ERROR_RETRY_S)
                delay = ERROR_RETRY_S
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
