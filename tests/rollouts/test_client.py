"""ajan's writes to Argo Rollouts against a real kube-apiserver serving Argo's own Rollout CRD.

Each action is checked on the whole object: the Rollout after the patch is the Rollout before it
with the rendered patch applied (RFC 7386 / RFC 6902, done here locally) and nothing else changed,
apart from what the server itself maintains (resourceVersion, generation, managedFields). That
also shows ``render()`` is what the server received; one test records the bytes on the wire.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from ajan.clients import rollouts as ro
from ajan.clients.rollouts import RolloutClient, RolloutPatch
from support.kube import Kube
from support.rollouts import GROUP, HASH_LABEL, PLURAL, VERSION, RolloutKit

T = TypeVar("T")
Object = dict[str, Any]
SERVER_MAINTAINED = ("resourceVersion", "generation", "managedFields")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@pytest.fixture
def rollouts(admin_api: client.ApiClient) -> Iterator[RolloutClient]:
    rc = RolloutClient(admin_api, max_workers=2, instance="ajan-test")
    yield rc
    rc.close()


def strip(obj: Object) -> Object:
    """``obj`` without the fields the server maintains on every write."""
    copied = copy.deepcopy(obj)
    for key in SERVER_MAINTAINED:
        copied["metadata"].pop(key, None)
    return copied


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386, locally."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_patch(target: Object, ops: list[Object]) -> Object:
    """RFC 6902 ``replace`` ops, locally (all a rollback sends)."""
    result = copy.deepcopy(target)
    for op in ops:
        assert op["op"] == "replace"
        *parents, leaf = op["path"].lstrip("/").split("/")
        node = result
        for part in parents:
            node = node[part]
        assert leaf in node, f"replace of a missing {op['path']}"
        node[leaf] = copy.deepcopy(op["value"])
    return result


def expected_after(before: Object, patch: RolloutPatch) -> Object:
    """``before`` with the rendered patch applied the way the server applies it, minus server fields."""
    sent = json.loads(patch.render())
    if patch.type == "json":
        return strip(json_patch(before, sent))
    # The status subresource takes only status; the main resource takes everything but status.
    if patch.subresource == "status":
        return strip({**before, "status": merge_patch(before.get("status"), sent.get("status"))})
    return strip({**merge_patch(before, {k: v for k, v in sent.items() if k != "status"})})


def managers(obj: Object) -> dict[tuple[str, str], Object]:
    """managedFields by (manager, subresource)."""
    return {(m["manager"], m.get("subresource", "")): m["fieldsV1"] for m in obj["metadata"]["managedFields"]}


def apply_and_check(kit: RolloutKit, rollouts: RolloutClient, name: str, patch: RolloutPatch) -> Object:
    """Apply ``patch`` and check: exactly its change, ``applied`` false before and true after,
    the returned object is the stored one, and ``ajan`` manages what it set."""
    before = kit.get(name)
    assert not ro.applied(before, patch)
    returned = run(rollouts.apply(kit.namespace, name, patch))
    after = kit.get(name)
    assert returned == after
    assert strip(after) == expected_after(before, patch)
    assert after["metadata"]["resourceVersion"] != before["metadata"]["resourceVersion"]
    assert ro.applied(after, patch)
    assert (ro.FIELD_MANAGER, patch.subresource) in managers(after)
    return after


# --- pure builders: the exact text sent -------------------------------------------------------------


def test_fixed_patches_are_the_plugins() -> None:
    assert ro.pause().render() == '{"spec": {"paused": true}}'
    assert (ro.pause().content_type, ro.pause().subresource) == ("application/merge-patch+json", "")
    assert ro.abort().render() == '{"status": {"abort": true}}'
    assert (ro.abort().content_type, ro.abort().subresource) == ("application/merge-patch+json", "status")
    assert ro.retry().render() == '{"status": {"abort": false}}'
    assert ro.retry().subresource == "status"
    annotate = ro.annotate("web-abc123", "abort", 0.87654, {"reason": "p99 latency", "aiops.ajan.dev/x": "1"})
    assert annotate.render() == (
        '{"metadata": {"annotations": {"aiops.ajan.dev/plan": "web-abc123", '
        '"aiops.ajan.dev/action": "abort", "aiops.ajan.dev/confidence": "0.877", '
        '"aiops.ajan.dev/reason": "p99 latency", "aiops.ajan.dev/x": "1"}}}'
    )
    with pytest.raises(ValueError, match=r"only aiops\.ajan\.dev/"):
        ro.annotate("p", "pause", 0.5, {"example.com/other": "x"})
    with pytest.raises(ValueError, match="confidence"):
        ro.annotate("p", "pause", 1.5)


def _rollout(spec: Object | None = None, status: Object | None = None) -> Object:
    steps = [{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}]
    base: Object = {"metadata": {"name": "web"}, "spec": {"strategy": {"canary": {"steps": steps}}}}
    base["spec"].update(spec or {})
    if status is not None:
        base["status"] = status
    return base


INCONCLUSIVE = {"currentStepAnalysisRunStatus": {"status": "Inconclusive", "name": "run"}}


@pytest.mark.parametrize(
    ("rollout", "full", "expected"),
    [
        pytest.param(  # paused by a pause step (and by a user): clear the conditions, unpause
            _rollout(
                {"paused": True}, {"pauseConditions": [{"reason": "CanaryPauseStep"}], "currentStepIndex": 1}
            ),
            False,
            [("status", '{"status": {"pauseConditions": null}}'), ("", '{"spec": {"paused": false}}')],
            id="paused-and-pause-conditions",
        ),
        pytest.param(
            _rollout({}, {"pauseConditions": [{"reason": "CanaryPauseStep"}], "currentStepIndex": 1}),
            False,
            [("status", '{"status": {"pauseConditions": null}}')],
            id="pause-conditions-only",
        ),
        pytest.param(  # nothing paused it: the plugin skips to the next step
            _rollout({}, {"currentStepIndex": 1}),
            False,
            [("status", '{"status": {"pauseConditions": null, "currentStepIndex": 2}}')],
            id="no-pause-skips-a-step",
        ),
        pytest.param(  # the index is capped at the number of steps
            _rollout({"paused": True}, {"currentStepIndex": 3}),
            False,
            [
                ("status", '{"status": {"pauseConditions": null, "currentStepIndex": 3}}'),
                ("", '{"spec": {"paused": false}}'),
            ],
            id="last-step-capped",
        ),
        pytest.param(
            _rollout(
                {},
                {
                    "pauseConditions": [{"reason": "InconclusiveAnalysisRun"}],
                    "controllerPause": True,
                    "currentStepIndex": 0,
                    "canary": INCONCLUSIVE,
                },
            ),
            False,
            [
                (
                    "status",
                    '{"status": {"pauseConditions": null, "controllerPause": false, "currentStepIndex": 1}}',
                )
            ],
            id="inconclusive-analysis",
        ),
        pytest.param(  # blue-green without pause conditions, not paused: nothing to send
            {"metadata": {"name": "bg"}, "spec": {"strategy": {"blueGreen": {}}}},
            False,
            [],
            id="nothing",
        ),
        pytest.param(
            _rollout({"paused": True}, {"currentPodHash": "b", "stableRS": "a"}),
            True,
            [("status", '{"status": {"promoteFull": true}}'), ("", '{"spec": {"paused": false}}')],
            id="full",
        ),
        pytest.param(
            _rollout({}, {"currentPodHash": "a", "stableRS": "a"}), True, [], id="full-already-stable"
        ),
    ],
)
def test_promote_decides_as_the_plugin(rollout: Object, full: bool, expected: list[tuple[str, str]]) -> None:
    patches = ro.promote(rollout, full=full)
    assert [(p.subresource, p.render()) for p in patches] == expected
    assert all(p.type == "merge" and p.action == "promote" for p in patches)


def _rs(uid: str, revision: str | None, image: str, pod_hash: str, controller: bool = True) -> Object:
    annotations = {} if revision is None else {ro.REVISION_ANNOTATION: revision}
    return {
        "metadata": {
            "name": f"web-{pod_hash}",
            "annotations": annotations,
            "ownerReferences": [{"uid": uid, "controller": controller}],
        },
        "spec": {
            "template": {
                "metadata": {"labels": {"app": "web", HASH_LABEL: pod_hash}},
                "spec": {"image": image},
            }
        },
    }


def test_previous_revision_is_the_plugins() -> None:
    rollout = {"metadata": {"name": "web", "uid": "u", "resourceVersion": "7"}, "spec": {"template": {}}}
    replicasets = [
        _rs("u", "2", "img:2", "h2"),
        _rs("u", "5", "img:5", "h5"),
        _rs("u", "x", "img:x", "hx"),  # unparsable: skipped
        _rs("other", "4", "img:o", "ho"),  # another owner's
        _rs("u", "4", "img:o", "hn", controller=False),  # owned, not controlled
        _rs("u", "3", "img:3", "h3"),
        _rs("u", None, "img:0", "h0"),  # no annotation: revision 0
    ]
    assert ro.revision_replicaset(rollout, replicasets)["metadata"]["name"] == "web-h3"
    assert ro.revision_replicaset(rollout, replicasets, to_revision=2)["metadata"]["name"] == "web-h2"
    with pytest.raises(ro.NoRevisionError, match="unable to find specified revision 9"):
        ro.revision_replicaset(rollout, replicasets, to_revision=9)
    with pytest.raises(ro.NoRevisionError, match="no revision found"):
        ro.revision_replicaset(rollout, [_rs("u", "1", "img:1", "h1")])
    # The patch: the resourceVersion precondition, then the plugin's single replace, hash label gone
    # (and the emptied labels map omitted, as Go's encoding/json does).
    only_hash = _rs("u", "1", "img:1", "h1")
    only_hash["spec"]["template"]["metadata"]["labels"] = {HASH_LABEL: "h1"}
    patch = ro.rollback(
        rollout | {"spec": {"template": {"spec": {"image": "img:2"}}}},
        [only_hash, _rs("u", "2", "img:2", "h2")],
    )
    assert patch is not None
    assert patch.render() == (
        '[{"op": "replace", "path": "/metadata/resourceVersion", "value": "7"}, '
        '{"op": "replace", "path": "/spec/template", "value": {"metadata": {}, "spec": {"image": "img:1"}}}]'
    )
    assert patch.content_type == "application/json-patch+json"
    unguarded = ro.rollback(
        rollout | {"spec": {"template": {"spec": {"image": "img:2"}}}},
        [only_hash, _rs("u", "2", "img:2", "h2")],
        guard=False,
    )
    assert unguarded is not None and [op["path"] for op in unguarded.body] == ["/spec/template"]
    with pytest.raises(ro.UnsupportedRolloutError, match="workloadRef"):
        ro.rollback(
            {"metadata": {"name": "w"}, "spec": {"workloadRef": {"kind": "Deployment", "name": "d"}}}, []
        )


def test_applied_reads_omitempty_status_as_the_controller_writes_it() -> None:
    # Argo writes status from Go structs with omitempty: a false or cleared field disappears.
    assert ro.applied({"status": {}}, ro.retry())
    assert not ro.applied({"status": {"abort": True}}, ro.retry())
    assert ro.applied(
        {}, RolloutPatch("promote", "merge", "status", {"status": {"pauseConditions": None}}, "")
    )
    assert not ro.applied({"spec": {"paused": 1}}, ro.pause())  # JSON types are not coerced


# --- against the API server -------------------------------------------------------------------------


def test_pause(rollout_kit: RolloutKit, rollouts: RolloutClient) -> None:
    rollout_kit.create_rollout("web")
    after = apply_and_check(rollout_kit, rollouts, "web", ro.pause())
    assert after["spec"]["paused"] is True
    assert managers(after)[(ro.FIELD_MANAGER, "")] == {"f:spec": {"f:paused": {}}}


def test_abort_and_retry_go_to_the_status_subresource(
    rollout_kit: RolloutKit, rollouts: RolloutClient
) -> None:
    rollout_kit.create_rollout("web", status={"currentStepIndex": 1, "currentPodHash": "b", "stableRS": "a"})
    after = apply_and_check(rollout_kit, rollouts, "web", ro.abort())
    assert after["status"]["abort"] is True
    assert managers(after)[(ro.FIELD_MANAGER, "status")] == {"f:status": {"f:abort": {}}}
    after = apply_and_check(rollout_kit, rollouts, "web", ro.retry())
    assert after["status"]["abort"] is False


def test_status_through_the_main_resource_is_dropped(
    rollout_kit: RolloutKit, rollouts: RolloutClient
) -> None:
    """Why abort must use the subresource: the same body on the main resource (the plugin's fallback
    for CRDs without one) is accepted with 200 and silently does nothing under Argo's CRD."""
    before = rollout_kit.create_rollout("web", status={"currentStepIndex": 1})
    main = RolloutPatch("abort", "merge", "", ro.abort().body, "plugin fallback")
    returned = run(rollouts.apply(rollout_kit.namespace, "web", main))
    after = rollout_kit.get("web")
    assert returned == after == before  # not even the resourceVersion moved
    assert not ro.applied(after, ro.abort())


