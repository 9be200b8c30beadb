#!/usr/bin/env bash
# Runs one component of the local control plane and, once armed, restarts it whenever it exits, as
# the kubelet restarts a static pod: so that a test can kill etcd or kube-apiserver and see what
# ajan does while it is gone and after it is back (hack/kube-up.sh starts each component with it).
#
#   hack/supervise.sh PIDFILE ARMFILE -- COMMAND [ARGS...]
#
# Writes the command's pid to PIDFILE at every start. Until ARMFILE exists, an exit ends the
# supervisor with the command's status: a component that cannot start is an error to report, not a
# restart loop. Once armed, the command is started again a second after it exits, and the restart
# is logged on stderr. SIGTERM or SIGINT stops the command, then the supervisor.
set -uo pipefail

[[ $# -ge 4 && "$3" == -- ]] || { echo "usage: supervise.sh PIDFILE ARMFILE -- COMMAND [ARGS...]" >&2; exit 2; }
pidfile="$1"
armfile="$2"
shift 3

child=""
# shellcheck disable=SC2317  # invoked by the trap
stop() {
  trap - TERM INT
  if [[ -n "$child" ]]; then
    kill -TERM "$child" 2>/dev/null
    wait "$child" 2>/dev/null
  fi
  exit 0
}
trap stop TERM INT

restarts=0
while :; do
  "$@" &
  child=$!
  echo "$child" >"$pidfile"
  wait "$child"
  status=$?
  [[ -e "$armfile" ]] || exit "$status"
  restarts=$((restarts + 1))
  echo "supervise: $1 (pid $child) exited with status $status; restart $restarts in 1 s" >&2
  # A stop that raced the exit (the whole group signalled at once) runs its trap during this pause.
  sleep 1
done
