#!/usr/bin/env bash
# Prints the path of Argo Rollouts' own Rollout CRD (manifests/crds/rollout-crd.yaml) for VERSION
# (default v1.10.0), from the Go module github.com/argoproj/argo-rollouts in the normal module cache.
#
# The CRD is Argo's, not a copy: `go mod download` fetches the module through the Go module proxy
# (checked against the checksum database) once, and later calls find it in the cache. The tests
# install this file on their kube-apiserver, so ajan's patches meet Argo's real schema, status
# subresource and pruning.
#
# v1.10.0 is the default because later releases (v1.10.1+, v1.9.3) declare a newer Go than the one
# installed here, and `go mod download` refuses them under GOTOOLCHAIN=local (this machine's setting; with
# GOTOOLCHAIN=auto it would fetch a newer toolchain first).
#
# Usage: hack/rollouts-crd.sh [VERSION]
set -euo pipefail

log() { echo "rollouts-crd: $*" >&2; }

version="${1:-v1.10.0}"
module="github.com/argoproj/argo-rollouts"

if ! command -v go >/dev/null 2>&1; then
  log "go is not on PATH: it is needed to download ${module}@${version} (install Go, or add /usr/local/go/bin to PATH)"
  exit 1
fi

# Outside any module, so no go.mod of the caller's working directory gets in the way.
workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT

status=0
json="$(cd "$workdir" && GOFLAGS=-mod=mod go mod download -json "${module}@${version}")" || status=$?
# `go mod download -json` reports a failed module in an "Error" field, with exit status 1 or, for
# some failures (a too-new go directive), 0: check both.
error="$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Error": "\(.*\)",\{0,1\}$/\1/p')"
if [[ "$status" -ne 0 || -n "$error" ]]; then
  log "downloading ${module}@${version} failed${error:+: ${error}}"
  [[ -n "$error" ]] || printf '%s\n' "$json" >&2
  exit 1
fi

dir="$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
crd="${dir}/manifests/crds/rollout-crd.yaml"
if [[ -z "$dir" || ! -f "$crd" ]]; then
  log "no manifests/crds/rollout-crd.yaml in ${module}@${version} (module directory: '${dir}')"
  exit 1
fi
printf '%s\n' "$crd"
