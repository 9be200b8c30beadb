#!/usr/bin/env bash
# Prints the absolute paths of files inside a Go module at a pinned version, from the normal module
# cache: `go mod download` fetches the module through the Go module proxy (checked against the
# checksum database) once, and later calls find it in the cache. For the third-party CRDs the tests
# install: Argo Rollouts' Rollout (hack/rollouts-crd.sh), the Prometheus Operator's ServiceMonitor and
# PrometheusRule, Argo CD's Application (tests/kube/test_manifests.py pins the versions).
#
# Usage: hack/module-files.sh MODULE@VERSION PATH [PATH...]
#   e.g. hack/module-files.sh github.com/prometheus-operator/prometheus-operator@v0.79.2 \
#          example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml
set -euo pipefail

log() { echo "module-files: $*" >&2; }

if [[ $# -lt 2 || "$1" != *@* ]]; then
  log "usage: $0 MODULE@VERSION PATH [PATH...]"
  exit 2
fi
target="$1"
shift

if ! command -v go >/dev/null 2>&1; then
  log "go is not on PATH: it is needed to download ${target} (install Go, or add /usr/local/go/bin to PATH)"
  exit 1
fi

# Outside any module, so no go.mod of the caller's working directory gets in the way.
workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT

status=0
json="$(cd "$workdir" && GOFLAGS=-mod=mod go mod download -json "$target")" || status=$?
# `go mod download -json` reports a failed module in an "Error" field, with exit status 1 or, for
# some failures (a too-new go directive), 0: check both.
error="$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Error": "\(.*\)",\{0,1\}$/\1/p')"
if [[ "$status" -ne 0 || -n "$error" ]]; then
  log "downloading ${target} failed${error:+: ${error}}"
  [[ -n "$error" ]] || printf '%s\n' "$json" >&2
  exit 1
fi

dir="$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
if [[ -z "$dir" || ! -d "$dir" ]]; then
  log "no module directory for ${target} (got '${dir}')"
  exit 1
fi
for path in "$@"; do
  if [[ ! -f "${dir}/${path}" ]]; then
    log "no ${path} in ${target} (module directory: ${dir})"
    exit 1
  fi
  printf '%s\n' "${dir}/${path}"
done
