"""manifests/ against a real kube-apiserver and against ``ajan run`` itself.

* Every object ``kustomize build manifests/`` renders (kustomize v5.5.0 built from its Go module by
  ``hack/kustomize.sh``, the same rendering as ``kubectl apply -k``) is accepted by a server-side
  dry-run apply, with the third-party CRDs it needs installed first: the Prometheus Operator's
  ServiceMonitor and PrometheusRule, from its Go module like Argo Rollouts' CRD
  (``hack/module-files.sh``). So is the Argo CD Application in ``manifests/argocd/``, against Argo
  CD's own Application CRD, and the argocd-cm patch.
* The Deployment runs as the contract says (non-root, read-only, no capabilities; probes on kopf's
  liveness port and the metrics port; two replicas under kopf peering), and every ``AJAN_*`` it sets
  is a variable ``ajan run --help`` documents: a renamed flag fails here.
* The Service, ServiceMonitor, NetworkPolicies and PodDisruptionBudget select the pods they mean to.
* The Redis it ships is configured as the tests' Redis is.
* ``components/sharded`` turns the Deployment into a StatefulSet of shards (``ajan run --shards``)
  with the same pod, and the result passes the dry-run too.
"""

from __future__ import annotations

import ast
import functools
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any, Final

import pytest
import yaml
from kubernetes import client, dynamic
from kubernetes.client.rest import ApiException

from ajan.runner import DEFAULT_LIVENESS
from ajan.simulate.stack import (
    PACKAGE_PARENT,
    REDIS_CONFIG,
    StackError,
    debian_binary,
    hack_script,
    server_side_apply,
    wait_served,
)
from support.kube import FIELD_MANAGER

REPO: Final = Path(__file__).resolve().parents[2]
MANIFESTS: Final = REPO / "manifests"
#: The Prometheus Operator release whose CRDs the ServiceMonitor and PrometheusRule are checked
#: against (kube-prometheus-stack 65.x ships this operator).
PROMETHEUS_OPERATOR: Final = "github.com/prometheus-operator/prometheus-operator@v0.79.2"
PROMETHEUS_OPERATOR_CRDS: Final = (
    "example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml",
    "example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml",
)
#: Argo CD's Application CRD, for manifests/argocd/application.yaml.
ARGO_CD: Final = "github.com/argoproj/argo-cd/v2@v2.13.3"
ARGO_CD_CRDS: Final = ("manifests/crds/application-crd.yaml",)
#: The contract's ports (docs/operator.md): kopf's liveness, the feedback API, /metrics and /readyz.
LIVENESS_PORT: Final = 8080
FEEDBACK_PORT: Final = 8081
METRICS_PORT: Final = 8082

Object = dict[str, Any]


def _run_script(name: str, *args: str) -> list[str]:
    done = subprocess.run(
        ["bash", str(hack_script(name)), *args], capture_output=True, text=True, timeout=600, check=False
    )
    if done.returncode != 0:
        pytest.fail(f"hack/{name} {' '.join(args)} failed: {done.stderr.strip()}", pytrace=False)
    return done.stdout.split()


def kustomize_build(directory: Path) -> list[Object]:
    """Every object of ``kustomize build DIRECTORY``, in its order."""
    kustomize = _run_script("kustomize.sh")[0]
    done = subprocess.run(
        [kustomize, "build", str(directory)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


@functools.cache
def rendered() -> tuple[Object, ...]:
    """Every object of ``kustomize build manifests/``, in its order."""
    return tuple(kustomize_build(MANIFESTS))


def render_sharded(workdir: Path) -> list[Object]:
    """``kustomize build`` of an overlay of one's own, as components/sharded's comment says to write
    it: manifests/ with the sharded Component (kustomize refuses an overlay inside its base)."""
    overlay = workdir / "overlay"
    overlay.mkdir()
    base = Path(os.path.relpath(MANIFESTS, overlay))  # kustomize takes no absolute path
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [str(base)], "components": [str(base / "components" / "sharded")],
    }))  # fmt: skip
    return kustomize_build(overlay)


def objects() -> list[Object]:
    """Every object the kustomization renders (a fresh copy: tests may change theirs)."""
    return yaml.safe_load(yaml.safe_dump(list(rendered())))


