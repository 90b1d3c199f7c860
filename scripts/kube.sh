#!/usr/bin/env bash
# A real local Kubernetes control plane (etcd, kube-apiserver,
# kube-controller-manager) for development, tests and CI - no Docker, no kind:
# the upstream components are built from source via the Go module proxy.
# There is no scheduler or kubelet: Pods stay Pending.
#
# One script on purpose (~550 lines, and scripts/lib.sh, which it shares with
# kafka.sh): tests, CI and the demo call it as one command with no other
# dependency, and its build, PKI, process and cleanup steps share state.
#
#   scripts/kube.sh install   build etcd, kube-apiserver, kube-controller-manager
#                             and kubectl once into the cache (cold: 8-12 min)
#   scripts/kube.sh start     start a control plane on free loopback ports; prints
#                             server=, kubeconfig=, ca= and token= lines when ready
#   scripts/kube.sh status    print the same lines and exit 0 if running, else exit 1
#   scripts/kube.sh stop      stop the processes and delete the state dir
#   scripts/kube.sh path      print the bin dir (kubectl is there)
#
# Files in the state dir after start: kubeconfig (admin, token auth),
# user-kubeconfig (limited user), server, ca.crt, admin-token, user-token, *.log.
# The admin token is in system:masters; the user token has no groups beyond
# system:authenticated, so RBAC refuses it everything not granted explicitly.
#
# Environment:
#   VERDICT_KUBE_VERSION        Kubernetes release (default: the pinned one below)
#   VERDICT_ETCD_VERSION        etcd release (default: the pinned one below; 3.5+)
#   VERDICT_CACHE_DIR           cache root (default $HOME/.cache/verdict)
#   VERDICT_KUBE_STATE          state dir: pki, etcd data, logs, kubeconfig (default /tmp/verdict-kube)
#   VERDICT_KUBE_START_TIMEOUT  seconds to wait for readiness (default 90)
#   VERDICT_KUBE_STOP_TIMEOUT   seconds between SIGTERM and SIGKILL (default 20)
#   VERDICT_KUBE_OWNER_PID      if set at start, everything is stopped when that process exits
#   VERDICT_GO                  go binary (default: go on PATH, else /usr/local/go/bin/go)
#   GOFLAGS, GOPROXY, GOMODCACHE, GOCACHE, ...   passed to go as usual (e.g. GOFLAGS=-mod=mod)
set -euo pipefail

readonly PINNED_KUBE_VERSION=v1.34.4
readonly PINNED_ETCD_VERSION=v3.6.16
# Bump when the build recipe changes so cached binaries are rebuilt.
readonly RECIPE=3

KUBE_VERSION="${VERDICT_KUBE_VERSION:-$PINNED_KUBE_VERSION}"
KUBE_VERSION="v${KUBE_VERSION#v}"
ETCD_VERSION="${VERDICT_ETCD_VERSION:-$PINNED_ETCD_VERSION}"
ETCD_VERSION="v${ETCD_VERSION#v}"
CACHE_ROOT="${VERDICT_CACHE_DIR:-${HOME:-/tmp}/.cache/verdict}"
KUBE_HOME="$CACHE_ROOT/kubernetes-$KUBE_VERSION"
BIN="$KUBE_HOME/bin"
BUILD="$CACHE_ROOT/build"
STATE="${VERDICT_KUBE_STATE:-/tmp/verdict-kube}"
START_TIMEOUT="${VERDICT_KUBE_START_TIMEOUT:-90}"
STOP_TIMEOUT="${VERDICT_KUBE_STOP_TIMEOUT:-20}"
SELF="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
COMPONENTS=(etcd kube-apiserver kube-controller-manager)
# No scheduler or kubelet, so only controllers that act on API objects alone.
# clusterrole-aggregation fills the admin/edit/view ClusterRoles.
KCM_CONTROLLERS=namespace-controller,garbage-collector-controller,deployment-controller,replicaset-controller
KCM_CONTROLLERS+=,statefulset-controller,daemonset-controller,job-controller,cronjob-controller,ttl-after-finished-controller
KCM_CONTROLLERS+=,serviceaccount-controller,serviceaccount-token-controller,root-ca-certificate-publisher-controller
KCM_CONTROLLERS+=,clusterrole-aggregation-controller,resourcequota-controller,disruption-controller
KCM_CONTROLLERS+=,endpointslice-controller,validatingadmissionpolicy-status-controller
# Stamps: what each binary was built from; a mismatch means rebuild.
KUBE_STAMP="kubernetes $KUBE_VERSION recipe $RECIPE"
ETCD_STAMP="etcd $ETCD_VERSION recipe $RECIPE"

