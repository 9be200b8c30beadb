#!/usr/bin/env bash
# Builds the local Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager) from Go
# modules fetched through the Go module proxy, and caches the binaries outside the repository:
#
#   ${AJAN_CACHE:-$HOME/.cache/ajan}/bin/<name>-<version>
#
# Only what is missing is built, so a rerun is quick. Prints `NAME=PATH` for each binary on stdout
# (progress goes to stderr). Usage: hack/kube-build.sh [etcd] [kube-apiserver] [kube-controller-manager]
# (default: all three). Versions are those pinned in hack/kube/*/go.mod; see hack/kube/README.md.
#
# Environment: AJAN_CACHE (cache root), KUBE_BUILD_JOBS (go build -p, default 2),
# KUBE_GIT_COMMIT (commit stamped into the Kubernetes binaries; the module proxy does not carry it).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
kube="$root/hack/kube"
bindir="${AJAN_CACHE:-$HOME/.cache/ajan}/bin"
jobs="${KUBE_BUILD_JOBS:-2}"

all=(etcd kube-apiserver kube-controller-manager)
want=("$@")
[[ ${#want[@]} -gt 0 ]] || want=("${all[@]}")

log() { echo "kube-build: $*" >&2; }

# Source dir and the module whose version names the binary, per component.
src_of() {
  case "$1" in
    etcd) echo "$kube/etcd" ;;
    kube-apiserver) echo "$kube/apiserver" ;;
    kube-controller-manager) echo "$kube/controller-manager" ;;
    *) log "unknown component '$1' (known: ${all[*]})"; return 1 ;;
  esac
}
versioned_module_of() {
  case "$1" in
    etcd) echo "go.etcd.io/etcd/server/v3" ;;
    *) echo "k8s.io/kubernetes" ;;
  esac
}

# Reads `.Version` or `.Time` of a required module from go.mod and the module cache, with the
# module graph as committed (-mod=readonly: a stale go.sum is an error, never silently rewritten).
# GOFLAGS is replaced, not extended, so a caller's -mod=vendor and the like cannot leak in.
mod_field() { # dir module field
  (cd "$1" && GOFLAGS=-mod=readonly GOWORK=off go list -m -f "{{.$3}}" "$2")
}

# -ldflags for the Kubernetes binaries: the same variables as upstream's hack/lib/version.sh, set
# in both packages that hold them, so `/version` and `--version` report the release.
kube_ldflags() { # dir
  local version time major minor commit
  version="$(mod_field "$1" k8s.io/kubernetes Version)"
  # The release tag's time, from the module proxy: a reproducible build date.
  time="$(cd "$1" && GOFLAGS=-mod=readonly GOWORK=off go list -m -json k8s.io/kubernetes \
    | sed -n 's/^[[:space:]]*"Time": "\(.*\)",\{0,1\}$/\1/p')"
  [[ "$version" =~ ^v([0-9]+)\.([0-9]+)\. ]] || { log "unexpected k8s.io/kubernetes version $version"; return 1; }
  major="${BASH_REMATCH[1]}" minor="${BASH_REMATCH[2]}"
  commit="${KUBE_GIT_COMMIT:-unknown}"
  local flags="-s -w" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    flags+=" -X $pkg.gitCommit=$commit -X $pkg.gitTreeState=clean -X $pkg.buildDate=$time"
  done
  echo "$flags"
}

build() { # name dir out
  local name="$1" dir="$2" out="$3" ldflags tmp start
  if [[ "$name" == etcd ]]; then
    ldflags="-s -w"
  else
    ldflags="$(kube_ldflags "$dir")"
  fi
  mkdir -p "$(dirname "$out")"
  tmp="$out.tmp.$$"
  log "building $name into $out (go build -p $jobs, niced; the first build takes a while)"
  start=$SECONDS
  # Static, trimmed, reproducible; like upstream's release builds (CGO off, symbols stripped).
  if ! (cd "$dir" && CGO_ENABLED=0 GOWORK=off GOFLAGS="-mod=readonly -buildvcs=false -p=$jobs" \
        nice -n 10 go build -trimpath -ldflags "$ldflags" -o "$tmp" .); then
    rm -f "$tmp"
    return 1
  fi
  mv -f "$tmp" "$out"   # atomic: a cached path is always a complete binary
  log "built $name in $((SECONDS - start))s ($(du -h "$out" | cut -f1))"
}

# One build at a time per cache, so two shells do not build the same thing twice.
mkdir -p "$bindir"
if command -v flock >/dev/null; then
  exec 9>"$bindir/.build.lock"
  flock 9
fi

for name in "${want[@]}"; do
  dir="$(src_of "$name")"
  version="$(mod_field "$dir" "$(versioned_module_of "$name")" Version)"
  out="$bindir/$name-$version"
  if [[ ! -x "$out" ]]; then
    build "$name" "$dir" "$out"
  fi
  echo "$name=$out"
done
