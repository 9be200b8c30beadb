#!/usr/bin/env bash
# README's first command: set up a fresh machine, then run ajan's operator live on a local stack: a
# control plane, a metrics generator with a canary, Prometheus and `ajan run` (hack/demo.py, ~2 min;
# Ctrl-C stops everything). `hack/demo.py --csv` is the older demo of the analysis core on a CSV file.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/hack/setup.sh"
# The control plane is built from its Go modules once (~13 min on 2 cores), cached by version in
# ~/.cache/ajan: instant afterwards. Progress on stderr.
"$root/hack/kube-build.sh" etcd kube-apiserver >/dev/null
# Prometheus and Redis from Debian's packages (needs root for apt-get; instant when present).
"$root/hack/debian-install.sh"
exec "$root/.venv/bin/python" "$root/hack/demo.py" "$@"
