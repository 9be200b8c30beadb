#!/usr/bin/env bash
# Starts a local Kubernetes control plane on loopback for tests: etcd + kube-apiserver (RBAC on,
# static-token identities) and, optionally, kube-controller-manager (namespace deletion, owner
# reference garbage collection). Everything lives in a fresh temp dir; it stays in the foreground
# until interrupted, then stops every process it started and removes the dir. Once ready, a
# component that exits is restarted (hack/supervise.sh; its pid is in <dir>/<name>.pid), as the
# kubelet restarts a static pod, so tests can kill etcd or kube-apiserver and watch ajan recover.
#
#   hack/kube-up.sh [--controller-manager]       (or KUBE_CONTROLLER_MANAGER=1)
#
# Once /readyz answers it prints, on stdout, lines to eval:
#   export KUBECONFIG=<dir>/admin.kubeconfig                       # user `ajan-admin`, group system:masters
#   export AJAN_RESTRICTED_KUBECONFIG=<dir>/restricted.kubeconfig  # user `ajan-restricted`, no privileged group
#   export AJAN_KUBE_AUDIT_LOG=<the audit log>
#   export AJAN_KUBE_DIR=<dir>                                     # last: the line to wait for
# and writes the same lines to <dir>/env.sh. Progress and errors go to stderr; logs to <dir>/*.log.
#
# Environment (all optional): ETCD_PORT, ETCD_PEER_PORT, KUBE_APISERVER_PORT,
# KUBE_CONTROLLER_MANAGER_PORT (default: free ports picked at random), KUBE_UP_TIMEOUT (seconds to
# wait for readiness, default 120), KUBE_CONTROLLERS (the controller-manager's --controllers),
# KUBE_UP_VERBOSITY (component log level, default 1), AJAN_CACHE (see hack/kube-build.sh),
# KUBE_AUDIT_LOG (where the apiserver's audit log of every request by `ajan-restricted` goes;
# default <dir>/audit.log; set it outside <dir> to keep the log after the control plane stops).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
log() { echo "kube-up: $*" >&2; }
die() { log "$*"; exit 1; }

with_kcm="${KUBE_CONTROLLER_MANAGER:-0}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --controller-manager) with_kcm=1 ;;
    --no-controller-manager) with_kcm=0 ;;
    -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) die "unknown argument '$1' (try --help)" ;;
  esac
  shift
done
[[ "$with_kcm" == 1 || "$with_kcm" == true ]] && with_kcm=1 || with_kcm=0

timeout_s="${KUBE_UP_TIMEOUT:-120}"
verbosity="${KUBE_UP_VERBOSITY:-1}"
# Deleting a namespace needs the namespace controller; owner references need the garbage collector.
# The service-account ones give each namespace its `default` service account (needed to create
# pods) and the kube-root-ca.crt config map; the aggregation one fills the aggregated cluster roles
# (admin, edit, view) that least-privilege tests bind to. Workload controllers are left out.
controllers="${KUBE_CONTROLLERS:-namespace-controller,garbage-collector-controller,serviceaccount-controller,serviceaccount-token-controller,root-ca-certificate-publisher-controller,clusterrole-aggregation-controller}"

for tool in openssl curl python3; do
  command -v "$tool" >/dev/null || die "$tool is required"
done

# --- binaries (built once, cached outside the repo) ------------------------------------------------
components=(etcd kube-apiserver)
[[ $with_kcm == 1 ]] && components+=(kube-controller-manager)
declare -A bin=()
while IFS='=' read -r name path; do bin[$name]="$path"; done < <("$root/hack/kube-build.sh" "${components[@]}")
for name in "${components[@]}"; do [[ -x "${bin[$name]:-}" ]] || die "no binary for $name"; done

# --- lifecycle: every process we start is recorded, and killed on any exit ------------------------
dir="$(mktemp -d "${TMPDIR:-/tmp}/ajan-kube.XXXXXX")"
pids=()
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  local rc=$? pid deadline i
  trap - EXIT INT TERM
  # Stop in reverse start order (controller-manager, apiserver, etcd): TERM, then KILL after 10 s.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill -TERM "${pids[i]}" 2>/dev/null || true; done
  deadline=$((SECONDS + 10))
  for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$dir"
  log "stopped (${#pids[@]} processes), removed $dir"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Children also get SIGKILL if this shell dies without running its trap (e.g. kill -9).
