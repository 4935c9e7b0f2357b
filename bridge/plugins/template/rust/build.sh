#!/bin/sh -e
# Build plugin.wasm with Debian's rustc (apt-get install rustc libstd-rust-dev-wasm32; no cargo,
# no network) for wasm32-unknown-unknown, then record its hash. RUSTC=... picks another rustc
# that has the wasm32-unknown-unknown standard library.
cd "$(dirname "$0")"
if [ -z "${RUSTC:-}" ]; then RUSTC=rustc; [ -x /usr/bin/rustc ] && RUSTC=/usr/bin/rustc; fi
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
flags="--edition 2021 --target wasm32-unknown-unknown -C opt-level=z -C panic=abort -C codegen-units=1 --remap-path-prefix=$PWD=."
"$RUSTC" $flags --crate-type rlib --crate-name ruview_plugin -o "$scratch/libruview_plugin.rlib" ruview_plugin/lib.rs
"$RUSTC" $flags --crate-type cdylib --crate-name plugin -C lto -C strip=symbols -C link-arg=-zstack-size=65536 \
  --extern ruview_plugin="$scratch/libruview_plugin.rlib" -o plugin.wasm plugin.rs
ruview-bridge plugin hash .
