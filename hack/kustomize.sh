#!/usr/bin/env bash
# Prints the path of a kustomize binary of VERSION (default v5.5.0, the one kubectl 1.32 embeds),
# building it once from its Go module (sigs.k8s.io/kustomize/kustomize/v5, through the Go module
# proxy, ~30 s) into ${XDG_CACHE_HOME:-~/.cache}/ajan/kustomize/VERSION/. The tests render
# manifests/ with it exactly as `kubectl apply -k manifests/` does, without needing kubectl.
#
# Usage: hack/kustomize.sh [VERSION]
set -euo pipefail

log() { echo "kustomize: $*" >&2; }

version="${1:-v5.5.0}"
bin_dir="${XDG_CACHE_HOME:-$HOME/.cache}/ajan/kustomize/${version}"
binary="${bin_dir}/kustomize"

if [[ ! -x "$binary" ]]; then
  if ! command -v go >/dev/null 2>&1; then
    log "go is not on PATH: it is needed to build kustomize ${version} (install Go, or add /usr/local/go/bin to PATH)"
    exit 1
  fi
  mkdir -p "$bin_dir"
  workdir="$(mktemp -d)"
  trap 'rm -rf "$workdir"' EXIT
  log "building sigs.k8s.io/kustomize/kustomize/v5@${version} into ${bin_dir}"
  # Into a temporary directory first, so an interrupted build never leaves a half-written binary.
  if ! (cd "$workdir" && GOBIN="$workdir/bin" GOFLAGS=-mod=mod go install "sigs.k8s.io/kustomize/kustomize/v5@${version}") >&2; then
    log "building kustomize ${version} failed"
    exit 1
  fi
  mv "$workdir/bin/kustomize" "$binary"
fi
printf '%s\n' "$binary"
