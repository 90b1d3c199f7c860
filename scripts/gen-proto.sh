#!/usr/bin/env bash
# Generates TypeScript from proto/ with ts-proto (a pure-TypeScript protoc
# plugin from npm) and Debian's protoc. Usage: scripts/gen-proto.sh [out-dir]
# (default src/gen). The options below are part of the contract: test/proto
# checks that src/gen is exactly what this script produces.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-src/gen}"
if ! command -v protoc >/dev/null; then
  echo "gen-proto: protoc not found; install it with: apt-get install protobuf-compiler libprotobuf-dev" >&2
  exit 1
fi
wkt=/usr/include
if [ ! -f "$wkt/google/protobuf/timestamp.proto" ]; then
  echo "gen-proto: google/protobuf/*.proto not found under $wkt; install libprotobuf-dev" >&2
  exit 1
fi
mkdir -p "$out"
opts=(
  outputServices=grpc-js esModuleInterop=true importSuffix=.js forceLong=number useDate=false env=node
  useOptionals=none oneof=unions-value outputJsonMethods=false outputPartialMethods=false snakeToCamel=false
)
# shellcheck disable=SC2046
protoc -I proto -I "$wkt" \
  --plugin=protoc-gen-ts_proto=node_modules/.bin/protoc-gen-ts_proto \
  --ts_proto_out="$out" \
  --ts_proto_opt="$(IFS=,; echo "${opts[*]}")" \
  $(cd proto && find . -name '*.proto' | sort | sed 's|^\./||')
