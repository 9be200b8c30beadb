#!/usr/bin/env bash
# ajan in a local kind cluster, for users with Docker (the project's own tests need none of this:
# they run a bare kube-apiserver, hack/kube-up.sh). Idempotent: rerun it after a change to rebuild
# the image and re-apply the manifests.
#
# What it sets up, in order:
#   1. a kind cluster (name: $AJAN_KIND_CLUSTER, default ajan);
#   2. Argo Rollouts $ARGO_ROLLOUTS_VERSION from its release's install.yaml (namespace argo-rollouts);
#   3. kube-prometheus-stack $KPS_VERSION with Helm (namespace monitoring): the Prometheus Operator,
#      whose Prometheus answers at prometheus-operated.monitoring:9090 (AJAN_PROMETHEUS_URL in
#      manifests/deployment.yaml), picks up every ServiceMonitor and PrometheusRule, and whose
#      Grafana loads dashboards from ConfigMaps labelled grafana_dashboard=1 in every namespace;
#   4. the image ghcr.io/ajan-dev/ajan:0.1.0 built from the Dockerfile and loaded into kind's nodes;
#   5. `kubectl apply --server-side -k manifests/` and a wait for the Deployment;
#   6. the example policy examples/correlationpolicy-latency-canary.yaml in namespace shop (it stays
#      Degraded, InsufficientData, until a `checkout` Rollout serves traffic there).
#
# Needs docker, kind, kubectl and helm on PATH; nothing here runs in the project's CI.
# Grafana: kubectl -n monitoring port-forward svc/kube-prometheus-stack-grafana 3000:80
#   (user admin; password: kubectl -n monitoring get secret kube-prometheus-stack-grafana
#   -o jsonpath='{.data.admin-password}' | base64 -d)
#
# Usage: hack/kind-up.sh
set -euo pipefail

log() { echo "kind-up: $*" >&2; }
die() { log "$*"; exit 1; }

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cluster="${AJAN_KIND_CLUSTER:-ajan}"
# The Argo Rollouts version the tests check ajan's patches against (tests/support/rollouts.py).
rollouts_version="${ARGO_ROLLOUTS_VERSION:-v1.10.0}"
kps_version="${KPS_VERSION:-65.1.1}"
image="ghcr.io/ajan-dev/ajan:0.1.0"

need() {
  command -v "$1" >/dev/null 2>&1 || die "$1 is not on PATH: $2"
}
need docker "install Docker (https://docs.docker.com/engine/install/) and start it"
need kind "install kind (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)"
need kubectl "install kubectl (https://kubernetes.io/docs/tasks/tools/)"
need helm "install Helm 3 (https://helm.sh/docs/intro/install/)"
docker info >/dev/null 2>&1 || die "docker is installed but its daemon does not answer (is it running? may you use it?)"

if kind get clusters 2>/dev/null | grep -qx "$cluster"; then
  log "kind cluster '$cluster' exists; reusing it"
else
  log "creating kind cluster '$cluster'"
  kind create cluster --name "$cluster" --wait 120s
fi
kubectl config use-context "kind-${cluster}" >/dev/null

log "Argo Rollouts ${rollouts_version}"
kubectl create namespace argo-rollouts --dry-run=client -o yaml | kubectl apply -f -
kubectl apply -n argo-rollouts \
  -f "https://github.com/argoproj/argo-rollouts/releases/download/${rollouts_version}/install.yaml"
kubectl -n argo-rollouts rollout status deployment/argo-rollouts --timeout=180s

log "kube-prometheus-stack ${kps_version}"
helm repo add prometheus-community https://prometheus-community.github.io/helm-charts >/dev/null
helm repo update prometheus-community >/dev/null
# The selectors' "NilUsesHelmValues=false": select every ServiceMonitor and PrometheusRule, not only
# those labelled with this Helm release (ajan's carry no such label).
helm upgrade --install kube-prometheus-stack prometheus-community/kube-prometheus-stack \
  --version "$kps_version" --namespace monitoring --create-namespace \
  --set prometheus.prometheusSpec.serviceMonitorSelectorNilUsesHelmValues=false \
  --set prometheus.prometheusSpec.ruleSelectorNilUsesHelmValues=false \
  --set grafana.sidecar.dashboards.searchNamespace=ALL \
  --wait --timeout 10m

log "building ${image}"
docker build -t "$image" "$root"
kind load docker-image "$image" --name "$cluster"

log "applying manifests/"
# One apply creates the CRDs and the objects of their kinds (the ClusterKopfPeering `ajan`), but a
# kind is only known once its CRD is established: the first apply may refuse those objects, so wait
# for the CRDs and apply again (the second must succeed).
kubectl apply --server-side -k "$root/manifests" || log "first apply incomplete (CRDs not yet established); retrying"
kubectl wait --for condition=established --timeout=60s \
  crd/correlationpolicies.aiops.ajan.dev crd/remediationplans.aiops.ajan.dev crd/clusterkopfpeerings.kopf.dev
kubectl apply --server-side -k "$root/manifests"
# The image was loaded, not pushed: restart so a rebuilt image of the same tag is used.
kubectl -n ajan-system rollout restart deployment/ajan
kubectl -n ajan-system rollout status deployment/ajan --timeout=300s

log "example policy (namespace shop)"
kubectl create namespace shop --dry-run=client -o yaml | kubectl apply -f -
kubectl apply -f "$root/examples/correlationpolicy-latency-canary.yaml"

log "ready: kubectl get correlationpolicies,remediationplans -A; ajan's metrics in Prometheus under job=\"ajan\""