deathsig=()
if setpriv --help 2>/dev/null | grep -q -- --pdeathsig; then deathsig=(setpriv --pdeathsig KILL --); fi

# Each component runs under hack/supervise.sh, which writes its pid to $dir/<name>.pid and, once
# $dir/armed exists (everything ready), restarts it when it exits, as the kubelet restarts a static
# pod: a test kills etcd or kube-apiserver through that pid and the control plane comes back.
armed="$dir/armed"
start() { # name args...: run in the background, supervised, log to $dir/<name>.log
  local name="$1"; shift
  "${deathsig[@]}" "$root/hack/supervise.sh" "$dir/$name.pid" "$armed" -- \
    "${deathsig[@]}" "${bin[$name]}" "$@" >"$dir/$name.log" 2>&1 &
  pids+=($!)
  log "started $name (supervisor pid $!), log $dir/$name.log"
}

# Polls until `check` succeeds; fails early if the process died, or at the deadline (no blind sleep).
wait_for() { # what pid check-command...
  local what="$1" pid="$2"; shift 2
  local deadline=$((SECONDS + timeout_s))
  until "$@" >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 30 "$dir/$what.log" >&2 || true
      die "$what exited before it was ready (log above)"
    fi
    if ((SECONDS >= deadline)); then
      tail -n 30 "$dir/$what.log" >&2 || true
      die "$what not ready after ${timeout_s}s (log above)"
    fi
    sleep 0.2
  done
  log "$what ready"
}

# Free loopback ports, distinct from each other (the kernel picks them; the race window is tiny).
mapfile -t free < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(4)]
for s in socks:
    s.bind(("127.0.0.1", 0))
for s in socks:
    print(s.getsockname()[1])
')
etcd_port="${ETCD_PORT:-${free[0]}}"
etcd_peer_port="${ETCD_PEER_PORT:-${free[1]}}"
apiserver_port="${KUBE_APISERVER_PORT:-${free[2]}}"
kcm_port="${KUBE_CONTROLLER_MANAGER_PORT:-${free[3]}}"

# --- PKI: a local CA, the apiserver's serving cert, the service-account key pair, tokens -----------
pki="$dir/pki"
mkdir -p "$pki"
(
  cd "$pki"
  umask 077
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 7 \
    -subj "/CN=ajan-local-ca" -keyout ca.key -out ca.crt \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -subj "/CN=kube-apiserver" -keyout apiserver.key -out apiserver.csr 2>/dev/null
  cat >apiserver.ext <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
EOF
  openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 7 \
    -extfile apiserver.ext -out apiserver.crt 2>/dev/null
  # Service-account tokens: signed with the private key (apiserver, controller-manager), verified
  # with the public one.
  openssl genrsa -out sa.key 2048 2>/dev/null
  openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  # Static tokens: token,user,uid,"groups". ajan-restricted is in no group of its own (the apiserver
  # still adds system:authenticated, which grants only discovery), for least-privilege tests.
  admin_token="$(openssl rand -hex 24)"
  restricted_token="$(openssl rand -hex 24)"
  printf '%s,ajan-admin,ajan-admin,"system:masters"\n%s,ajan-restricted,ajan-restricted\n' \
    "$admin_token" "$restricted_token" >tokens.csv
  printf '%s' "$admin_token" >admin.token
  printf '%s' "$restricted_token" >restricted.token
)

# Audit: every request the restricted identity (the operator under manifests/' role) makes, at
# Metadata level (who, verb, resource, subresource, response code; no bodies), so a test can
# compare what ajan does with what its role grants. Nobody else is logged.
audit_log="${KUBE_AUDIT_LOG:-$dir/audit.log}"
cat >"$dir/audit-policy.yaml" <<EOF
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
    users: ["ajan-restricted"]
  - level: None
EOF

server="https://127.0.0.1:$apiserver_port"
ca_data="$(base64 -w0 <"$pki/ca.crt")"
kubeconfig() { # file user token
  umask 077
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: ajan-local
  cluster:
    server: $server
    certificate-authority-data: $ca_data
users:
- name: $2
  user:
    token: $3
contexts:
- name: $2@ajan-local
  context:
    cluster: ajan-local
    user: $2
current-context: $2@ajan-local
preferences: {}
EOF
}
kubeconfig "$dir/admin.kubeconfig" ajan-admin "$(cat "$pki/admin.token")"
kubeconfig "$dir/restricted.kubeconfig" ajan-restricted "$(cat "$pki/restricted.token")"

