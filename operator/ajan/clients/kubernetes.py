"""ajan's own resources on the API server: RemediationPlans and the CorrelationPolicy status.

kopf watches the policies; what the operator *writes* goes through this small store. It wraps the
official client, whose calls block, in a thread pool of its own, so a slow API server ties up
those threads and never the event loop that runs every policy's evaluation.

Patches are JSON merge patches (the status subresource for status), sent with field manager
``ajan``. A create that meets 409 AlreadyExists returns the existing object: the operator names its
plans deterministically, so after a crash "create again" is how it finds the plan it had made.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, Final, TypeVar

from kubernetes import client
from kubernetes.client.rest import ApiException

from ajan.models import GROUP, VERSION

FIELD_MANAGER: Final = "ajan"
PLANS: Final = "remediationplans"
POLICIES: Final = "correlationpolicies"

T = TypeVar("T")


async def call_in(pool: ThreadPoolExecutor, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` in a thread of ``pool``, awaited, in a copy of the caller's context.

    The copy is why: the Kubernetes client's own log lines in that thread then name the namespace,
    policy and plan, and join the caller's trace, like the lines of the event loop do.
    """
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    return await loop.run_in_executor(pool, partial(context.run, fn, *args, **kwargs))


Object = dict[str, Any]


class KubeStore:
    """Async access to plans and policy status through the official client.

    Parameters
    ----------
    api
        An authenticated ``kubernetes.client.ApiClient``.
    max_workers
        Threads for API calls: the most calls in flight at once.
    """

    def __init__(self, api: client.ApiClient, *, max_workers: int = 8) -> None:
        self._api = api
        self._custom = client.CustomObjectsApi(api)
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="ajan-kube")

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await call_in(self._pool, fn, *args, **kwargs)

    def close(self) -> None:
        """Stop the thread pool (in-flight calls finish) and close the client's connections."""
        self._pool.shutdown(wait=True)
        self._api.close()

    async def get_plan(self, namespace: str, name: str) -> Object | None:
        """The plan, or None if it does not exist."""
        try:
            plan: Object = await self._call(
                self._custom.get_namespaced_custom_object, GROUP, VERSION, namespace, PLANS, name
            )
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        return plan

    async def create_plan(self, namespace: str, body: Mapping[str, Any]) -> tuple[Object, bool]:
        """Create the plan; ``(object, True)``, or ``(existing, False)`` when the name is taken."""
        try:
            plan: Object = await self._call(
                self._custom.create_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                PLANS,
                dict(body),
                field_manager=FIELD_MANAGER,
            )
        except ApiException as err:
            if err.status != 409:
                raise
            existing = await self.get_plan(namespace, body["metadata"]["name"])
            if existing is None:  # deleted between the two calls: let the next evaluation retry
                raise
            return existing, False
        return plan, True

    async def list_plans(self, namespace: str, selector: str) -> list[Object]:
        """Plans in ``namespace`` matching the label selector, oldest first."""
        result = await self._call(
            self._custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLANS,
            label_selector=selector,
        )
        items: list[Object] = result.get("items", [])
        return sorted(
            items, key=lambda o: (o["metadata"].get("creationTimestamp", ""), o["metadata"]["name"])
        )

    async def patch_plan_spec(self, namespace: str, name: str, spec: Mapping[str, Any]) -> Object | None:
        """Merge ``spec`` into the plan's spec (a person's feedback); None if the plan is gone."""
        try:
            plan: Object = await self._call(
                self._custom.patch_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                PLANS,
                name,
                {"spec": dict(spec)},
                field_manager=FIELD_MANAGER,
            )
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        return plan

    async def patch_plan_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> Object:
        """Merge ``status`` into the plan's status."""
        plan: Object = await self._call(
            self._custom.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            namespace,
            PLANS,
            name,
            {"status": dict(status)},
            field_manager=FIELD_MANAGER,
        )
        return plan

    async def patch_policy_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> bool:
        """Merge ``status`` into the policy's status; False if the policy is gone."""
        try:
            await self._call(
                self._custom.patch_namespaced_custom_object_status,
                GROUP,
                VERSION,
                namespace,
                POLICIES,
                name,
                {"status": dict(status)},
                field_manager=FIELD_MANAGER,
            )
        except ApiException as err:
            if err.status == 404:
                return False
            raise
        return True