# log, die, usage, pid_running, stop_pid, stop_watchdog, free_ports
# shellcheck source=scripts/lib.sh
source "$(dirname "$SELF")/lib.sh"
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# ---------------------------------------------------------------------- install

GO=""
need_go() {
  if [[ -n "${VERDICT_GO:-}" ]]; then
    GO="$VERDICT_GO"
  elif command -v go >/dev/null 2>&1; then
    GO="$(command -v go)"
  elif [[ -x /usr/local/go/bin/go ]]; then
    GO=/usr/local/go/bin/go
  else
    die "go not found; Kubernetes is built from source: install Go 1.24+ (https://go.dev/dl) or set VERDICT_GO"
  fi
  local v
  v="$("$GO" env GOVERSION 2>/dev/null)" || die "'$GO env GOVERSION' failed; install Go 1.24+ or set VERDICT_GO"
  [[ "$v" =~ ^go1\.([0-9]+) ]] || die "cannot parse the Go version '$v' of $GO"
  (( BASH_REMATCH[1] >= 24 )) || die "$GO is $v; Kubernetes ${KUBE_VERSION} needs Go 1.24+: install a newer Go or set VERDICT_GO"
}

kube_built() {
  local b
  for b in kube-apiserver kube-controller-manager kubectl; do [[ -x "$BIN/$b" ]] || return 1; done
  [[ "$(cat "$BIN/.kubernetes.stamp" 2>/dev/null)" == "$KUBE_STAMP" ]]
}
etcd_built() { [[ -x "$BIN/etcd" && "$(cat "$BIN/.etcd.stamp" 2>/dev/null)" == "$ETCD_STAMP" ]]; }
installed() { kube_built && etcd_built; }

# run_go LOGFILE WHAT ARGS...: go with its output in LOGFILE, tail shown on failure.
run_go() {
  local logf="$1" what="$2"; shift 2
  if ! "$GO" "$@" >>"$logf" 2>&1; then
    tail -n 30 "$logf" >&2 || true
    die "$what failed (log above, full log $logf). Check that the Go module proxy is reachable (GOPROXY=$("$GO" env GOPROXY)) and that the version exists; re-run: bash scripts/kube.sh install"
  fi
}

build_etcd() {
  local dir="$BUILD/etcd-$ETCD_VERSION" logf t0
  t0="$(now_ms)"
  log "building etcd $ETCD_VERSION (log $dir/build.log) ..."
  rm -rf "$dir"; mkdir -p "$dir"
  : >"$dir/build.log"
  cat >"$dir/go.mod" <<EOF
module verdict.local/etcd

go 1.24
EOF
  # etcd's own main package cannot be `go install`ed (replace directives).
  cat >"$dir/main.go" <<'EOF'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
  logf="$dir/build.log"
  (cd "$dir" && run_go "$logf" "go get go.etcd.io/etcd/server/v3@$ETCD_VERSION" get "go.etcd.io/etcd/server/v3@$ETCD_VERSION")
  (cd "$dir" && run_go "$logf" "go mod tidy (etcd)" mod tidy)
  (cd "$dir" && run_go "$logf" "go build (etcd)" build -trimpath \
    -ldflags "-s -w" -o "$BIN/etcd.tmp" .)
  mv -f "$BIN/etcd.tmp" "$BIN/etcd"
  echo "$ETCD_STAMP" >"$BIN/.etcd.stamp"
  log "etcd $ETCD_VERSION built in $(( ($(now_ms) - t0) / 1000 )) s: $BIN/etcd"
}

