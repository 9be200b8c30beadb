#!/usr/bin/env bash
# Copies the replace directives of github.com/argoproj/argo-rollouts's go.mod at VERSION into this
# wrapper module's go.mod, and requires that version.
#
# Argo's go.mod pins every k8s.io staging module (k8s.io/api, k8s.io/client-go, ...) with a replace,
# as k8s.io/kubernetes does, and replaces two other modules. Replaces of a dependency do not apply
# to its dependents, so this module must repeat them all, or `go mod tidy` resolves the staging
# modules to versions Argo was never built with (or to k8s.io/kubernetes's unpublished v0.0.0).
#
#   hack/kube/argo-rollouts/mirror-replaces.sh v1.10.1
#   (cd hack/kube/argo-rollouts && GOFLAGS=-mod=mod go mod tidy)
set -euo pipefail

[[ $# -eq 1 && "$1" =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "usage: $0 vX.Y.Z" >&2; exit 2; }
version="$1"
module=github.com/argoproj/argo-rollouts
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# The upstream go.mod from the module cache (fetched through the module proxy if missing); run
# outside any module so that no go.mod or go.work around us interferes.
gomod="$(cd / && GOFLAGS='' GOWORK=off go mod download -json "${module}@${version}" \
  | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
[[ -n "$gomod" && -f "$gomod" ]] || { echo "cannot find the go.mod of ${module}@${version}" >&2; exit 1; }

# `go mod edit -json FILE` parses a go.mod anywhere; print "old=new@version" per replace (all of
# Argo's replace a module by a published version, none by a local path).
to_args='
import json, sys
for r in json.load(sys.stdin).get("Replace") or []:
    old, new = r["Old"], r["New"]
    if "Version" not in new:
        sys.exit(f"replace of {old['"'"'Path'"'"']} points at a local path: cannot mirror it")
    lhs = old["Path"] + ("@" + old["Version"] if old.get("Version") else "")
    print(f"-replace={lhs}={new['"'"'Path'"'"']}@{new['"'"'Version'"'"']}")
'
mapfile -t wanted < <(GOFLAGS='' go mod edit -json "$gomod" | python3 -c "$to_args")
mapfile -t dropped < <(cd "$here" && GOFLAGS='' go mod edit -json \
  | python3 -c 'import json,sys; [print("-dropreplace=" + r["Old"]["Path"]) for r in json.load(sys.stdin).get("Replace") or []]')
(cd "$here" && GOFLAGS='' go mod edit -require="${module}@${version}" "${dropped[@]}" "${wanted[@]}")
echo "updated $here/go.mod: ${module} ${version}, ${#wanted[@]} replaces; now run go mod tidy there" >&2
