#!/usr/bin/env bash
# Schemathesis (property-based API testing from an OpenAPI document), pinned and
# cached in its own Python virtual environment, so the system Python is left alone
# (Debian's refuses `pip install` outside a venv) and CI installs it once.
#
#   scripts/schemathesis.sh install            create the venv and install the pinned version
#   scripts/schemathesis.sh path               print the st executable (exit 1 if not installed)
#   scripts/schemathesis.sh run <url> <token> [st args...]
#                                              run every check against <url> (the server's
#                                              http(s)://host:port) with a feed token of scope admin,
#                                              with test/api/schemathesis.toml and its hooks
#
# Environment:
#   VERDICT_CACHE_DIR            cache root (default $HOME/.cache/verdict)
#   VERDICT_SCHEMATHESIS_VERSION version (default: the pinned one below)
#   PYTHON                       python3 to build the venv with (default python3 on PATH)
#   VERDICT_SCHEMATHESIS_DATA    test data for the hooks (test/api/schemathesis_hooks.py says what)
set -euo pipefail

readonly PINNED_VERSION=4.32.5
VERSION="${VERDICT_SCHEMATHESIS_VERSION:-$PINNED_VERSION}"
CACHE_ROOT="${VERDICT_CACHE_DIR:-${HOME:-/tmp}/.cache/verdict}"
VENV="$CACHE_ROOT/schemathesis-$VERSION"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ST="$VENV/bin/st"

log() { printf 'schemathesis.sh: %s\n' "$*" >&2; }
die() { printf 'schemathesis.sh: error: %s\n' "$*" >&2; exit 1; }

install() {
  if [[ -f "$VENV/.installed" && -x "$ST" ]]; then
    log "schemathesis $VERSION already installed in $VENV"
    return
  fi
  local py="${PYTHON:-python3}"
  command -v "$py" >/dev/null 2>&1 || die "python3 not found; apt-get install python3 python3-venv (schemathesis needs Python 3.9+)"
  rm -rf "$VENV"
  mkdir -p "$CACHE_ROOT"
  "$py" -m venv "$VENV" || die "cannot create a Python venv; apt-get install python3-venv"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$VERSION" || { rm -rf "$VENV"; die "pip install schemathesis==$VERSION failed (see above)"; }
  # Written last: an interrupted install is never taken for a finished one.
  touch "$VENV/.installed"
  log "installed $("$ST" --version 2>&1 | tail -n1) in $VENV"
}

case "${1:-}" in
  install) install ;;
  path)
    [[ -f "$VENV/.installed" ]] || { log "not installed; run: bash scripts/schemathesis.sh install"; exit 1; }
    echo "$ST"
    ;;
  run)
    [[ $# -ge 3 ]] || die "usage: scripts/schemathesis.sh run <url> <admin feed token> [st args...]"
    [[ -f "$VENV/.installed" ]] || die "schemathesis is not installed; run: bash scripts/schemathesis.sh install"
    url="${2%/}"
    token="$3"
    shift 3
    # Examples found are not kept between runs (--generation-database none): each run stands alone.
    SCHEMATHESIS_HOOKS="$REPO/test/api/schemathesis_hooks.py" exec "$ST" --config-file "$REPO/test/api/schemathesis.toml" \
      run "$url/api/v1/openapi.json" --checks all --url "$url" --header "Authorization: Bearer $token" \
      --generation-database none "$@"
    ;;
  *) die "usage: scripts/schemathesis.sh install | path | run <url> <token> [st args...]" ;;
esac