@pytest.mark.parametrize(
    ("spec", "status", "expected_status", "ajan_owns"),
    [
        pytest.param(
            {"paused": True},
            {
                "pauseConditions": [{"reason": "PausedByUser", "startTime": "2024-05-01T10:00:00Z"}],
                "currentStepIndex": 1,
            },
            {"currentStepIndex": 1},
            # Clearing a field leaves no ownership of it: ajan manages only spec.paused.
            {("", '{"f:spec": {"f:paused": {}}}')},
            id="paused",
        ),
        pytest.param(
            {},
            {
                "pauseConditions": [
                    {"reason": "InconclusiveAnalysisRun", "startTime": "2024-05-01T10:00:00Z"}
                ],
                "controllerPause": True,
                "currentStepIndex": 1,
                "canary": INCONCLUSIVE,
            },
            {"controllerPause": False, "currentStepIndex": 2, "canary": INCONCLUSIVE},
            {("status", '{"f:status": {"f:controllerPause": {}, "f:currentStepIndex": {}}}')},
            id="inconclusive",
        ),
    ],
)
def test_promote_clears_pause_conditions_and_unpauses(
    rollout_kit: RolloutKit,
    rollouts: RolloutClient,
    spec: Object,
    status: Object,
    expected_status: Object,
    ajan_owns: set[tuple[str, str]],
) -> None:
    rollout_kit.create_rollout("web", paused=spec.get("paused"), status=status)
    before = rollout_kit.get("web")
    patches = ro.promote(before)
    assert [p.subresource for p in patches] == ["status", ""][: len(patches)]
    assert not any(ro.applied(before, p) for p in patches)
    sent = run(rollouts.promote(rollout_kit.namespace, "web"))
    assert sent == patches
    after = rollout_kit.get("web")
    assert after["status"] == expected_status
    assert after["spec"].get("paused", False) is False
    expected = before
    for patch in patches:
        expected = {**expected, **expected_after(expected, patch)}
    assert strip(after) == strip(expected)
    assert all(ro.applied(after, p) for p in patches)
    owned = {
        (sub, json.dumps(fields)) for (manager, sub), fields in managers(after).items() if manager == "ajan"
    }
    assert owned == ajan_owns


