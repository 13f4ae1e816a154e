#!/usr/bin/env bash
# Regenerates node/gen/ from proto/ with buf and the local protoc-gen-es (node/buf.gen.yaml), or,
# with --check, generates into a temporary folder and fails if node/gen/ differs from it.
# Needs `npm ci` (for node_modules/.bin/protoc-gen-es) and the Buf CLI: $BUF, else the repository's
# .venv/bin/buf (pip package buf-bin, installed by `make venv`), else `buf` on PATH.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
buf=${BUF:-}
if [[ -z $buf ]]; then
  if [[ -x .venv/bin/buf ]]; then buf=.venv/bin/buf; else buf=buf; fi
fi
if [[ ! -x node/node_modules/.bin/protoc-gen-es ]]; then
  echo "node/node_modules/.bin/protoc-gen-es is missing: run 'npm ci' in node/ first" >&2
  exit 1
fi
if [[ ${1:-} == --check ]]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  "$buf" generate --template node/buf.gen.yaml --output "$tmp"
  if ! diff -r "$tmp/node/gen" node/gen; then
    echo "generated code in node/gen is stale: run 'npm run generate' in node/ and commit" >&2
    exit 1
  fi
  echo "node/gen bindings are fresh"
else
  "$buf" generate --template node/buf.gen.yaml
fi
