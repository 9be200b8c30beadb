#!/usr/bin/env bash
# Builds the local Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager) and, on
# request, the Argo Rollouts controller, kwok and kube-scheduler, from Go modules fetched through the
# Go module proxy, and caches the binaries outside the repository:
#
#   ${AJAN_CACHE:-$HOME/.cache/ajan}/bin/<name>-<version>
#
# Only what is missing is built, so a rerun is quick. Prints `NAME=PATH` for each binary on stdout
# (progress goes to stderr). Usage: hack/kube-build.sh [COMPONENT...], COMPONENT one of etcd,
# kube-apiserver, kube-controller-manager (the default: these three), argo-rollouts, kwok,
# kube-scheduler (only when named). Versions are those pinned in hack/kube/*/go.mod; see
# hack/kube/README.md.
#
# hack/kube-build.sh --no-build [COMPONENT...] builds nothing: it prints the cached ones and, if one
# is missing, names it and the command that builds it on stderr and exits 1. For callers that must
# not start a build of minutes unannounced (the tests of ajan.simulate.argo).
#
# Environment: AJAN_CACHE (cache root), KUBE_BUILD_JOBS (go build -p, default 2),
# KUBE_GIT_COMMIT (commit stamped into the Kubernetes binaries; the module proxy does not carry it).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
kube="$root/hack/kube"
bindir="${AJAN_CACHE:-$HOME/.cache/ajan}/bin"
jobs="${KUBE_BUILD_JOBS:-2}"

all=(etcd kube-apiserver kube-controller-manager)
# Built only when named: what runs a Rollout for real (ajan.simulate.argo); most tests need neither.
optional=(argo-rollouts kwok kube-scheduler)
build_missing=1
if [[ "${1:-}" == --no-build ]]; then
  build_missing=0
  shift
fi
want=("$@")
[[ ${#want[@]} -gt 0 ]] || want=("${all[@]}")

log() { echo "kube-build: $*" >&2; }

# Source dir and the module whose version names the binary, per component.
src_of() {
  case "$1" in
    etcd) echo "$kube/etcd" ;;
    kube-apiserver) echo "$kube/apiserver" ;;
    kube-controller-manager) echo "$kube/controller-manager" ;;
    kube-scheduler) echo "$kube/scheduler" ;;
    argo-rollouts) echo "$kube/argo-rollouts" ;;
    kwok) echo "$kube/kwok" ;;
    *) log "unknown component '$1' (known: ${all[*]} ${optional[*]})"; return 1 ;;
  esac
}
versioned_module_of() {
  case "$1" in
    etcd) echo "go.etcd.io/etcd/server/v3" ;;
    argo-rollouts) echo "github.com/argoproj/argo-rollouts" ;;
    kwok) echo "sigs.k8s.io/kwok" ;;
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

# -ldflags for the Argo Rollouts controller: the variables of upstream's Makefile that a module
# carries (VERSION without its v, the release tag's time as the build date). Without a commit,
# `rollouts-controller --version` reports `v1.10.1+unknown`, as upstream does for such builds.
argo_ldflags() { # dir
  local version time pkg=github.com/argoproj/argo-rollouts/utils/version
  version="$(mod_field "$1" github.com/argoproj/argo-rollouts Version)"
  time="$(mod_field "$1" github.com/argoproj/argo-rollouts 'Time.UTC.Format "2006-01-02T15:04:05Z"')"
  echo "-s -w -X $pkg.version=${version#v} -X $pkg.buildDate=$time -X $pkg.gitTreeState=clean"
}

# -ldflags for kwok: the version, as upstream's hack/releases.sh stamps it (the same value as the
# source's default, but taken from go.mod like every other binary's).
kwok_ldflags() { # dir
  local version
  version="$(mod_field "$1" sigs.k8s.io/kwok Version)"
  echo "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${version#v}"
}

build() { # name dir out
  local name="$1" dir="$2" out="$3" ldflags tmp start
  case "$name" in
    etcd) ldflags="-s -w" ;;
    argo-rollouts) ldflags="$(argo_ldflags "$dir")" ;;
    kwok) ldflags="$(kwok_ldflags "$dir")" ;;
    *) ldflags="$(kube_ldflags "$dir")" ;;
  esac
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

# One build at a time per cache, so two shells do not build the same thing twice. (--no-build does
# not wait for a build: a cached path is complete or absent, never half-written.)
mkdir -p "$bindir"
if ((build_missing)) && command -v flock >/dev/null; then
  exec 9>"$bindir/.build.lock"
  flock 9
fi

missing=()
for name in "${want[@]}"; do
  dir="$(src_of "$name")"
  version="$(mod_field "$dir" "$(versioned_module_of "$name")" Version)"
  out="$bindir/$name-$version"
  if [[ ! -x "$out" ]]; then
    if ((!build_missing)); then
      missing+=("$name")
      continue
    fi
    build "$name" "$dir" "$out"
  fi
  echo "$name=$out"
done
if [[ ${#missing[@]} -gt 0 ]]; then
  log "not built: ${missing[*]} (none in $bindir at the pinned version); build with:" \
    "hack/kube-build.sh ${missing[*]}  (from the repository root; minutes per binary the first time)"
  exit 1
fi
