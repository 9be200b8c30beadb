#!/usr/bin/env bash
# Prints the path of Argo Rollouts' own Rollout CRD (manifests/crds/rollout-crd.yaml) for VERSION
# (default v1.10.0), from the Go module github.com/argoproj/argo-rollouts in the normal module cache.
# With --all, prints the paths of all five of Argo's CRDs of that version instead, one per line:
# Rollout, Experiment, AnalysisRun, AnalysisTemplate, ClusterAnalysisTemplate (what a running Argo
# controller needs, see operator/ajan/simulate/argo.py).
#
# The CRDs are Argo's, not copies: `go mod download` fetches the module through the Go module proxy
# (checked against the checksum database) once, and later calls find it in the cache. The tests
# install these files on their kube-apiserver, so ajan's patches meet Argo's real schema, status
# subresource and pruning.
#
# v1.10.0 stays the default so that what the tests install does not change under them. The Argo
# controller the tests run is built from v1.10.1 (hack/kube/argo-rollouts/go.mod); the two
# versions' manifests/crds/ are byte-identical. v1.10.2 declares `go 1.26.10`, newer than the Go
# installed here (1.26.8), and `go mod download` refuses it under GOTOOLCHAIN=local (this
# machine's setting; with GOTOOLCHAIN=auto it would fetch a newer toolchain first).
#
# Usage: hack/rollouts-crd.sh [--all] [VERSION]
set -euo pipefail

files=(manifests/crds/rollout-crd.yaml)
if [[ "${1:-}" == --all ]]; then
  shift
  # The order of upstream's manifests/crds/kustomization.yaml.
  files+=(
    manifests/crds/experiment-crd.yaml
    manifests/crds/analysis-run-crd.yaml
    manifests/crds/analysis-template-crd.yaml
    manifests/crds/cluster-analysis-template-crd.yaml
  )
fi
if [[ $# -gt 1 || "${1:-}" == -* ]]; then
  echo "usage: $0 [--all] [VERSION]" >&2
  exit 2
fi
version="${1:-v1.10.0}"
# The download, its checks and the module cache are module-files.sh's, shared with the other
# third-party CRDs the tests install.
exec "$(dirname "${BASH_SOURCE[0]}")/module-files.sh" \
  "github.com/argoproj/argo-rollouts@${version}" "${files[@]}"