def test_annotate(rollout_kit: RolloutKit, rollouts: RolloutClient) -> None:
    rollout_kit.create_rollout("web")
    patch = ro.annotate("web-plan-1", "pause", 0.91, {"reason": "error rate"})
    after = apply_and_check(rollout_kit, rollouts, "web", patch)
    assert after["metadata"]["annotations"] == {
        "aiops.ajan.dev/plan": "web-plan-1",
        "aiops.ajan.dev/action": "pause",
        "aiops.ajan.dev/confidence": "0.910",
        "aiops.ajan.dev/reason": "error rate",
    }


def _with_history(kit: RolloutKit, current: str, revisions: dict[int, str]) -> Object:
    """A Rollout at template ``current``, with one ReplicaSet per revision (image by revision)."""
    rollout = kit.create_rollout("web", image=current)
    for revision, image in revisions.items():
        kit.create_replicaset(rollout, revision, image, f"h{revision}")
    # ReplicaSets that must not count: selected by label but owned by someone else.
    other = copy.deepcopy(rollout)
    other["metadata"]["uid"] = "00000000-0000-0000-0000-000000000000"
    kit.create_replicaset(other, 99, "img:foreign", "foreign")
    return rollout


def test_rollback_restores_the_previous_revision(rollout_kit: RolloutKit, rollouts: RolloutClient) -> None:
    _with_history(rollout_kit, "img:3", {1: "img:1", 3: "img:3", 2: "img:2"})
    before = rollout_kit.get("web")
    replicasets = run(rollouts.replicasets(rollout_kit.namespace, before))
    assert sorted(rs["metadata"]["name"] for rs in replicasets) == ["web-h1", "web-h2", "web-h3"]
    expected_patch = ro.rollback(before, replicasets)
    assert expected_patch is not None and not ro.applied(before, expected_patch)

    patch = run(rollouts.rollback(rollout_kit.namespace, "web"))
    assert patch == expected_patch
    after = rollout_kit.get("web")
    assert strip(after) == expected_after(before, patch)
    template = after["spec"]["template"]
    assert template["spec"]["containers"][0]["image"] == "img:2"
    assert template["metadata"]["labels"] == {"app": "web"}  # the hash label is not carried over
    # ReplicaSet defaults came along, as with the plugin (the CRD's schema keeps them).
    assert template["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    assert ro.applied(after, patch)
    assert "f:template" in managers(after)[(ro.FIELD_MANAGER, "")]["f:spec"]
    # Done: a second undo sends nothing (the plugin's "skipped rollback").
    assert run(rollouts.rollback(rollout_kit.namespace, "web")) is None
    assert rollout_kit.get("web") == after


def test_rollback_is_skipped_when_the_template_already_matches(
    rollout_kit: RolloutKit, rollouts: RolloutClient
) -> None:
    # The Rollout's template as the user wrote it vs. the ReplicaSet's, defaulted by the server:
    # equal under the plugin's semantic ("derivative") comparison.
    _with_history(rollout_kit, "img:1", {1: "img:1", 2: "img:2"})
    before = rollout_kit.get("web")
    assert run(rollouts.rollback(rollout_kit.namespace, "web")) is None
    assert rollout_kit.get("web") == before


def test_rollback_without_a_previous_revision(rollout_kit: RolloutKit, rollouts: RolloutClient) -> None:
    _with_history(rollout_kit, "img:1", {1: "img:1"})
    before = rollout_kit.get("web")
    with pytest.raises(ro.NoRevisionError, match="no revision found for rollout 'web'"):
        run(rollouts.rollback(rollout_kit.namespace, "web"))
    with pytest.raises(ro.NoRevisionError, match="unable to find specified revision 7"):
        run(rollouts.rollback(rollout_kit.namespace, "web", to_revision=7))
    assert rollout_kit.get("web") == before


def _edit(kit: RolloutKit, body: Object) -> None:
    kit.custom.patch_namespaced_custom_object(GROUP, VERSION, kit.namespace, PLURAL, "web", body)


def test_rollback_retries_on_fresh_state_after_a_concurrent_edit(
    rollout_kit: RolloutKit, rollouts: RolloutClient
) -> None:
    _with_history(rollout_kit, "img:3", {1: "img:1", 2: "img:2", 3: "img:3"})
    seen: list[str] = []

    async def user_scales(rollout: Object) -> None:
        # Someone scales the Rollout between ajan's read and its patch, once.
        seen.append(rollout["metadata"]["resourceVersion"])
        if len(seen) == 1:
            _edit(rollout_kit, {"spec": {"replicas": 5}})

    patch = run(rollouts.rollback(rollout_kit.namespace, "web", before_patch=user_scales))
    assert len(seen) == 2 and seen[0] != seen[1]  # one conflict, one retry on the fresh object
    assert patch is not None and patch.body[0]["value"] == seen[1]
    after = rollout_kit.get("web")
    assert after["spec"]["replicas"] == 5  # the user's edit survives
    assert after["spec"]["template"]["spec"]["containers"][0]["image"] == "img:2"


def test_rollback_decides_again_when_the_user_already_rolled_back(
    rollout_kit: RolloutKit, rollouts: RolloutClient
) -> None:
    _with_history(rollout_kit, "img:3", {1: "img:1", 2: "img:2", 3: "img:3"})
    calls: list[Object] = []

    async def user_rolls_back(rollout: Object) -> None:
        calls.append(rollout)
        _edit(
            rollout_kit, {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "img:2"}]}}}}
        )

    assert run(rollouts.rollback(rollout_kit.namespace, "web", before_patch=user_rolls_back)) is None
    assert len(calls) == 1  # the fresh read found nothing left to do