def one(kind: str, name: str | None = None) -> Object:
    """The rendered object of ``kind`` (and ``name``); fails unless there is exactly one."""
    found = [o for o in objects() if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"{len(found)} {kind} objects named {name or 'anything'}"
    return found[0]


def module_files(module: str, paths: tuple[str, ...]) -> list[Path]:
    """Files of a Go module at a pinned version, from the module cache (``hack/module-files.sh``)."""
    return [Path(p) for p in _run_script("module-files.sh", module, *paths)]


def _install_crd(api: client.ApiClient, crd: Object) -> Object:
    name = crd["metadata"]["name"]
    server_side_apply(
        api,
        f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}",
        crd,
        field_manager=FIELD_MANAGER,
    )
    served = next(v["name"] for v in crd["spec"]["versions"] if v.get("served"))
    try:
        return wait_served(api, name, crd["spec"]["group"], served, crd["spec"]["names"]["plural"])
    except StackError as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture(scope="module")
def installed_crds(admin_api: client.ApiClient) -> dict[str, Object]:
    """The CRDs the manifests' objects need, applied for real (a dry-run of an object of a kind needs
    the kind served): the Prometheus Operator's and Argo CD's from their Go modules, and those the
    kustomization itself ships (ajan's, kopf's peering)."""
    crds = [
        yaml.safe_load(path.read_text())
        for path in module_files(PROMETHEUS_OPERATOR, PROMETHEUS_OPERATOR_CRDS)
        + module_files(ARGO_CD, ARGO_CD_CRDS)
    ]
    crds += [o for o in objects() if o["kind"] == "CustomResourceDefinition"]
    return {crd["metadata"]["name"]: _install_crd(admin_api, crd) for crd in crds}


def dry_run(api: dynamic.DynamicClient, obj: Object) -> Any:
    """A server-side dry-run apply of ``obj``; returns what the API server would store."""
    resource = api.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
    return resource.server_side_apply(
        body=obj, field_manager=FIELD_MANAGER, force_conflicts=True, dry_run="All"
    )


def ensure_namespace(api: dynamic.DynamicClient, name: str) -> None:
    """Namespaced objects can only be dry-run into a namespace that exists."""
    api.resources.get(api_version="v1", kind="Namespace").server_side_apply(
        body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
        field_manager=FIELD_MANAGER,
        force_conflicts=True,
    )


def test_every_manifest_passes_a_server_side_dry_run(
    admin_api: client.ApiClient, installed_crds: dict[str, Object]
) -> None:
    assert {"servicemonitors.monitoring.coreos.com", "prometheusrules.monitoring.coreos.com"} <= set(
        installed_crds
    )
    api = dynamic.DynamicClient(admin_api)  # after the CRDs: its discovery must see their kinds
    listed = objects()
    kinds = {o["kind"] for o in listed}
    assert {
        "Namespace", "ServiceAccount", "ClusterRole", "StatefulSet", "ConfigMap", "Deployment",
        "PodDisruptionBudget", "Service", "NetworkPolicy", "ServiceMonitor", "PrometheusRule",
        "ClusterKopfPeering",
    } <= kinds  # fmt: skip
    ensure_namespace(api, "ajan-system")
    for obj in listed:
        result = dry_run(api, obj)
        assert result.metadata.name == obj["metadata"]["name"], obj["kind"]


def without_shard_settings(template: Object) -> Object:
    """A pod template without the variables that tell peering from sharding."""
    out: Object = yaml.safe_load(yaml.safe_dump(template))
    container = out["spec"]["containers"][0]
    container["env"] = [e for e in container["env"] if e["name"] not in ("AJAN_SHARDS", "AJAN_PEERING")]
    return out


