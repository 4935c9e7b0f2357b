#!/bin/sh -e
# Build plugin.wasm with Zig's clang from PyPI (pip install ziglang), then record its hash.
cd "$(dirname "$0")"
python3 -m ziglang cc --target=wasm32-freestanding -O2 -nostdlib -Wl,--no-entry -Wl,--strip-all \
  -Wl,-z,stack-size=65536 -I. -o plugin.wasm plugin.c
ruview-bridge plugin hash .
