"""Every write ajan makes to an Argo Rollout, as the Argo Rollouts kubectl plugin makes it.

ajan acts on a canary with the plugin's own verbs, so a Rollout ajan paused looks exactly like one a
person paused with ``kubectl argo rollouts pause``, and the Argo controller, dashboards and humans
need no ajan-specific knowledge to read or undo it. The patches below are the plugin's JSON documents
(v1.10.0, ``pkg/kubectl-argo-rollouts/cmd/...``), same keys in the same order; only the whitespace
differs (the official client writes ``json.dumps`` output, the plugin compact Go string constants):

- pause     ``{"spec": {"paused": true}}``, merge patch, main resource;
- abort     ``{"status": {"abort": true}}``, merge patch, status subresource;
- retry     ``{"status": {"abort": false}}``, merge patch, status subresource;
- unpause   ``{"spec": {"paused": false}}``, merge patch, main resource (promote's ``unpausePatch``
            alone: how ajan reverts its own pause);
- promote   ``{"status": {"pauseConditions": null}}``, merge patch, status subresource, then
            ``{"spec": {"paused": false}}``, merge patch, main resource (variants below);
- rollback  ``[{"op": "replace", "path": "/spec/template", "value": ...}]``, JSON patch, main resource;
- annotate  ``{"metadata": {"annotations": {"aiops.ajan.dev/...": ...}}}``, merge patch, main resource.

- pause: ``cmd/pause/pause.go`` ``NewCmdPause``.
- abort / retry: ``cmd/abort/abort.go`` ``AbortRollout`` and ``cmd/retry/retry.go`` ``RetryRollout``.
  ``status`` belongs to the status subresource: a patch of ``status`` through the main resource is
  silently dropped by the API server. The plugin falls back to the main resource only when the
  status subresource answers 404 (a Rollout CRD installed without it, as very old ones were);
  Argo's CRD declares it, and ajan does not fall back: a 404 means the Rollout is gone.
- promote: ``cmd/promote/promote.go`` ``PromoteRollout`` / ``getPatches``. The plugin reads the
  Rollout and decides: unpause the spec if ``spec.paused``; on the status subresource, clear
  ``pauseConditions`` if there are any (also clearing ``controllerPause`` and moving to the next
  step when the current step's analysis was Inconclusive); with no pause condition on a canary with
  steps, it *skips to the next step* (``{"status":{"pauseConditions":null,"currentStepIndex":N}}``).
  ``--full`` sends ``{"status":{"promoteFull":true}}`` (when the canary is not yet stable) and the
  unpause. The status patch goes first, as in the plugin. The deprecated ``--skip-current-step`` and
  ``--skip-all-steps`` are not reproduced.
- rollback: ``cmd/undo/undo.go`` ``RunUndoRollout``: the previous revision is the ReplicaSet owned
  (controller reference) by the Rollout with the second-highest ``rollout.argoproj.io/revision``
  annotation (``rolloutRevision``); nothing is sent when the Rollout's template already equals it
  (``equalIgnoreHash``: Kubernetes' semantic "derivative" equality, ignoring the
  ``rollouts-pod-template-hash`` label), and the template is sent without that label. The plugin's
  body is a single ``replace`` op (``getRolloutPatch``); ajan puts a ``replace`` of
  ``/metadata/resourceVersion`` with the version it read before it. Without it the API server
  applies the patch to whatever the latest object is (it retries internally on conflicts), so a
  template changed by someone after ajan's read would be overwritten by a decision made on the old
  one; with it, the update carries a resourceVersion precondition and a changed Rollout answers
  409 Conflict, on which ajan re-reads and decides again. (A ``test`` op would fail with a bare
  422 "Invalid", indistinguishable from a schema error.) Rollouts with ``spec.workloadRef`` (the
  plugin then patches the referenced Deployment/ReplicaSet/PodTemplate) are refused.
- annotate: ajan's own (the plugin has no such verb): ``aiops.ajan.dev/plan``, ``.../action``,
  ``.../confidence`` and any extra ``aiops.ajan.dev/`` annotations, in one merge patch.

Every write carries ``fieldManager=ajan``, so ``managedFields`` says which fields ajan set. The
patches are pure data (:class:`RolloutPatch`); :func:`applied` tells whether a Rollout already shows
a patch's effect, so an action interrupted by a crash is not repeated (promote in particular is not
idempotent: promoting an unpaused canary skips a step). :class:`RolloutClient` sends them through
the official client's raw API (it sends merge patches only), in a thread pool of its own.
"""

