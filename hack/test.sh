#!/usr/bin/env bash
# README's test command: set up a fresh machine, then run the whole test suite.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/hack/setup.sh"
# The operator's tests run against a real kube-apiserver and etcd built from their Go modules;
# cached by version outside the repository, so this is instant after the first build (~13 min).
"$root/hack/kube-build.sh" >&2
# tests/argo runs a real Argo Rollouts controller, kwok's simulated nodes and kube-scheduler
# (ajan.simulate.argo), which never build in the middle of a session: built here (~6 min the first time).
"$root/hack/kube-build.sh" argo-rollouts kwok kube-scheduler >&2
# And against a real Prometheus and Redis, from Debian's packages (needs root for apt-get; instant when present).
"$root/hack/debian-install.sh"
cd "$root"
exec "$root/.venv/bin/python" -m pytest "$@"