def test_the_sharded_component_makes_the_deployment_a_statefulset_of_shards(
    admin_api: client.ApiClient, installed_crds: dict[str, Object], tmp_path: Path
) -> None:
    sharded = render_sharded(tmp_path)
    operators = [
        o for o in sharded if o["metadata"]["name"] == "ajan" and o["kind"] in ("Deployment", "StatefulSet")
    ]
    assert [o["kind"] for o in operators] == ["StatefulSet"]
    (shards,) = operators
    pod, peered = shards["spec"]["template"], one("Deployment", "ajan")["spec"]["template"]
    variables = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
    # One pod per shard, its shard from its name; no peering (ajan run refuses both at once).
    assert int(variables["AJAN_SHARDS"]["value"]) == shards["spec"]["replicas"] == 3
    assert "AJAN_PEERING" not in variables
    assert variables["POD_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert set(variables) - {"AJAN_SHARDS"} <= documented_variables() | {"POD_ID"}
    assert "AJAN_SHARDS" in documented_variables()
    # Otherwise the very pod of the Deployment: it is written once.
    assert without_shard_settings(pod) == without_shard_settings(peered)
    assert "strategy" not in shards["spec"]
    assert shards["spec"]["serviceName"] in {o["metadata"]["name"] for o in sharded if o["kind"] == "Service"}
    api = dynamic.DynamicClient(admin_api)
    ensure_namespace(api, "ajan-system")
    assert dry_run(api, shards).kind == "StatefulSet"


def test_the_dry_run_enforces_the_monitoring_schemas(
    admin_api: client.ApiClient, installed_crds: dict[str, Object]
) -> None:
    """The installed CRDs are the real, structural ones: a broken object is refused, so the dry-run
    above means something."""
    api = dynamic.DynamicClient(admin_api)
    ensure_namespace(api, "ajan-system")
    monitor = one("ServiceMonitor", "ajan")
    monitor["spec"]["endpoints"][0]["interval"] = "every thirty seconds"  # not a duration
    rule = one("PrometheusRule", "ajan")
    del rule["spec"]["groups"][0]["rules"][0]["expr"]  # required
    for broken in (monitor, rule):
        with pytest.raises(ApiException) as refused:
            dry_run(api, broken)
        assert refused.value.status == 422, broken["kind"]


def test_every_object_is_labelled_and_namespaced_as_ajan() -> None:
    cluster_scoped = {"Namespace", "ClusterRole", "ClusterRoleBinding", "ClusterKopfPeering"}
    for obj in objects():
        if obj["kind"] == "CustomResourceDefinition":
            continue  # ajan's are generated from its models (hack/verify-crds.sh), kopf's are kopf's
        what = f"{obj['kind']} {obj['metadata']['name']}"
        assert (obj["metadata"].get("labels") or {}).get("app.kubernetes.io/part-of") == "ajan", what
        if obj["kind"] not in cluster_scoped:
            assert obj["metadata"].get("namespace") == "ajan-system", what


def test_argocd_application_and_health_patch_pass_a_server_side_dry_run(
    admin_api: client.ApiClient, installed_crds: dict[str, Object]
) -> None:
    assert "applications.argoproj.io" in installed_crds
    api = dynamic.DynamicClient(admin_api)
    ensure_namespace(api, "argocd")
    application = yaml.safe_load((MANIFESTS / "argocd" / "application.yaml").read_text())
    stored = dry_run(api, application).to_dict()
    assert stored["spec"]["source"]["path"] == "manifests"
    assert stored["spec"]["destination"]["namespace"] == "ajan-system"
    patch = yaml.safe_load((MANIFESTS / "argocd" / "argocd-cm-patch.yaml").read_text())
    assert dry_run(api, patch).metadata.name == "argocd-cm"
    # Not in the main kustomization: they belong in Argo CD's namespace.
    assert not any(o["metadata"].get("namespace") == "argocd" for o in objects())


# --- the Deployment against `ajan run` and the contract --------------------------------------------


@functools.cache
def run_help() -> str:
    """``ajan run --help`` of the code in this checkout."""
    done = subprocess.run(
        [sys.executable, "-m", "ajan", "run", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={"PYTHONPATH": str(PACKAGE_PARENT), "PATH": "/usr/bin:/bin", "COLUMNS": "200"},
    )
    return done.stdout


def documented_variables() -> set[str]:
    """The environment variables ``ajan run --help`` names (``env NAME`` in each flag's help)."""
    return set(re.findall(r"\benv\s+([A-Z][A-Z0-9_]+)", run_help()))


def container() -> Object:
    """The operator's container in the Deployment."""
    containers = one("Deployment", "ajan")["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["ajan"]
    container: Object = containers[0]
    return container


def env() -> dict[str, str]:
    # A value, or "" for one from the downward API (POD_ID).
    return {e["name"]: e.get("value", "") for e in container()["env"]}


def port_of(listen: str) -> int:
    return int(listen.rpartition(":")[2])


def test_deployment_sets_only_variables_that_ajan_run_reads() -> None:
    documented = documented_variables()
    # The help is what is parsed: make sure it is the real thing, with the flags the contract adds.
    assert {"AJAN_PROMETHEUS_URL", "AJAN_PEERING", "AJAN_FEEDBACK_LISTEN"} <= documented
    for flag in ("--metrics-listen", "--log-format", "--peering", "--feedback-listen", "--redis-url"):
        assert flag in run_help(), f"`ajan run --help` has no {flag}"
    variables = env()
    unknown = set(variables) - documented
    assert not unknown, f"the Deployment sets variables `ajan run` does not read: {sorted(unknown)}"
    assert variables["AJAN_PEERING"] == "ajan"
    assert variables["AJAN_LOG_FORMAT"] == "json"
    assert variables["AJAN_PROMETHEUS_URL"] == "http://prometheus-operated.monitoring:9090"
    # The Redis URL names redis.yaml's Service, in its namespace, on its port.
    redis = one("Service", "ajan-redis")
    assert variables["AJAN_REDIS_URL"] == (
        f"redis://{redis['metadata']['name']}.{redis['metadata']['namespace']}:"
        f"{redis['spec']['ports'][0]['port']}/0"
    )
    assert container()["args"] == ["run"]
    assert container()["image"] == "ghcr.io/ajan-dev/ajan:0.1.0"


def test_deployment_ports_and_probes_match_the_contract() -> None:
    spec = container()
    ports = {p["name"]: p["containerPort"] for p in spec["ports"]}
    assert ports == {"healthz": LIVENESS_PORT, "feedback": FEEDBACK_PORT, "metrics": METRICS_PORT}
    variables = env()
    assert port_of(variables["AJAN_FEEDBACK_LISTEN"]) == FEEDBACK_PORT
    assert port_of(variables["AJAN_METRICS_LISTEN"]) == METRICS_PORT
    # Liveness is kopf's endpoint: loopback by default (a local run exposes nothing), so the
    # Deployment opens it to the kubelet on the same port and path.
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/\S+", DEFAULT_LIVENESS)
    liveness_url = re.fullmatch(r"http://0\.0\.0\.0:(\d+)(/\S+)", variables["AJAN_LIVENESS"])
    assert liveness_url is not None
    assert (int(liveness_url[1]), liveness_url[2]) == (LIVENESS_PORT, "/healthz")
    assert liveness_url[2] == DEFAULT_LIVENESS.rsplit(str(LIVENESS_PORT), 1)[1]
    live, ready = spec["livenessProbe"]["httpGet"], spec["readinessProbe"]["httpGet"]
    assert (ports[live["port"]], live["path"]) == (LIVENESS_PORT, "/healthz")
    assert (ports[ready["port"]], ready["path"]) == (METRICS_PORT, "/readyz")
    assert set(spec["resources"]["requests"]) == {"cpu", "memory"}
    assert set(spec["resources"]["limits"]) == {"cpu", "memory"}


def test_deployment_runs_locked_down_and_highly_available() -> None:
    deployment = one("Deployment", "ajan")
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 2
    assert pod["serviceAccountName"] == one("ServiceAccount")["metadata"]["name"] == "ajan"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container()["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container()["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    # Spread over nodes: anti-affinity on the hostname, selecting the Deployment's own pods.
    term = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert selects(term["podAffinityTerm"]["labelSelector"]["matchLabels"], pod_labels())
    budget = one("PodDisruptionBudget", "ajan")
    assert budget["spec"]["minAvailable"] == 1
    assert selects(budget["spec"]["selector"]["matchLabels"], pod_labels())
    # One peering for all replicas: the ClusterKopfPeering the kustomization ships.
    assert env()["AJAN_PEERING"] == one("ClusterKopfPeering")["metadata"]["name"]


# --- selectors --------------------------------------------------------------------------------------


def pod_labels(kind: str = "Deployment", name: str = "ajan") -> dict[str, str]:
    labels: dict[str, str] = one(kind, name)["spec"]["template"]["metadata"]["labels"]
    return labels


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_service_and_servicemonitor_reach_the_operator_pods() -> None:
    deployment = one("Deployment", "ajan")
    assert selects(deployment["spec"]["selector"]["matchLabels"], pod_labels())
    service = one("Service", "ajan")
    assert selects(service["spec"]["selector"], pod_labels())
    assert not selects(service["spec"]["selector"], pod_labels("StatefulSet", "ajan-redis"))
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    container_ports = {p["name"]: p["containerPort"] for p in container()["ports"]}
    assert {name: container_ports[p["targetPort"]] for name, p in ports.items()} == {
        "metrics": METRICS_PORT,
        "feedback": FEEDBACK_PORT,
    }
    monitor = one("ServiceMonitor", "ajan")
    assert selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
    # The per-policy series carry their own `namespace` label; it must not be renamed.
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True
    # Prometheus names the job after the Service: the rules and the dashboard select job="ajan".
    assert service["metadata"]["name"] == "ajan"


def test_network_policies_admit_exactly_the_contracts_traffic() -> None:
    policy = one("NetworkPolicy", "ajan")["spec"]
    assert selects(policy["podSelector"]["matchLabels"], pod_labels())
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    ingress_ports = {p["port"] for rule in policy["ingress"] for p in rule["ports"]}
    assert ingress_ports == {"metrics", "feedback"}  # not kopf's liveness: only the kubelet probes it
    metrics_rule = next(r for r in policy["ingress"] if r["ports"][0]["port"] == "metrics")
    assert metrics_rule["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"
    }
    egress = {(p["port"], p.get("protocol", "TCP")): rule for rule in policy["egress"] for p in rule["ports"]}
    assert set(egress) == {
        (443, "TCP"),
        (6443, "TCP"),
        (9090, "TCP"),
        (6379, "TCP"),
        (53, "UDP"),
        (53, "TCP"),
    }
    redis_peer = egress[(6379, "TCP")]["to"][0]["podSelector"]["matchLabels"]
    assert selects(redis_peer, pod_labels("StatefulSet", "ajan-redis"))
    assert egress[(53, "UDP")]["to"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "kube-system"
    }
    # And Redis's own policy admits these pods.
    redis_policy = one("NetworkPolicy", "ajan-redis")["spec"]
    assert selects(redis_policy["ingress"][0]["from"][0]["podSelector"]["matchLabels"], pod_labels())


def test_dashboard_configmap_is_generated_from_its_one_source() -> None:
    config_map = one("ConfigMap", "ajan-grafana-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["data"] == {"ajan.json": (MANIFESTS / "dashboards" / "ajan.json").read_text()}


def test_shipped_redis_is_configured_like_the_tests_redis() -> None:
    config = one("ConfigMap", "ajan-redis")
    shipped = config["data"]["redis.conf"].splitlines()
    for line in REDIS_CONFIG.splitlines():
        assert line in shipped, f"manifests/redis.yaml lacks {line!r}"
    redis = one("StatefulSet")["spec"]["template"]["spec"]["containers"][0]
    assert redis["command"] == ["redis-server", "/etc/redis/redis.conf"]
    assert redis["securityContext"]["readOnlyRootFilesystem"] is True


# --- the image and the kind path ------------------------------------------------------------------


def test_dockerfile_builds_a_non_root_image_of_the_wheel() -> None:
    text = (REPO / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)(?: AS (\S+))?$", text, flags=re.MULTILINE)
    assert stages == [("python:3.11-slim", "builder"), ("python:3.11-slim", "")]
    final = text.split("\nFROM ")[-1]
    assert "--uid 65532" in final and re.search(r"^USER 65532:65532$", final, flags=re.MULTILINE)
    assert 'ENTRYPOINT ["ajan"]' in final and 'CMD ["run"]' in final
    assert "COPY --from=builder /opt/ajan /opt/ajan" in final
    assert not re.search(r"apt-get|gcc|build-essential", final)
    # The build context keeps what the builder copies, and nothing else of note.
    ignore = (REPO / ".dockerignore").read_text().split()
    assert ignore[ignore.index("*") :] and {"!pyproject.toml", "!README.md", "!operator/"} <= set(ignore)


def test_the_wheel_holds_the_operator_and_not_the_harnesses(tmp_path: Path) -> None:
    """What the image installs: the operator and its model, not the local stack or the evaluation
    harnesses (which run hack/ scripts and apt from a checkout), and nothing in it imports them."""
    # The Dockerfile's build context (pyproject.toml, README.md, operator/), so that no build/ left in
    # the checkout can add to it.
    context = tmp_path / "context"
    shutil.copytree(REPO / "operator", context / "operator", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, context / name)
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet"]
    built = subprocess.run([*pip, "--wheel-dir", str(tmp_path), str(context)], capture_output=True, text=True,
                           timeout=600, check=False)  # fmt: skip
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("ajan-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        sources = {n: archive.read(n).decode() for n in names if n.endswith(".py")}
    assert {"ajan/handlers/policy.py", "ajan/severity/severity.tflite", "ajan/py.typed"} <= set(names)
    assert not [n for n in names if n.startswith(("ajan/simulate/", "ajan/evaluation/"))]
    harness = ("ajan.simulate", "ajan.evaluation")
    for name, source in sources.items():
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom) and node.module is not None:
                imported = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                imported = [a.name for a in node.names]
            else:
                continue
            assert not [i for i in imported if i.startswith(harness)], (name, imported)


def test_kind_up_script_is_valid_bash() -> None:
    """It cannot run here (no Docker): parse it, and shellcheck it and the scripts the tests run."""
    script = hack_script("kind-up.sh")
    parsed = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
    assert parsed.returncode == 0, parsed.stderr
    scripts = [str(hack_script(n)) for n in ("kind-up.sh", "kustomize.sh", "module-files.sh")]
    shellcheck = debian_binary("shellcheck")  # Debian's, from hack/debian-install.sh
    checked = subprocess.run([shellcheck, *scripts], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout
    text = script.read_text()
    assert "set -euo pipefail" in text
    for step in (
        "kind create cluster",
        "kind load docker-image",
        "apply --server-side -k",
        "helm upgrade --install",
    ):
        assert step in text, step
