"""ajan's own resources on the API server: RemediationPlans and the CorrelationPolicy status.

kopf watches the policies; what the operator *writes* goes through this small store. It wraps the
official client, whose calls block, in a thread pool of its own, so a slow API server ties up
those threads and never the event loop that runs every policy's evaluation.

Patches are JSON merge patches (the status subresource for status), sent with field manager
``ajan``. A create that meets 409 AlreadyExists returns the existing object: the operator names its
plans deterministically, so after a crash "create again" is how it finds the plan it had made.

Plans cross this boundary as :class:`~ajan.models.RemediationPlan`: validated once here, as they are
read, so the services work with typed fields; a dict exists only in the request that writes one.
The CRD is generated from the same model, so whatever the API server stored validates.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from ajan.models import GROUP, VERSION, RemediationPlan

FIELD_MANAGER: Final = "ajan"
PLANS: Final = "remediationplans"
POLICIES: Final = "correlationpolicies"

#: The namespace of the pod's service account, mounted beside its token.
SERVICE_ACCOUNT_NAMESPACE: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")

T = TypeVar("T")

#: What a refused write's condition tells the person reading it to check.
FORBIDDEN_HINT: Final = "no plan is made or moved on until ajan's role allows it again (manifests/rbac.yaml)"


def refusal(err: ApiException) -> str:
    """The API server's own sentence for a refused request (``... is forbidden: User "x" cannot
    patch resource ...``), or its status line when the body holds none."""
    try:
        message = json.loads(err.body or "").get("message")
    except (ValueError, AttributeError):
        message = None
    return str(message) if message else f"HTTP {err.status} {err.reason}"


def api_client(
    kubeconfig: str | None = None, *, first: Literal["in-cluster", "kubeconfig"] = "in-cluster"
) -> tuple[client.ApiClient, str | None]:
    """An API client, and the namespace it defaults to (the kubeconfig context's, or the pod's).

    Parameters
    ----------
    kubeconfig
        A kubeconfig file; None for $KUBECONFIG, else ~/.kube/config.
    first
        ``"in-cluster"``: the pod's service account, else the kubeconfig. kopf logs in this way, and
        the operator must write as the identity it watches as (its Role is what both need).
        ``"kubeconfig"``: a kubeconfig when one is named or ~/.kube/config exists, else the service
        account, as kubectl does: for a command a person runs, a $KUBECONFIG set in a pod means them,
        not the pod.

    Raises
    ------
    kubernetes.config.ConfigException
        No configuration that works.
    OSError
        The kubeconfig could not be read.
    """
    if first == "kubeconfig":
        default = Path(os.path.expanduser(config.kube_config.KUBE_CONFIG_DEFAULT_LOCATION))
        if kubeconfig or os.environ.get("KUBECONFIG") or default.exists():
            return _from_kubeconfig(kubeconfig)
        return _in_cluster()
    try:
        return _in_cluster()
    except config.ConfigException:
        return _from_kubeconfig(kubeconfig)


def _in_cluster() -> tuple[client.ApiClient, str | None]:
    configuration = client.Configuration()
    config.load_incluster_config(client_configuration=configuration)
    namespace = SERVICE_ACCOUNT_NAMESPACE.read_text().strip() if SERVICE_ACCOUNT_NAMESPACE.exists() else None
    return client.ApiClient(configuration), namespace


def _from_kubeconfig(kubeconfig: str | None) -> tuple[client.ApiClient, str | None]:
    # Not persisted: refreshing a token must not rewrite a person's kubeconfig behind their back.
    api = config.new_client_from_config(config_file=kubeconfig, persist_config=False)
    _, active = config.list_kube_config_contexts(config_file=kubeconfig)
    return api, (active.get("context") or {}).get("namespace")


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

    async def get_plan(self, namespace: str, name: str) -> RemediationPlan | None:
        """The plan, or None if it does not exist."""
        try:
            plan: Object = await self._call(
                self._custom.get_namespaced_custom_object, GROUP, VERSION, namespace, PLANS, name
            )
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        return RemediationPlan.model_validate(plan)

    async def create_plan(self, namespace: str, new: RemediationPlan) -> tuple[RemediationPlan, bool]:
        """Create the plan; ``(object, True)``, or ``(existing, False)`` when the name is taken."""
        try:
            plan: Object = await self._call(
                self._custom.create_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                PLANS,
                new.to_kube(),
                field_manager=FIELD_MANAGER,
            )
        except ApiException as err:
            if err.status != 409:
                raise
            existing = await self.get_plan(namespace, new.name)
            if existing is None:  # deleted between the two calls: let the next evaluation retry
                raise
            return existing, False
        return RemediationPlan.model_validate(plan), True

    async def list_plans(self, namespace: str, selector: str) -> list[RemediationPlan]:
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
        ordered = sorted(
            items, key=lambda o: (o["metadata"].get("creationTimestamp", ""), o["metadata"]["name"])
        )
        return [RemediationPlan.model_validate(item) for item in ordered]

    async def patch_plan_spec(
        self, namespace: str, name: str, spec: Mapping[str, Any]
    ) -> RemediationPlan | None:
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
        return RemediationPlan.model_validate(plan)

    async def patch_plan_status(
        self, namespace: str, name: str, status: Mapping[str, Any]
    ) -> RemediationPlan:
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
        return RemediationPlan.model_validate(plan)

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
