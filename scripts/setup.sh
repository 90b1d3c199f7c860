#!/usr/bin/env bash
# Installs what Verdict needs, idempotently and cached, so that README's two
# commands work on a fresh clone:
#
#   scripts/setup.sh demo   npm packages and the build (what `npm start` needs)
#   scripts/setup.sh test   that, plus system packages (Chromium, Java, protoc, ...),
#                           Kafka's jars, the Kubernetes binaries and schemathesis
#                           (what `npm test` needs; a cold run takes ~15 min, mostly
#                           building Kubernetes; later runs take seconds)
#
# System packages come from apt-get and need root; as another user the script
# prints the apt-get command to run instead.
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-test}"

log() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

system_packages() {
  local missing=()
  command -v git >/dev/null || missing+=(git)
  command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null || missing+=(maven)
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  command -v make >/dev/null || missing+=(build-essential)
  command -v python3 >/dev/null || missing+=(python3)
  python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
  command -v protoc >/dev/null || missing+=(protobuf-compiler)
  [ -f /usr/include/google/protobuf/timestamp.proto ] || missing+=(libprotobuf-dev)
  command -v openssl >/dev/null || missing+=(openssl)
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ]; then
    die "missing system packages; run as root: apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
  fi
  log "installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

npm_packages() {
  # npm records what it installed in node_modules/.package-lock.json; a newer
  # package-lock.json means the tree is stale.
  if [ -f node_modules/.package-lock.json ] && [ node_modules/.package-lock.json -nt package-lock.json ]; then
    return 0
  fi
  log "installing npm packages (npm ci); the first run can take several minutes: better-sqlite3 compiles from source"
  # better-sqlite3 builds from source; node-gyp needs Node's headers, which the
  # machine's Node ships under /usr/include/node (there is no network to fetch them).
  if [ -f /usr/include/node/node.h ]; then export npm_config_nodedir=/usr; fi
  npm ci --no-audit --no-fund --loglevel=error
}

build() {
  # Incremental: tsc only rewrites what changed, in a few seconds.
  npx --no-install tsc -p tsconfig.build.json
}

case "$what" in
  demo)
    npm_packages
    build
    ;;
  test)
    system_packages
    npm_packages
    build
    bash scripts/kafka.sh install
    bash scripts/kube.sh install
    bash scripts/schemathesis.sh install
    ;;
  *) die "usage: scripts/setup.sh demo|test" ;;
esac
