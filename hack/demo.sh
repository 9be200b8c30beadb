#!/usr/bin/env bash
# README's first command: set up a fresh machine, then run ajan's operator live on a local stack: a
# control plane, a metrics generator with a canary, Prometheus and `ajan run` (hack/demo.py, ~2 min;
# Ctrl-C stops everything), leaving an HTML report of the plan that acted in the current directory
# (--report-dir DIR, --no-report). `hack/demo.py --csv` is the older demo of the analysis core.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
started="$(date +%s.%N)"
# Stage 1 of hack/demo.py's six (its STAGES), announced here since the slow part of it runs here.
LC_ALL=C printf '[%6.1fs] [1/6] set-up: %s (%s)\n' 0 \
  "virtualenv, etcd + kube-apiserver binaries, Prometheus and Redis" "instant once done; first time ~15 min"
"$root/hack/setup.sh"
# The control plane is built from its Go modules once (~13 min on 2 cores), cached by version in
# ~/.cache/ajan: instant afterwards. Progress on stderr.
"$root/hack/kube-build.sh" etcd kube-apiserver >/dev/null
# Prometheus and Redis from Debian's packages (needs root for apt-get; instant when present).
"$root/hack/debian-install.sh"
exec "$root/.venv/bin/python" "$root/hack/demo.py" --set-up-started "$started" "$@"
