"""What every policy evaluation of one operator process shares: its configuration (``ajan run``'s
flags) and its `Runtime` (HTTP pool, API store, Rollouts client, feedback store, clock, limits)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import httpx

from ajan.clients.feedback_store import DEFAULT_TTL_S, FeedbackStore
from ajan.clients.kubernetes import KubeStore
from ajan.clients.prometheus import PrometheusSource, ThrottledSource
from ajan.clients.rollouts import RolloutClient
from ajan.services.execution import OperatorLimit
from ajan.services.severity import RuleSeverityClassifier, SeverityClassifier
from ajan.services.sharding import Shard


@dataclass(frozen=True)
class OperatorConfig:
    """Settings of the whole operator (``ajan run`` flags)."""

    default_prometheus_url: str | None = None
    query_timeout_s: float = 10.0
    #: Queries in flight per Prometheus, and assessments computed at once.
    concurrency: int = 8
    #: Where operator feedback is kept; evaluations run without it.
    redis_url: str | None = None
    #: How long a verdict counts.
    feedback_ttl_s: int = DEFAULT_TTL_S
    #: Where the feedback API (and /metrics) listens; None: not started.
    feedback_listen: tuple[str, int] | None = None
    feedback_audience: str = "ajan-feedback"
    feedback_issuer: str | None = None
    #: An external identity provider's JWKS; None: the cluster's service-account issuer.
    feedback_jwks_url: str | None = None
    #: How an identity provider's tokens map to a user and groups (as kube-apiserver's --oidc-*).
    feedback_username_claim: str = "sub"
    feedback_username_prefix: str = ""
    feedback_groups_claim: str = "groups"
    feedback_groups_prefix: str = ""
    #: Actions (annotations not counted) the whole operator takes per hour at most.
    max_actions_per_hour: int = 20
    #: Where /metrics and /readyz alone are served; None: not started.
    metrics_listen: tuple[str, int] | None = None
    #: Watching named namespaces (--namespace) rather than the whole cluster.
    namespaced: bool = False
    #: The policies this replica owns (--shards): all of them unless sharded.
    shard: Shard = field(default_factory=Shard)


class Runtime:
    """What all evaluations share: configuration, HTTP pool, API store, clock."""

    def __init__(
        self,
        config: OperatorConfig,
        http: httpx.AsyncClient,
        kube: KubeStore,
        clock: Callable[[], float] = time.time,
        rollouts: RolloutClient | None = None,
        feedback: FeedbackStore | None = None,
        classifier: SeverityClassifier | None = None,
    ) -> None:
        self.config = config
        #: The severity model (advisory: its probabilities go into the evidence).
        self.classifier: SeverityClassifier = classifier or RuleSeverityClassifier()
        #: Operators' verdicts (Redis); without it every decision is made as if none were given.
        self.feedback = feedback
        #: Verdicts set with kubectl that this process has copied into Redis (or is copying).
        self.stored_verdicts: set[tuple[str, ...]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.http = http
        self.kube = kube
        self.clock = clock
        #: Without it plans are only proposed (a benchmark of evaluation alone).
        self.rollouts = rollouts
        self.limit = OperatorLimit(config.max_actions_per_hour)
        self._sources: dict[str, ThrottledSource] = {}
        self._wakeups: dict[tuple[str, str], asyncio.Event] = {}
        self.analysis_slots = asyncio.Semaphore(config.concurrency)

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` in the background until it ends or the operator stops (`close`)."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Cancel background work and close the shared clients."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.http.aclose()
        self.kube.close()
        if self.rollouts is not None:
            self.rollouts.close()
        if self.feedback is not None:
            await self.feedback.close()

    def wakeup(self, namespace: str, policy: str) -> asyncio.Event:
        """The event that wakes a policy's evaluation loop before its interval is up."""
        return self._wakeups.setdefault((namespace, policy), asyncio.Event())

    def wake(self, namespace: str, policy: str) -> None:
        """Evaluate the policy now (a person approved or rejected one of its plans)."""
        self.wakeup(namespace, policy).set()

    def source(self, url: str) -> ThrottledSource:
        """The throttled source for a Prometheus URL (one per URL, made on first use)."""
        if url not in self._sources:
            prometheus = PrometheusSource(self.http, url, timeout_s=self.config.query_timeout_s)
            self._sources[url] = ThrottledSource(prometheus, asyncio.Semaphore(self.config.concurrency))
        return self._sources[url]