# --- etcd -----------------------------------------------------------------------------------------
# Plain HTTP bound to 127.0.0.1 only; no fsync: a throwaway store for tests, not for data to keep.
start etcd \
  --name ajan --data-dir "$dir/etcd" \
  --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
  --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" \
  --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
  --initial-cluster "ajan=http://127.0.0.1:$etcd_peer_port" \
  --unsafe-no-fsync --log-level warn
etcd_pid="${pids[-1]}"
wait_for etcd "$etcd_pid" curl -fsS "http://127.0.0.1:$etcd_port/health"

# --- kube-apiserver -------------------------------------------------------------------------------
# Identities come from the static token file (client certificates signed by the local CA are
# accepted too). No endpoint reconciler: the `kubernetes` service cannot point at a loopback address
# (validation forbids it), and nothing runs in-cluster here.
start kube-apiserver \
  --etcd-servers "http://127.0.0.1:$etcd_port" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$apiserver_port" \
  --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
  --cert-dir "$dir/apiserver-certs" \
  --authorization-mode Node,RBAC \
  --token-auth-file "$pki/tokens.csv" \
  --client-ca-file "$pki/ca.crt" \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "$pki/sa.pub" \
  --service-account-signing-key-file "$pki/sa.key" \
  --service-cluster-ip-range 10.0.0.0/24 \
  --endpoint-reconciler-type none \
  --audit-policy-file "$dir/audit-policy.yaml" --audit-log-path "$audit_log" \
  --profiling=false \
  --v "$verbosity"
apiserver_pid="${pids[-1]}"
admin_auth="Authorization: Bearer $(cat "$pki/admin.token")"
wait_for kube-apiserver "$apiserver_pid" \
  curl -fsS --cacert "$pki/ca.crt" -H "$admin_auth" "$server/readyz"

# --- kube-controller-manager (optional) -----------------------------------------------------------
# Its own endpoint serves only /healthz and /metrics: requests are authenticated by token review
# against the apiserver, without looking up the front-proxy CA config map (there is no front proxy).
if [[ $with_kcm == 1 ]]; then
  start kube-controller-manager \
    --kubeconfig "$dir/admin.kubeconfig" \
    --authentication-kubeconfig "$dir/admin.kubeconfig" \
    --authorization-kubeconfig "$dir/admin.kubeconfig" \
    --authentication-skip-lookup \
    --bind-address 127.0.0.1 --secure-port "$kcm_port" --cert-dir "$dir/kcm-certs" \
    --service-account-private-key-file "$pki/sa.key" \
    --root-ca-file "$pki/ca.crt" \
    --controllers "$controllers" \
    --leader-elect=false \
    --profiling=false \
    --v "$verbosity"
  kcm_pid="${pids[-1]}"
  # /healthz is always allowed; the serving cert is self-generated, hence -k (loopback only).
  wait_for kube-controller-manager "$kcm_pid" curl -fsSk "https://127.0.0.1:$kcm_port/healthz"
fi

# From now on a component that exits is restarted instead of ending the control plane.
touch "$armed"

# AJAN_KUBE_DIR last: readers (ajan.simulate.stack.read_exports) stop at it, and a pipe may hand
# them the lines in pieces.
{
  echo "export KUBECONFIG=$dir/admin.kubeconfig"
  echo "export AJAN_RESTRICTED_KUBECONFIG=$dir/restricted.kubeconfig"
  echo "export AJAN_KUBE_AUDIT_LOG=$audit_log"
  echo "export AJAN_KUBE_DIR=$dir"
} | tee "$dir/env.sh"
log "ready: apiserver $server (etcd 127.0.0.1:$etcd_port$([[ $with_kcm == 1 ]] && echo ", controller-manager 127.0.0.1:$kcm_port")); Ctrl-C to stop"

# --- foreground until interrupted, or until a supervisor dies ----------------------------------------
set +e
wait -n "${pids[@]}"
rc=$?
set -e
log "a component exited (status $rc); stopping the rest"
for i in "${!pids[@]}"; do
  kill -0 "${pids[i]}" 2>/dev/null || log "  exited: pid ${pids[i]}"
done
exit 1