from __future__ import annotations

import copy
import json
import math
import re
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal, TypeVar

from kubernetes import client
from kubernetes.client.rest import ApiException

from ajan.clients.kubernetes import call_in
from ajan.models import GROUP

FIELD_MANAGER: Final = "ajan"
COMPONENT: Final = "ajan"
ROLLOUTS_GROUP: Final = "argoproj.io"
ROLLOUTS_VERSION: Final = "v1alpha1"
ROLLOUTS_API_VERSION: Final = f"{ROLLOUTS_GROUP}/{ROLLOUTS_VERSION}"
ROLLOUT_PATH: Final = f"/apis/{ROLLOUTS_API_VERSION}/namespaces/{{namespace}}/rollouts/{{name}}"
REVISION_ANNOTATION: Final = "rollout.argoproj.io/revision"  # undo.go revisionAnnotation
POD_TEMPLATE_HASH_LABEL: Final = "rollouts-pod-template-hash"  # v1alpha1.DefaultRolloutUniqueLabelKey
ANNOTATION_PREFIX: Final = f"{GROUP}/"
PLAN_ANNOTATION: Final = f"{ANNOTATION_PREFIX}plan"
ACTION_ANNOTATION: Final = f"{ANNOTATION_PREFIX}action"
CONFIDENCE_ANNOTATION: Final = f"{ANNOTATION_PREFIX}confidence"

PatchType = Literal["merge", "json"]
Subresource = Literal["", "status"]
Verb = Literal["pause", "unpause", "abort", "retry", "promote", "rollback", "annotate"]
Object = dict[str, Any]
T = TypeVar("T")

CONTENT_TYPES: Final[Mapping[PatchType, str]] = {
    "merge": "application/merge-patch+json",  # types.MergePatchType
    "json": "application/json-patch+json",  # types.JSONPatchType
}
_INT64 = re.compile(r"[+-]?[0-9]+")  # what Go's strconv.ParseInt(v, 10, 64) accepts, range aside


class RolloutError(Exception):
    """An action that cannot be taken on this Rollout as it stands."""


class NoRevisionError(RolloutError):
    """Rollback without a revision to go back to (the plugin's "no revision found for rollout")."""


class UnsupportedRolloutError(RolloutError):
    """A Rollout shape ajan does not write to (``spec.workloadRef``)."""


class RollbackConflictError(RolloutError):
    """The Rollout kept changing between ajan's read and its patch; every attempt conflicted."""


@dataclass(frozen=True)
class RolloutPatch:
    """One request's worth of change to a Rollout: what the plugin would send, as data.

    ``body`` is the JSON document sent (a dict for a merge patch, the op list for a JSON patch);
    treat it as read-only.
    """

    action: Verb
    type: PatchType
    subresource: Subresource
    body: Any
    mirrors: str
    """The plugin file and function whose request this reproduces."""

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.type]

    def render(self) -> str:
        """The exact request body: the official client's REST layer sends ``json.dumps(body)``.

        Key order is the builders' (the plugin's, and the API server's for a rollback template).
        """
        return json.dumps(self.body)


# --- builders ---------------------------------------------------------------------------------------


def pause() -> RolloutPatch:
    """``kubectl argo rollouts pause``."""
    return RolloutPatch("pause", "merge", "", {"spec": {"paused": True}}, "cmd/pause/pause.go NewCmdPause")