def test_rollback_gives_up_when_every_attempt_conflicts(
    rollout_kit: RolloutKit, rollouts: RolloutClient
) -> None:
    _with_history(rollout_kit, "img:3", {1: "img:1", 2: "img:2", 3: "img:3"})
    replicas = iter(range(4, 100))

    async def busy(rollout: Object) -> None:
        _edit(rollout_kit, {"spec": {"replicas": next(replicas)}})

    with pytest.raises(ro.RollbackConflictError, match="each of 2 rollback attempts"):
        run(rollouts.rollback(rollout_kit.namespace, "web", attempts=2, before_patch=busy))
    assert rollout_kit.get("web")["spec"]["template"]["spec"]["containers"][0]["image"] == "img:3"


def test_unguarded_patch_overwrites_a_concurrent_edit(
    rollout_kit: RolloutKit, rollouts: RolloutClient
) -> None:
    """Why the guard: without the resourceVersion the server applies a stale decision regardless."""
    _with_history(rollout_kit, "img:3", {1: "img:1", 2: "img:2", 3: "img:3"})
    stale = rollout_kit.get("web")
    replicasets = run(rollouts.replicasets(rollout_kit.namespace, stale))
    _edit(rollout_kit, {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "img:4"}]}}}})
    guarded, unguarded = ro.rollback(stale, replicasets), ro.rollback(stale, replicasets, guard=False)
    assert guarded is not None and unguarded is not None
    with pytest.raises(ApiException) as conflict:
        run(rollouts.apply(rollout_kit.namespace, "web", guarded))
    assert conflict.value.status == 409
    run(rollouts.apply(rollout_kit.namespace, "web", unguarded))  # accepted: img:4 is lost
    assert rollout_kit.get("web")["spec"]["template"]["spec"]["containers"][0]["image"] == "img:2"


