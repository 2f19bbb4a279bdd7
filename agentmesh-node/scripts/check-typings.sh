#!/usr/bin/env bash
# Checks that the committed loader (native.js) and typings (native.d.ts) are what the napi CLI
# generates from the current Rust sources; with --write, regenerates them in place instead.
#
# Cost: `napi build` always passes `--target <host triple>`, so it compiles the addon and all
# its dependencies a second time, in target/<triple>/debug (about 30-40 s on 2 cores when cold,
# a few seconds when warm). It needs the package's devDependencies (@napi-rs/cli):
# `npm install --no-audit --no-fund` in agentmesh-node/ first.
#
# Usage: bash agentmesh-node/scripts/check-typings.sh [--write]
set -euo pipefail
cd "$(dirname "$0")/.."
napi=node_modules/.bin/napi
if [ ! -x "$napi" ]; then
  echo "check-typings: $napi is missing; run 'npm install --no-audit --no-fund' in agentmesh-node/" >&2
  exit 2
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# --output-dir keeps the fresh .node and files away from the committed ones.
"$napi" build --platform --js native.js --dts native.d.ts --output-dir "$out" >"$out/build.log" 2>&1 || {
  cat "$out/build.log" >&2
  exit 1
}
if [ "${1:-}" = "--write" ]; then
  cp "$out/native.js" "$out/native.d.ts" .
  echo "check-typings: native.js and native.d.ts regenerated"
  exit 0
fi
status=0
for f in native.js native.d.ts; do
  if ! diff -u "$f" "$out/$f"; then
    echo "check-typings: $f is stale; regenerate with 'bash agentmesh-node/scripts/check-typings.sh --write'" >&2
    status=1
  fi
done
[ "$status" -eq 0 ] && echo "check-typings: native.js and native.d.ts are up to date"
exit "$status"