def abort() -> RolloutPatch:
    """``kubectl argo rollouts abort``: the previous (stable) ReplicaSet takes all traffic again."""
    return RolloutPatch(
        "abort", "merge", "status", {"status": {"abort": True}}, "cmd/abort/abort.go AbortRollout"
    )


def retry() -> RolloutPatch:
    """``kubectl argo rollouts retry rollout``: leave the aborted state (the canary starts again)."""
    return RolloutPatch(
        "retry", "merge", "status", {"status": {"abort": False}}, "cmd/retry/retry.go RetryRollout"
    )


def unpause() -> RolloutPatch:
    """Undo ``kubectl argo rollouts pause`` and nothing else: the plugin's ``unpausePatch``.

    What ajan sends to revert its own pause (a false positive). Unlike a promote it leaves
    ``status.pauseConditions`` alone: a canary step's own pause stays, and the canary does not
    move on a step because ajan was wrong.
    """
    return RolloutPatch(
        "unpause", "merge", "", {"spec": {"paused": False}}, "cmd/promote/promote.go unpausePatch"
    )


def unpause_after(rollout: Mapping[str, Any]) -> tuple[RolloutPatch, ...]:
    """The unpause patch if ``rollout`` is paused, to send after an abort or a rollback: Argo's
    controller skips ReplicaSet reconciliation while ``spec.paused`` holds, so either would be
    recorded and never carried out. After, never before: an unpaused canary not yet aborted could
    take its next step (found against Argo's controller, tests/argo/test_beside_analysis.py)."""
    return (unpause(),) if (rollout.get("spec") or {}).get("paused") is True else ()


def _canary(rollout: Mapping[str, Any]) -> Mapping[str, Any] | None:
    canary = ((rollout.get("spec") or {}).get("strategy") or {}).get("canary")
    return canary if isinstance(canary, Mapping) else None


def _next_step_index(rollout: Mapping[str, Any]) -> int | None:
    """getPatches' use of replicasetutil.GetCurrentCanaryStep: the current step index plus one,
    capped at the number of steps; None without a canary with steps."""
    canary = _canary(rollout)
    steps = (canary or {}).get("steps") or []
    if not steps:
        return None
    index = (rollout.get("status") or {}).get("currentStepIndex")
    index = 0 if index is None else int(index)
    return index + 1 if index < len(steps) else index


def _inconclusive(rollout: Mapping[str, Any]) -> bool:
    """promote.go isInconclusive: the current step's analysis ended Inconclusive."""
    run = ((rollout.get("status") or {}).get("canary") or {}).get("currentStepAnalysisRunStatus")
    return _canary(rollout) is not None and isinstance(run, Mapping) and run.get("status") == "Inconclusive"


def promote(rollout: Mapping[str, Any], *, full: bool = False) -> tuple[RolloutPatch, ...]:
    """``kubectl argo rollouts promote [--full]``: the patches the plugin sends for this state.

    Status patch first (status subresource), then spec patch (main resource), as
    ``PromoteRollout`` sends them; zero, one or two patches. Not idempotent: on a canary with no
    pause condition it advances ``currentStepIndex`` — check :func:`applied` before repeating.
    """
    spec = rollout.get("spec") or {}
    status = rollout.get("status") or {}
    mirrors = "cmd/promote/promote.go PromoteRollout/getPatches"
    spec_body: Object | None = None
    status_body: Object | None = None
    if spec.get("paused") is True:
        spec_body = {"spec": {"paused": False}}  # unpausePatch
    if full:
        if (status.get("currentPodHash") or "") != (status.get("stableRS") or ""):
            status_body = {"status": {"promoteFull": True}}  # promoteFullPatch
    else:
        pause_conditions = status.get("pauseConditions") or []
        if _inconclusive(rollout) and pause_conditions and status.get("controllerPause") is True:
            index = _next_step_index(rollout)
            if index is not None:  # clearPauseConditionsAndControllerPausePatch
                status_body = {
                    "status": {"pauseConditions": None, "controllerPause": False, "currentStepIndex": index}
                }
        elif pause_conditions:
            status_body = {"status": {"pauseConditions": None}}  # clearPauseConditionsPatch
        elif _canary(rollout) is not None:
            index = _next_step_index(rollout)
            if index is not None:  # clearPauseConditionsPatchWithStep
                status_body = {"status": {"pauseConditions": None, "currentStepIndex": index}}
    patches = []
    if status_body is not None:
        patches.append(RolloutPatch("promote", "merge", "status", status_body, mirrors))
    if spec_body is not None:
        patches.append(RolloutPatch("promote", "merge", "", spec_body, mirrors))
    return tuple(patches)


