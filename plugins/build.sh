#!/usr/bin/env bash
# Build every plugin's plugin.wasm from its source, and write its sha256 into its manifest.
#
#   .venv/bin/pip install -e '.[plugins]' && ./plugins/build.sh
#
# C: Zig's clang from PyPI (ziglang, pinned in pyproject.toml). Rust: Debian's rustc 1.63 with
# libstd-rust-dev-wasm32 (apt-get install rustc libstd-rust-dev-wasm32; no cargo, no network), for
# wasm32-unknown-unknown. AssemblyScript: npm's assemblyscript, pinned in
# pdk/assemblyscript/package-lock.json (npm ci there, once). Each build is the same on every machine
# with the same compilers, byte for byte: tests/plugins/test_trust_and_tools.py rebuilds every
# plugin and checks the committed .wasm files match. Signing is separate (`ruview-bridge plugin
# sign`), because it takes the publisher's private key.
set -euo pipefail
cd "$(dirname "$0")"
HERE="$PWD"
PY="${PYTHON:-../.venv/bin/python}"
[ -x "$PY" ] || PY=python3
OUT="${1:-.}"  # where to write (tests build into a temporary directory)
RUSTC="${RUSTC:-/usr/bin/rustc}"
RUST_VERSION="1.63."  # the committed Rust plugins' bytes are this compiler's

cc() { "$PY" -m ziglang cc --target=wasm32-freestanding -O2 -nostdlib -Wl,--no-entry -Wl,--strip-all -Wl,-z,stack-size=65536 -Ipdk "$@"; }

for plugin in presence-lights threshold-alert; do
  mkdir -p "$OUT/$plugin"
  cc -o "$OUT/$plugin/plugin.wasm" "$plugin/plugin.c"
done
for variant in loop grow oob undeclared overreach trap flood; do
  mkdir -p "$OUT/hostile/$variant"
  cc -DHOSTILE_$(echo "$variant" | tr a-z A-Z) -o "$OUT/hostile/$variant/plugin.wasm" hostile/hostile.c
done

# Rust: the PDK as an rlib (in a scratch directory), then each plugin as a cdylib against it.
if ! "$RUSTC" --version 2>/dev/null | grep -q "^rustc $RUST_VERSION"; then
  echo "plugins/build.sh: the Rust plugins need Debian's rustc ${RUST_VERSION}x ($RUSTC is $("$RUSTC" --version 2>/dev/null || echo missing)):" >&2
  echo "  sudo apt-get install rustc libstd-rust-dev-wasm32   (or RUSTC=/path/to/that rustc)" >&2
  exit 1
fi
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
rustc_wasm() { "$RUSTC" --edition 2021 --target wasm32-unknown-unknown -C opt-level=z -C panic=abort -C codegen-units=1 \
  --remap-path-prefix="$HERE=." "$@"; }
rustc_wasm --crate-type rlib --crate-name ruview_plugin -o "$scratch/libruview_plugin.rlib" pdk/rust/src/lib.rs
for plugin in threshold-alert-rust; do
  mkdir -p "$OUT/$plugin"
  rustc_wasm --crate-type cdylib --crate-name plugin -C lto -C strip=symbols -C link-arg=-zstack-size=65536 \
    --extern ruview_plugin="$scratch/libruview_plugin.rlib" -o "$OUT/$plugin/plugin.wasm" "$plugin/plugin.rs"
done

# AssemblyScript: npm's assemblyscript, the version pdk/assemblyscript/package-lock.json pins.
ASC=pdk/assemblyscript/node_modules/.bin/asc
if [ ! -x "$ASC" ]; then  # once; the lock keeps two builds (parallel tests) from installing at once
  (
    flock 9
    if [ ! -x "$ASC" ]; then
      echo "plugins/build.sh: installing AssemblyScript with npm ci (pdk/assemblyscript/package-lock.json)" >&2
      (cd pdk/assemblyscript && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    fi
  ) 9>"${TMPDIR:-/tmp}/ruview-plugins-npm-ci.lock"
fi
for plugin in threshold-alert-as; do
  mkdir -p "$OUT/$plugin"
  "$ASC" "$plugin/plugin.ts" -O3 --noAssert --runtime minimal --exportStart _initialize --use abort= \
    -o "$OUT/$plugin/plugin.wasm"
done

if [ "$OUT" = "." ]; then
  "$PY" -m bridge plugin hash presence-lights threshold-alert threshold-alert-rust threshold-alert-as hostile/*/
fi
