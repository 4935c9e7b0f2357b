"""WASM plugins: signed, sandboxed WebAssembly plugins that live on MQTT topics (docs/plugins.md)."""