def annotate(
    plan: str, action: str, confidence: float, extra: Mapping[str, str] | None = None
) -> RolloutPatch:
    """ajan's evidence on the Rollout: the plan, its recommended action and the confidence.

    ``extra`` keys without a prefix get ``aiops.ajan.dev/``; ajan writes no other prefix.
    """
    if not math.isfinite(confidence) or not 0.0 <= confidence <= 1.0:
        raise ValueError(f"confidence must be within [0, 1], not {confidence!r}")
    annotations = {
        PLAN_ANNOTATION: plan,
        ACTION_ANNOTATION: str(action),
        CONFIDENCE_ANNOTATION: f"{confidence:.3f}",
    }
    extras: dict[str, str] = {}
    for key, value in (extra or {}).items():
        full_key = key if "/" in key else ANNOTATION_PREFIX + key
        if not full_key.startswith(ANNOTATION_PREFIX):
            raise ValueError(f"ajan writes only {ANNOTATION_PREFIX} annotations, not {key!r}")
        extras[full_key] = str(value)
    annotations.update(sorted(extras.items()))  # a stable order, whatever the caller's
    return RolloutPatch(
        "annotate", "merge", "", {"metadata": {"annotations": annotations}}, "ajan (no plugin verb)"
    )


def _revision(replicaset: Mapping[str, Any]) -> int | None:
    """undo.go revision: the annotation as an int64; a missing annotation is revision 0, an
    unparsable one is skipped (None)."""
    value = ((replicaset.get("metadata") or {}).get("annotations") or {}).get(REVISION_ANNOTATION)
    if value is None:
        return 0
    if not isinstance(value, str) or not _INT64.fullmatch(value):
        return None
    number = int(value)
    return number if -(2**63) <= number < 2**63 else None


def _controlled_by(obj: Mapping[str, Any], owner: Mapping[str, Any]) -> bool:
    """metav1.IsControlledBy: the controller owner reference carries the owner's uid."""
    uid = (owner.get("metadata") or {}).get("uid")
    return any(
        ref.get("controller") is True and ref.get("uid") == uid
        for ref in (obj.get("metadata") or {}).get("ownerReferences") or []
    )


def revision_replicaset(
    rollout: Mapping[str, Any], replicasets: Iterable[Mapping[str, Any]], to_revision: int = 0
) -> Mapping[str, Any]:
    """undo.go rolloutRevision: the ReplicaSet to roll back to (``to_revision`` 0: the previous one).

    Only ReplicaSets the Rollout controls count. "Previous" is the plugin's single pass over the
    list: the second-highest revision, ties kept in list order.
    """
    name = (rollout.get("metadata") or {}).get("name")
    # The plugin's variables and their -1 start, so negative revisions are ignored as in Go.
    latest_revision, latest_rs = -1, None
    previous_revision: int = -1
    previous_rs: Mapping[str, Any] | None = None
    for rs in replicasets:
        if not _controlled_by(rs, rollout):
            continue
        number = _revision(rs)
        if number is None:
            continue
        if to_revision == 0:
            if latest_revision < number:
                previous_revision, previous_rs = latest_revision, latest_rs
                latest_revision, latest_rs = number, rs
            elif previous_revision < number:
                previous_revision, previous_rs = number, rs
        elif number == to_revision:
            return rs
    if to_revision > 0:
        raise NoRevisionError(
            f"unable to find specified revision {to_revision} in history of rollout {name!r}"
        )
    if previous_rs is None:
        raise NoRevisionError(f"no revision found for rollout {name!r}: it has no previous ReplicaSet")
    return previous_rs