def test_events_name_their_object(rollout_kit: RolloutKit, rollouts: RolloutClient) -> None:
    rollout = rollout_kit.create_rollout("web")
    ref = ro.object_reference(rollout)
    event = run(rollouts.post_event(rollout_kit.namespace, ref, "Paused", "ajan paused the canary"))
    core = client.CoreV1Api(rollout_kit.api)
    listed = core.list_namespaced_event(
        rollout_kit.namespace, field_selector=f"involvedObject.uid={rollout['metadata']['uid']}"
    )
    assert [e.metadata.name for e in listed.items] == [event["metadata"]["name"]]
    stored = rollout_kit.api.sanitize_for_serialization(listed.items[0])
    assert stored["involvedObject"] == {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "namespace": rollout_kit.namespace,
        "name": "web",
        "uid": rollout["metadata"]["uid"],
        "resourceVersion": rollout["metadata"]["resourceVersion"],
    }
    assert (stored["reason"], stored["message"], stored["type"]) == (
        "Paused",
        "ajan paused the canary",
        "Normal",
    )
    assert (stored["source"]["component"], stored["reportingComponent"]) == ("ajan", "ajan")
    assert stored["reportingInstance"] == "ajan-test" and stored["count"] == 1
    assert stored["metadata"]["managedFields"][0]["manager"] == ro.FIELD_MANAGER

    # Any object: here a ConfigMap, with a Warning.
    cm = client.CoreV1Api(rollout_kit.api).create_namespaced_config_map(
        rollout_kit.namespace, {"metadata": {"name": "plan-like"}}
    )
    cm_ref = ro.object_reference(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": rollout_kit.api.sanitize_for_serialization(cm.metadata),
        }
    )
    warning = run(
        rollouts.post_event(rollout_kit.namespace, cm_ref, "Failed", "could not act", type_="Warning")
    )
    assert warning["involvedObject"]["kind"] == "ConfigMap" and warning["type"] == "Warning"