build_kube() {
  local dir="$BUILD/kubernetes-$KUBE_VERSION" logf t0 json gomod modtime minor patch
  t0="$(now_ms)"
  log "building kube-apiserver, kube-controller-manager, kubectl $KUBE_VERSION (cold: 7-10 min; log $dir/build.log) ..."
  rm -rf "$dir"; mkdir -p "$dir"
  logf="$dir/build.log"
  : >"$logf"
  json="$(cd "$dir" && "$GO" mod download -json "k8s.io/kubernetes@$KUBE_VERSION" 2>>"$logf")" || {
    tail -n 20 "$logf" >&2
    die "could not download k8s.io/kubernetes@$KUBE_VERSION (log $logf). Check the Go module proxy (GOPROXY=$("$GO" env GOPROXY)) and the version"
  }
  gomod="$(sed -nE 's/^[[:space:]]*"GoMod": "(.*)",?$/\1/p' <<<"$json")"
  [[ -f "$gomod" ]] || die "go mod download printed no go.mod for k8s.io/kubernetes@$KUBE_VERSION: $json"
  modtime="$(sed -nE 's/.*"Time":"?([^",}]*).*/\1/p' "${gomod%.mod}.info" 2>/dev/null || true)"
  [[ "$KUBE_VERSION" =~ ^v1\.([0-9]+)\.([0-9]+)$ ]] || die "VERDICT_KUBE_VERSION must look like v1.34.4, not $KUBE_VERSION"
  minor="${BASH_REMATCH[1]}"; patch="${BASH_REMATCH[2]}"

  # k8s.io/kubernetes replaces its staging modules with ./staging/...; a
  # dependent module must replace them with the published v0.<minor>.<patch>.
  {
    printf 'module verdict.local/kubernetes\n\ngo 1.24\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$KUBE_VERSION"
    awk '/^replace[[:space:]]*\(/ { r = 1; next } r && /^\)/ { r = 0 } r && $2 == "=>" && $3 ~ /^\.\/staging\// { print $1 }' "$gomod" |
      while read -r m; do printf '\t%s => %s v0.%s.%s\n' "$m" "$m" "$minor" "$patch"; done
    printf ')\n'
  } >"$dir/go.mod"
  grep -q '=> k8s.io/api v0' "$dir/go.mod" || die "found no staging replace directives in $gomod; the build recipe needs updating for $KUBE_VERSION"
  # main packages cannot be imported: pull in what the three mains import.
  cat >"$dir/tools.go" <<'EOF'
//go:build tools

package tools

import (
	_ "k8s.io/client-go/plugin/pkg/client/auth"
	_ "k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	_ "k8s.io/kubectl/pkg/cmd"
	_ "k8s.io/kubectl/pkg/cmd/util"
	_ "k8s.io/kubernetes/cmd/kube-apiserver/app"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager/app"
)
EOF
  log "resolving modules (go mod tidy) ..."
  (cd "$dir" && run_go "$logf" "go mod tidy (kubernetes)" mod tidy)

  local ld="-s -w" key val
  # Empty gitCommit (else "$Format:%H$"): the proxy does not say which commit a
  # tag is. "archive" is upstream's tree state for builds from a source archive.
  for kv in "gitVersion=$KUBE_VERSION" "gitMajor=1" "gitMinor=$minor" "gitCommit=" "gitTreeState=archive" \
      "buildDate=${modtime:-1970-01-01T00:00:00Z}"; do
    key="${kv%%=*}"; val="${kv#*=}"
    ld+=" -X k8s.io/component-base/version.$key=$val -X k8s.io/client-go/pkg/version.$key=$val"
  done
  log "compiling (go build) ..."
  rm -rf "$dir/out"; mkdir -p "$dir/out"
  (cd "$dir" && run_go "$logf" "go build (kubernetes)" build -trimpath -ldflags "$ld" -o "$dir/out/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl)
  local b
  for b in kube-apiserver kube-controller-manager kubectl; do mv -f "$dir/out/$b" "$BIN/$b"; done
  echo "$KUBE_STAMP" >"$BIN/.kubernetes.stamp"
  log "kubernetes $KUBE_VERSION built in $(( ($(now_ms) - t0) / 1000 )) s: $BIN"
}

cmd_install() {
  command -v flock >/dev/null 2>&1 || die "flock not found: apt-get install util-linux"
  mkdir -p "$BIN"
  exec 8>"$KUBE_HOME/.lock"
  flock -n 8 || { log "another install into $KUBE_HOME is running; waiting for it ..."; flock -w 3600 8 || die "timed out waiting for another install into $KUBE_HOME"; }
  if installed; then
    log "kubernetes $KUBE_VERSION and etcd $ETCD_VERSION already built in $BIN"
    exec 8>&-
    return 0
  fi
  need_go
  # Static binaries, as upstream builds them; no C toolchain needed.
  export CGO_ENABLED=0
  local t0; t0="$(now_ms)"
  etcd_built || build_etcd
  kube_built || build_kube
  rm -rf "$BUILD/etcd-$ETCD_VERSION" "$BUILD/kubernetes-$KUBE_VERSION"
  rmdir "$BUILD" 2>/dev/null || true
  log "installed in $(( ($(now_ms) - t0) / 1000 )) s: $(du -sh "$BIN" | cut -f1) in $BIN"
  exec 8>&-
}

need_installed() {
  installed || die "kubernetes $KUBE_VERSION / etcd $ETCD_VERSION binaries are not built in $BIN; run: bash scripts/kube.sh install"
}

# ------------------------------------------------------------------------ state

# Marks a state dir as ours, so `stop` may delete it.
readonly MARK=.verdict-kube-state

pid_of() { cat "$STATE/$1.pid" 2>/dev/null || true; }

# alive COMPONENT: the pid recorded for COMPONENT runs our binary.
alive() {
  local pid; pid="$(pid_of "$1")"
  [[ "$pid" =~ ^[0-9]+$ ]] && pid_running "$pid" || return 1
  if [[ -r "/proc/$pid/cmdline" ]]; then
    tr '\0' '\n' <"/proc/$pid/cmdline" | head -n1 | grep -q "/$1\$" || return 1
  fi
}

# ours COMPONENT: alive, or a child of this shell not yet exec'ed into it.
ours() {
  alive "$1" && return 0
  local pid; pid="$(pid_of "$1")"
  [[ "$pid" =~ ^[0-9]+$ ]] && pid_running "$pid" || return 1
  [[ "$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f2)" == "$$" ]]
}

running() {
  [[ -f "$STATE/info" ]] || return 1
  local c
  for c in "${COMPONENTS[@]}"; do alive "$c" || return 1; done
}

lock_state() {
  local tries
  for tries in 1 2 3 4 5; do
    mkdir -p "$STATE"
    exec 9>>"$STATE/lock"
    flock -w 120 9 || die "timed out waiting for another kube.sh on $STATE"
    # A concurrent `stop` may have deleted the dir while we waited.
    [[ "$STATE/lock" -ef /dev/fd/9 ]] && return 0
    exec 9>&-
  done
  die "could not lock $STATE"
}

# stop_all: TERM, wait, KILL; controller manager first, etcd last.
stop_all() {
  local c pid pids=()
  for c in kube-controller-manager kube-apiserver etcd; do
    if ours "$c"; then
      pid="$(pid_of "$c")"
      stop_pid "$pid" "$c ($pid)"
      pids+=("$c $pid")
    fi
    rm -f "$STATE/$c.pid"
  done
  (( ${#pids[@]} == 0 )) || log "stopped: ${pids[*]}"
}

# ------------------------------------------------------------------------- pki

gen_pki() {
  local d="$STATE/pki"
  mkdir -p "$d"
  (
    cd "$d"
    umask 077
    openssl ecparam -name prime256v1 -genkey -noout -out ca.key
    openssl req -x509 -new -key ca.key -sha256 -days 3650 -subj "/CN=verdict-kube-ca" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" -out ca.crt
    openssl ecparam -name prime256v1 -genkey -noout -out server.key
    openssl req -new -key server.key -subj "/CN=kube-apiserver" -out server.csr
    printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
      "extendedKeyUsage=serverAuth" \
      "subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.96.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local" >server.ext
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -sha256 -extfile server.ext -out server.crt
    # Service-account tokens: RSA, which every JWT consumer accepts.
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key
    openssl pkey -in sa.key -pubout -out sa.pub
  ) >"$STATE/pki.log" 2>&1 || { cat "$STATE/pki.log" >&2; die "openssl failed to make the PKI (log above); check that openssl 1.1.1+ is installed: apt-get install openssl"; }
  install -m 644 "$d/ca.crt" "$STATE/ca.crt"
}

token() { head -c 24 /dev/urandom | base64 | tr '+/' '-_' | tr -d '='; }

# write_kubeconfig FILE SERVER USER TOKEN
write_kubeconfig() {
  local ca; ca="$(base64 -w0 <"$STATE/ca.crt")"
  (umask 077; cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: verdict
  cluster:
    server: $2
    certificate-authority-data: $ca
users:
- name: $3
  user:
    token: $4
contexts:
- name: verdict
  context:
    cluster: verdict
    user: $3
    namespace: default
current-context: verdict
EOF
  )
}

# ------------------------------------------------------------------------ probes

# wait_url COMPONENT TIMEOUT_S URL CURL_ARGS...: 0 when URL answers 200 "ok",
# 2 if the process died, 3 on timeout.
wait_url() {
  local c="$1" timeout="$2" url="$3"; shift 3
  local deadline=$(( $(now_ms) + timeout * 1000 ))
  while :; do
    alive "$c" || return 2
    if curl -sf -o /dev/null --max-time 2 "$@" "$url" 2>/dev/null; then return 0; fi
    (( $(now_ms) < deadline )) || return 3
    sleep 0.1
  done
}

# ------------------------------------------------------------------------ start

START_OK=0
start_cleanup() {
  if (( START_OK == 0 )); then
    stop_all 2>/dev/null || true
    rm -f "$STATE/info"
  fi
}

spawn() { # COMPONENT ARGS...
  local c="$1"; shift
  # Detached from this shell: stdio to files, lock fds closed, own session.
  setsid "$BIN/$c" "$@" </dev/null >>"$STATE/$c.log" 2>&1 9>&- 8>&- &
  local pid=$! n=0
  echo "$pid" >"$STATE/$c.pid"
  # $! is a forked shell until it has exec'ed the binary; `alive` checks the
  # command line, so wait for the exec (else a fast probe sees "exited").
  while (( n++ < 200 )) && pid_running "$pid" && ! alive "$c"; do sleep 0.01; done
}

# fail COMPONENT RC: print the log tail of COMPONENT and die (rc 2 died, 3 timeout).
fail() {
  log "$1 log ($STATE/$1.log):"
  tail -n 40 "$STATE/$1.log" >&2 || true
  if (( $2 == 3 )); then
    die "$1 not ready after ${START_TIMEOUT}s (log above, full logs in $STATE); raise VERDICT_KUBE_START_TIMEOUT on slow machines, then: bash scripts/kube.sh stop && bash scripts/kube.sh start"
  fi
  die "$1 exited during start-up (log above, full logs in $STATE). If the binaries are broken, rebuild: rm -rf $BIN && bash scripts/kube.sh install"
}

bind_clash() { grep -qi 'address already in use' "$STATE/$1.log" 2>/dev/null; }

cmd_start() {
  command -v flock >/dev/null 2>&1 || die "flock not found: apt-get install util-linux"
  command -v openssl >/dev/null 2>&1 || die "openssl not found (makes the CA and certificates): apt-get install openssl"
  command -v curl >/dev/null 2>&1 || die "curl not found (probes readiness): apt-get install curl"
  need_installed
  if [[ -d "$STATE" && ! -f "$STATE/$MARK" && -n "$(ls -A "$STATE" 2>/dev/null)" ]]; then
    die "$STATE exists and is not a kube.sh state dir; set VERDICT_KUBE_STATE to a new or empty directory"
  fi
  lock_state
  touch "$STATE/$MARK"
  if running; then
    cat "$STATE/info"
    return 0
  fi
  stop_all
  rm -rf "$STATE/etcd-data" "$STATE/pki" "$STATE/info" "$STATE"/*.log "$STATE/kcm-certs"
  trap start_cleanup EXIT

  local t0 t_etcd t_api attempt ports etcd_port peer_port api_port kcm_port rc c server deadline left
  t0="$(now_ms)"
  deadline=$(( t0 / 1000 + START_TIMEOUT ))
  gen_pki
  local admin_token user_token kcm_token
  admin_token="$(token)"; user_token="$(token)"; kcm_token="$(token)"
  (umask 077; {
   printf '%s,verdict-admin,verdict-admin,"system:masters"\n' "$admin_token"
   printf '%s,verdict-user,verdict-user\n' "$user_token"
   # --use-service-account-credentials=false: one identity for all controllers.
   printf '%s,system:kube-controller-manager,system:kube-controller-manager,"system:masters"\n' "$kcm_token"
  } >"$STATE/tokens.csv")
  (umask 077; echo "$admin_token" >"$STATE/admin-token"; echo "$user_token" >"$STATE/user-token")

  for attempt in 1 2 3; do
    read -r etcd_port peer_port api_port kcm_port <<<"$(free_ports 4)" || true
    [[ -n "$kcm_port" ]] || die "could not find free loopback ports"
    server="https://127.0.0.1:$api_port"
    rm -rf "$STATE/etcd-data" "$STATE/kcm-certs"
    for c in "${COMPONENTS[@]}"; do : >"$STATE/$c.log"; done

    # One member on loopback: short raft timers make it leader in ~0.1 s, not ~1 s.
    spawn etcd --name verdict --data-dir "$STATE/etcd-data" \
      --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
      --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
      --initial-cluster "verdict=http://127.0.0.1:$peer_port" --initial-cluster-state new \
      --log-level warn --unsafe-no-fsync --quota-backend-bytes 1073741824 \
      --heartbeat-interval 10 --election-timeout 100
    left=$(( deadline - $(date +%s) )); (( left > 0 )) || left=1
    rc=0; wait_url etcd "$left" "http://127.0.0.1:$etcd_port/health" || rc=$?
    t_etcd="$(now_ms)"
    if (( rc != 0 )); then
      stop_all
      if bind_clash etcd && (( attempt < 3 )); then log "port clash for etcd, retrying with other ports"; continue; fi
      fail etcd "$rc"
    fi

    spawn kube-apiserver --etcd-servers "http://127.0.0.1:$etcd_port" \
      --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
      --tls-cert-file "$STATE/pki/server.crt" --tls-private-key-file "$STATE/pki/server.key" \
      --client-ca-file "$STATE/pki/ca.crt" --token-auth-file "$STATE/tokens.csv" \
      --authorization-mode RBAC \
      --service-account-issuer https://kubernetes.default.svc.cluster.local \
      --service-account-key-file "$STATE/pki/sa.pub" --service-account-signing-key-file "$STATE/pki/sa.key" \
      --service-cluster-ip-range 10.96.0.0/16 \
      --disable-admission-plugins ServiceAccount \
      --endpoint-reconciler-type none \
      --cert-dir "$STATE/pki" --profiling=false
    left=$(( deadline - $(date +%s) )); (( left > 0 )) || left=1
    rc=0; wait_url kube-apiserver "$left" "$server/readyz" --cacert "$STATE/ca.crt" -H "Authorization: Bearer $admin_token" || rc=$?
    t_api="$(now_ms)"
    if (( rc != 0 )); then
      stop_all
      if bind_clash kube-apiserver && (( attempt < 3 )); then log "port clash for kube-apiserver, retrying with other ports"; continue; fi
      fail kube-apiserver "$rc"
    fi

    write_kubeconfig "$STATE/controller-manager.kubeconfig" "$server" system:kube-controller-manager "$kcm_token"
    spawn kube-controller-manager --kubeconfig "$STATE/controller-manager.kubeconfig" \
      --bind-address 127.0.0.1 --secure-port "$kcm_port" --cert-dir "$STATE/kcm-certs" \
      --leader-elect=false --use-service-account-credentials=false \
      --controllers "$KCM_CONTROLLERS" \
      --service-account-private-key-file "$STATE/pki/sa.key" --root-ca-file "$STATE/pki/ca.crt" \
      --profiling=false
    left=$(( deadline - $(date +%s) )); (( left > 0 )) || left=1
    rc=0; wait_url kube-controller-manager "$left" "https://127.0.0.1:$kcm_port/healthz" -k || rc=$?
    if (( rc != 0 )); then
      stop_all
      if bind_clash kube-controller-manager && (( attempt < 3 )); then log "port clash for kube-controller-manager, retrying with other ports"; continue; fi
      fail kube-controller-manager "$rc"
    fi
    START_OK=1
    break
  done
  trap - EXIT

  write_kubeconfig "$STATE/kubeconfig" "$server" verdict-admin "$admin_token"
  write_kubeconfig "$STATE/user-kubeconfig" "$server" verdict-user "$user_token"
  echo "$server" >"$STATE/server"
  printf 'server=%s\nkubeconfig=%s\nca=%s\ntoken=%s\n' "$server" "$STATE/kubeconfig" "$STATE/ca.crt" "$admin_token" >"$STATE/info"
  local t_end; t_end="$(now_ms)"
  log "kubernetes $KUBE_VERSION ready in $(( t_end - t0 )) ms (etcd +$(( t_etcd - t0 )), kube-apiserver +$(( t_api - t_etcd )), kube-controller-manager +$(( t_end - t_api ))) at $server (pids etcd $(pid_of etcd), kube-apiserver $(pid_of kube-apiserver), kube-controller-manager $(pid_of kube-controller-manager); logs in $STATE)"
  if [[ -n "${VERDICT_KUBE_OWNER_PID:-}" ]]; then
    setsid bash "$SELF" _watch "$VERDICT_KUBE_OWNER_PID" "$(pid_of kube-apiserver)" </dev/null >/dev/null 2>&1 9>&- 8>&- &
    echo $! >"$STATE/watchdog.pid"
  fi
  cat "$STATE/info"
}

# _watch OWNER_PID APISERVER_PID: stop everything once OWNER_PID has exited.
cmd_watch() {
  local owner="$1" api="$2"
  while [[ "$(pid_of kube-apiserver)" == "$api" ]]; do
    pid_running "$owner" || exec bash "$SELF" stop
    sleep 2
  done
}

# ------------------------------------------------------------------- stop/status

cmd_stop() {
  if [[ ! -d "$STATE" ]]; then
    log "nothing running (no state dir $STATE)"
    return 0
  fi
  if [[ ! -f "$STATE/$MARK" ]]; then
    rmdir -- "$STATE" 2>/dev/null && return 0  # empty: a start that failed early
    die "$STATE is not a kube.sh state dir; not touching it"
  fi
  lock_state
  stop_all
  stop_watchdog
  rm -rf -- "$STATE"
}

cmd_status() {
  if running; then
    cat "$STATE/info"
    return 0
  fi
  log "not running (state $STATE)"
  return 1
}

# In braces with exit: bash reads scripts lazily, and a long install or the
# watchdog must not run what a `git pull` wrote over this file meanwhile.
{
  case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    path) echo "$BIN" ;;
    _watch) shift; cmd_watch "$@" ;;
    -h|--help|help) usage ;;
    *) usage; exit 2 ;;
  esac
  exit
}
