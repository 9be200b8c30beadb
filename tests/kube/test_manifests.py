"""manifests/ against a real kube-apiserver: every object kustomization.yaml lists is accepted by a
server-side dry-run apply, and the Redis it ships is configured as the tests' Redis is."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import yaml
from kubernetes import client, dynamic

from ajan.simulate.stack import REDIS_CONFIG
from support.kube import FIELD_MANAGER

MANIFESTS: Final = Path(__file__).resolve().parents[2] / "manifests"


def objects() -> list[dict[str, Any]]:
    """Every object of every file kustomization.yaml lists, in order."""
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    found = []
    for name in kustomization["resources"]:
        found += [d for d in yaml.safe_load_all((MANIFESTS / name).read_text()) if d]
    return found


def test_every_manifest_passes_a_server_side_dry_run(admin_api: client.ApiClient) -> None:
    api = dynamic.DynamicClient(admin_api)
    listed = objects()
    kinds = [o["kind"] for o in listed]
    assert {"Namespace", "ServiceAccount", "ClusterRole", "StatefulSet", "ConfigMap"} <= set(kinds)
    namespace = next(o for o in listed if o["kind"] == "Namespace")
    # Namespaced objects can only be dry-run into a namespace that exists.
    api.resources.get(api_version="v1", kind="Namespace").server_side_apply(
        body=namespace, field_manager=FIELD_MANAGER, force_conflicts=True
    )
    for obj in listed:
        resource = api.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        result = resource.server_side_apply(
            body=obj, field_manager=FIELD_MANAGER, force_conflicts=True, dry_run="All"
        )
        assert result.metadata.name == obj["metadata"]["name"], obj["kind"]


def test_shipped_redis_is_configured_like_the_tests_redis() -> None:
    config = next(o for o in objects() if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "ajan-redis")
    shipped = config["data"]["redis.conf"].splitlines()
    for line in REDIS_CONFIG.splitlines():
        assert line in shipped, f"manifests/redis.yaml lacks {line!r}"
    container = next(o for o in objects() if o["kind"] == "StatefulSet")["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert container["command"] == ["redis-server", "/etc/redis/redis.conf"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
