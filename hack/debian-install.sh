#!/usr/bin/env bash
# Installs from Debian's packages what ajan runs against and is checked with: Prometheus (server and
# promtool) and Redis (server and redis-cli), for the demo and the tests against real servers;
# Chromium, which renders `ajan report` pages headless in the tests; Lua 5.1, which runs the Argo CD
# health check in manifests/ (Argo CD's gopher-lua speaks 5.1); ShellCheck, which checks the scripts
# in hack/ in tests. Idempotent: does nothing when every binary is already on PATH.
#
# The package's maintainer scripts would start the service; in a container without systemd (and in
# CI) that must not happen, so a temporary policy-rc.d forbids every service start (exit 101 is
# "action forbidden" in invoke-rc.d's protocol) and is removed afterwards, whatever the outcome.
set -euo pipefail

log() { echo "debian-install: $*" >&2; }

binaries=(prometheus promtool redis-server redis-cli chromium lua5.1 shellcheck)
packages=(prometheus redis-server chromium lua5.1 shellcheck)
missing=0
for binary in "${binaries[@]}"; do
  command -v "$binary" >/dev/null 2>&1 || missing=1
done
if [[ "$missing" -eq 0 ]]; then
  log "already installed: $(prometheus --version 2>&1 | head -n1); $(redis-server --version)"
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
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${packages[@]}"
log "installed in $(( $(date +%s) - start ))s"

# Some images divert services differently; make sure nothing was left running by the install.
for server in prometheus redis-server; do
  if pgrep -x "$server" >/dev/null 2>&1; then
    log "warning: a $server process is running after install (not started by this script's policy)"
  fi
done

prometheus --version >&2
promtool --version >/dev/null
redis-server --version >&2
redis-cli --version >/dev/null
chromium --version >&2
lua5.1 -v >&2
shellcheck --version >/dev/null
log "ok"
