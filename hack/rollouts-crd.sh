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

version="${1:-v1.10.0}"
# The download, its checks and the module cache are module-files.sh's, shared with the other
# third-party CRDs the tests install.
exec "$(dirname "${BASH_SOURCE[0]}")/module-files.sh" \
  "github.com/argoproj/argo-rollouts@${version}" manifests/crds/rollout-crd.yaml