def test_render_is_the_body_on_the_wire(kube: Kube, rollout_kit: RolloutKit) -> None:
    """The bytes the client writes are ``render()``, with the patch's content type and path."""
    recorded: list[tuple[str, str, str]] = []
    with kube.api_client() as api:
        pool = api.rest_client.pool_manager
        original: Callable[..., Any] = pool.request

        def record(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            if method == "PATCH":
                recorded.append((url.split("?")[0], kwargs["headers"]["Content-Type"], kwargs["body"]))
            return original(method, url, *args, **kwargs)

        pool.request = record
        _with_history(rollout_kit, "img:3", {1: "img:1", 2: "img:2", 3: "img:3"})
        rc = RolloutClient(api, max_workers=1)
        try:
            sent = [ro.pause(), ro.abort(), ro.annotate("p", "abort", 0.5)]
            for patch in sent:
                run(rc.apply(rollout_kit.namespace, "web", patch))
            rolled = run(rc.rollback(rollout_kit.namespace, "web"))
        finally:
            rc.close()
    assert rolled is not None
    base = f"/apis/argoproj.io/v1alpha1/namespaces/{rollout_kit.namespace}/rollouts/web"
    assert [(url.removeprefix(api.configuration.host), ctype, body) for url, ctype, body in recorded] == [
        (base + ("/status" if p.subresource else ""), p.content_type, p.render()) for p in [*sent, rolled]
    ]
