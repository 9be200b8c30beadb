#!/usr/bin/env bash
# Installs Prometheus (server and promtool) from Debian's package, for the tests against a real
# Prometheus (tests/prometheus). Idempotent: does nothing when both are already on PATH.
#
# The package's maintainer scripts would start the service; in a container without systemd (and in
# CI) that must not happen, so a temporary policy-rc.d forbids every service start (exit 101 is
# "action forbidden" in invoke-rc.d's protocol) and is removed afterwards, whatever the outcome.
set -euo pipefail

log() { echo "prometheus-install: $*" >&2; }

if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
  log "already installed: $(prometheus --version 2>&1 | head -n1)"
  exit 0
fi

if [[ "$(id -u)" -ne 0 ]]; then
  log "must run as root (apt-get install)"; exit 1
fi

policy=/usr/sbin/policy-rc.d
had_policy=0
if [[ -e "$policy" ]]; then
  had_policy=1
  cp -p "$policy" "$policy.ajan-backup"
fi
restore_policy() {
  if [[ "$had_policy" -eq 1 ]]; then mv -f "$policy.ajan-backup" "$policy"; else rm -f "$policy"; fi
}
trap restore_policy EXIT
printf '#!/bin/sh\nexit 101\n' >"$policy"
chmod 0755 "$policy"

start=$(date +%s)
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus
log "installed in $(( $(date +%s) - start ))s"

# Some images divert services differently; make sure nothing was left running by the install.
if pgrep -x prometheus >/dev/null 2>&1; then
  log "warning: a prometheus process is running after install (not started by this script's policy)"
fi

prometheus --version >&2
promtool --version >/dev/null
log "ok"