def _derivative(a: Any, b: Any) -> bool:
    """apimachinery's ``equality.Semantic.DeepDerivative`` on unstructured (JSON) values.

    Whatever ``a`` leaves unset or empty is ignored; what it sets must be equal in ``b``. Lists
    compare element by element over ``a``'s length.
    """
    if a is None:
        return True
    if b is None or type(a) is not type(b):
        return False
    if isinstance(a, dict):
        if not a:
            return True
        if len(a) > len(b):
            return False
        return all(key in b and _derivative(value, b[key]) for key, value in a.items())
    if isinstance(a, list):
        if not a:
            return True
        if len(a) > len(b):
            return False
        return all(_derivative(x, y) for x, y in zip(a, b, strict=False))
    if isinstance(a, str) and not a:
        return True
    return bool(a == b)


def _without_hash(template: Mapping[str, Any]) -> Object:
    copied: Object = copy.deepcopy(dict(template))
    labels = (copied.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(POD_TEMPLATE_HASH_LABEL, None)
    return copied


def template_matches(rollout: Mapping[str, Any], template: Mapping[str, Any]) -> bool:
    """undo.go equalIgnoreHash: the Rollout's template is (semantically) ``template``."""
    current = (rollout.get("spec") or {}).get("template")
    if not isinstance(current, Mapping):
        return False
    return _derivative(_without_hash(current), _without_hash(template))


def rollback(
    rollout: Mapping[str, Any],
    replicasets: Iterable[Mapping[str, Any]],
    *,
    to_revision: int = 0,
    guard: bool = True,
) -> RolloutPatch | None:
    """``kubectl argo rollouts undo [--to-revision N]``; None when the template already matches.

    With ``guard`` (the default) the patch first sets ``metadata.resourceVersion`` to the version
    this decision was made on: a precondition, 409 Conflict if the Rollout changed since. Raises
    :class:`NoRevisionError` without a revision to go back to.
    """
    if (rollout.get("spec") or {}).get("workloadRef"):
        raise UnsupportedRolloutError(
            f"rollout {(rollout.get('metadata') or {}).get('name')!r} uses spec.workloadRef: "
            "its template lives in another object"
        )
    target = revision_replicaset(rollout, replicasets, to_revision)
    template = (target.get("spec") or {}).get("template") or {}
    if template_matches(rollout, template):
        return None
    value = _without_hash(template)
    metadata = value.get("metadata")
    if isinstance(metadata, dict) and metadata.get("labels") == {}:
        del metadata["labels"]  # Go's encoding/json omits the emptied map (labels,omitempty)
    ops: list[Object] = []
    if guard:
        version = (rollout.get("metadata") or {}).get("resourceVersion")
        if not version:
            raise ValueError("a guarded rollback needs the rollout's metadata.resourceVersion")
        ops.append({"op": "replace", "path": "/metadata/resourceVersion", "value": version})
    ops.append({"op": "replace", "path": "/spec/template", "value": value})  # getRolloutPatch
    return RolloutPatch("rollback", "json", "", ops, "cmd/undo/undo.go RunUndoRollout/getRolloutPatch")


# --- idempotence ------------------------------------------------------------------------------------


def _shows(obj: Any, patch: Any) -> bool:
    """``obj`` already holds what the merge patch ``patch`` sets (RFC 7386).

    null and false match an absent field too: Argo's controller writes its status from Go structs
    with ``omitempty``, so a cleared or false field disappears rather than staying null/false.
    """
    if isinstance(patch, Mapping):
        current = obj if isinstance(obj, Mapping) else {}
        return all(_shows(current.get(key), value) for key, value in patch.items())
    if patch is None:
        return obj is None
    if patch is False:
        return obj is None or obj is False
    return type(obj) is type(patch) and bool(obj == patch)


def applied(rollout: Mapping[str, Any], patch: RolloutPatch) -> bool:
    """Whether ``rollout`` already shows ``patch``'s effect (paused, aborted, annotated, template).

    A rollback counts as applied when the template matches the one it restores, whatever the
    resourceVersion it was guarded with.
    """
    if patch.type == "json":
        values = [op["value"] for op in patch.body if op.get("path") == "/spec/template"]
        return bool(values) and all(template_matches(rollout, value) for value in values)
    return _shows(rollout, patch.body)


def object_reference(obj: Mapping[str, Any]) -> Object:
    """An ObjectReference to ``obj`` (for an Event's ``involvedObject``)."""
    metadata = obj.get("metadata") or {}
    ref = {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "namespace": metadata.get("namespace"),
        "name": metadata.get("name"),
        "uid": metadata.get("uid"),
        "resourceVersion": metadata.get("resourceVersion"),
    }
    return {key: value for key, value in ref.items() if value}


def _selector(rollout: Mapping[str, Any]) -> str:
    """The Rollout's spec.selector as a label-selector string (undo.go extractLabelSelector)."""
    selector = (rollout.get("spec") or {}).get("selector") or {}
    terms = [f"{key}={value}" for key, value in sorted((selector.get("matchLabels") or {}).items())]
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        if operator == "In":
            terms.append(f"{key} in ({','.join(values)})")
        elif operator == "NotIn":
            terms.append(f"{key} notin ({','.join(values)})")
        elif operator == "Exists":
            terms.append(key)
        elif operator == "DoesNotExist":
            terms.append(f"!{key}")
        else:
            raise ValueError(f"unknown label selector operator {operator!r}")
    return ",".join(terms)


# --- the client -------------------------------------------------------------------------------------


class RolloutClient:
    """Async reads and writes of Argo Rollouts through the official client.

    Parameters
    ----------
    api_client
        An authenticated ``kubernetes.client.ApiClient``.
    max_workers
        Threads for API calls: the most calls in flight at once.
    request_timeout
        Seconds each API call may take (connect, and read).
    instance
        ``reportingInstance`` of the Events (default: the host name, i.e. the pod name).
    """

    def __init__(
        self,
        api_client: client.ApiClient,
        *,
        max_workers: int = 4,
        request_timeout: float = 30.0,
        instance: str | None = None,
    ) -> None:
        self._api = api_client
        self._timeout = (request_timeout, request_timeout)  # the REST layer ignores a bare float
        self._instance = instance or socket.gethostname()
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="ajan-rollouts")

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await call_in(self._pool, fn, *args, **kwargs)

    def close(self) -> None:
        """Stop the thread pool (in-flight calls finish); the ApiClient stays the caller's."""
        self._pool.shutdown(wait=True)

    async def _raw(
        self,
        method: str,
        path: str,
        path_params: Mapping[str, str],
        *,
        query: Sequence[tuple[str, str]] = (),
        content_type: str | None = None,
        body: Any = None,
    ) -> Object:
        headers = {"Accept": "application/json"}
        if content_type is not None:
            headers["Content-Type"] = content_type
        result: Object = await self._call(
            self._api.call_api,
            path,
            method,
            path_params=dict(path_params),
            query_params=list(query),
            header_params=headers,
            body=body,
            response_type="object",  # the server's JSON as is: no model, field order kept
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
            _request_timeout=self._timeout,
        )
        return result

    async def get(self, namespace: str, name: str) -> Object:
        """The Rollout (``ApiException`` 404 if there is none)."""
        return await self._raw("GET", ROLLOUT_PATH, {"namespace": namespace, "name": name})

    async def replicasets(self, namespace: str, rollout: Mapping[str, Any]) -> list[Object]:
        """The ReplicaSets the Rollout controls: its selector's, with its uid as controller."""
        result = await self._raw(
            "GET",
            "/apis/apps/v1/namespaces/{namespace}/replicasets",
            {"namespace": namespace},
            query=[("labelSelector", _selector(rollout))],
        )
        return [rs for rs in result.get("items") or [] if _controlled_by(rs, rollout)]

    async def apply(self, namespace: str, name: str, patch: RolloutPatch) -> Object:
        """Send ``patch`` as is (content type, subresource, ``fieldManager=ajan``); the new object."""
        path = ROLLOUT_PATH + ("/" + patch.subresource if patch.subresource else "")
        return await self._raw(
            "PATCH",
            path,
            {"namespace": namespace, "name": name},
            query=[("fieldManager", FIELD_MANAGER)],
            content_type=patch.content_type,
            # A list for a JSON patch: given anything else, the REST layer would quietly switch
            # the content type to a strategic merge patch.
            body=patch.body,
        )

    async def promote(self, namespace: str, name: str, *, full: bool = False) -> tuple[RolloutPatch, ...]:
        """Read the Rollout and send the plugin's promote patches for it, in order; those sent."""
        rollout = await self.get(namespace, name)
        patches = promote(rollout, full=full)
        for patch in patches:
            await self.apply(namespace, name, patch)
        return patches

    async def rollback(
        self,
        namespace: str,
        name: str,
        *,
        to_revision: int = 0,
        attempts: int = 3,
        before_patch: Callable[[Object], Awaitable[None]] | None = None,
    ) -> RolloutPatch | None:
        """Undo to the previous revision; the patch applied, or None if the template already matched.

        Each attempt reads the Rollout and its ReplicaSets, decides, and sends a patch guarded by
        the resourceVersion it read; a conflict (the Rollout changed meanwhile) starts a new
        attempt on fresh state. ``before_patch`` is called with the Rollout read, just before the
        patch is sent: the one fault a real API server cannot be made to show on demand, a
        concurrent edit in that window, is injected there by the tests. Raises
        :class:`NoRevisionError`, :class:`UnsupportedRolloutError`, or, after ``attempts``
        conflicts, :class:`RollbackConflictError`.
        """
        for _ in range(attempts):
            rollout = await self.get(namespace, name)
            replicasets = await self.replicasets(namespace, rollout)
            patch = rollback(rollout, replicasets, to_revision=to_revision)
            if patch is None:
                return None
            if before_patch is not None:
                await before_patch(rollout)
            try:
                await self.apply(namespace, name, patch)
            except ApiException as err:
                if err.status == 409:  # changed since the read: decide again on fresh state
                    continue
                raise
            return patch
        raise RollbackConflictError(
            f"rollout {namespace}/{name} changed during each of {attempts} rollback attempts"
        )

    async def post_event(
        self,
        namespace: str,
        involved_object_ref: Mapping[str, Any],
        reason: str,
        message: str,
        type_: str = "Normal",
    ) -> Object:
        """Record a core/v1 Event about the referenced object (see :func:`object_reference`)."""
        now = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
        ref = dict(involved_object_ref)
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            # client-go's recorder names events "<object>.<unix nanoseconds in hex>"
            "metadata": {"name": f"{ref.get('name', 'ajan')}.{time.time_ns():x}", "namespace": namespace},
            "involvedObject": ref,
            "reason": reason,
            "message": message,
            "type": type_,
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": self._instance,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        return await self._raw(
            "POST",
            "/api/v1/namespaces/{namespace}/events",
            {"namespace": namespace},
            query=[("fieldManager", FIELD_MANAGER)],
            content_type="application/json",
            body=event,
        )
