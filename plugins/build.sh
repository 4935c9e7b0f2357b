#!/usr/bin/env bash
# Build every plugin's plugin.wasm from its C source, and write its sha256 into its manifest.
#
#   .venv/bin/pip install -e '.[plugins]' && ./plugins/build.sh
#
# The compiler is Zig's clang from PyPI (ziglang, pinned in pyproject.toml), so the build is the
# same on every machine and reproducible byte for byte: tests/plugins/test_build.py rebuilds every
# plugin and checks the committed .wasm files match. Signing is separate (`ruview-bridge plugin
# sign`), because it takes the publisher's private key.
set -euo pipefail
cd "$(dirname "$0")"
PY="${PYTHON:-../.venv/bin/python}"
[ -x "$PY" ] || PY=python3
OUT="${1:-.}"  # where to write (tests build into a temporary directory)

cc() { "$PY" -m ziglang cc --target=wasm32-freestanding -O2 -nostdlib -Wl,--no-entry -Wl,--strip-all -Wl,-z,stack-size=65536 -Ipdk "$@"; }

for plugin in presence-lights threshold-alert; do
  mkdir -p "$OUT/$plugin"
  cc -o "$OUT/$plugin/plugin.wasm" "$plugin/plugin.c"
done
for variant in loop grow oob undeclared overreach trap flood; do
  mkdir -p "$OUT/hostile/$variant"
  cc -DHOSTILE_$(echo "$variant" | tr a-z A-Z) -o "$OUT/hostile/$variant/plugin.wasm" hostile/hostile.c
done
if [ "$OUT" = "." ]; then
  "$PY" -m bridge plugin hash presence-lights threshold-alert hostile/*/
fi
