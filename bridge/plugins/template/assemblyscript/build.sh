#!/bin/sh -e
# Build plugin.wasm with npm's assemblyscript (installed here by npm install, once), then record its
# hash. ASC=... picks a compiler that is installed elsewhere.
cd "$(dirname "$0")"
if [ -z "${ASC:-}" ]; then
  ASC=node_modules/.bin/asc
  [ -x "$ASC" ] || npm install --no-audit --no-fund --loglevel=error
fi
"$ASC" plugin.ts -O3 --noAssert --runtime minimal --exportStart _initialize --use abort= -o plugin.wasm
ruview-bridge plugin hash .
