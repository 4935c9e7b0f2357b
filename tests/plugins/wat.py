"""Hostile (and plain) plugins written in WebAssembly text, for tests that need exact behaviour.

`plugin(publisher, into, domain, body, ...)` writes a signed plugin directory whose module is the
ABI's skeleton plus `body` (WAT funcs, data, imports, start) with any export overridden. The
delivery buffer is a fixed 64 KiB window at 64 KiB, in 4 pages of memory: room for any delivery
the bridge may send (abi.MAX_BUFFER), nothing more.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import wasmtime

from tests.plugins.helpers import Publisher

IMPORT_TYPES = {
    "hc_log": "(param i32 i32 i32) (result i32)",
    "hc_state_get": "(param i32 i32 i32 i32) (result i32)",
    "hc_state_set": "(param i32 i32 i32 i32 i32 i32) (result i32)",
    "hc_event_fire": "(param i32 i32 i32 i32) (result i32)",
    "hc_service_call": "(param i32 i32 i32 i32 i32 i32) (result i32)",
    "hc_entity_register": "(param i32 i32) (result i32)",
    "hc_mqtt_publish": "(param i32 i32 i32 i32 i32 i32) (result i32)",
    "hc_mqtt_subscribe": "(param i32 i32) (result i32)",
}
DEFAULT_EXPORTS = {
    "setup_entry": '(func (export "setup_entry") (param i32 i32) (result i32) (i32.const 0))',
    "receive_event": '(func (export "receive_event") (param i32 i32 i32 i32) (result i32) (i32.const 0))',
    "call_service_handler": '(func (export "call_service_handler") (param i32 i32 i32 i32 i32 i32) (result i32) '
                            '(i32.const 0))',
}


def module(body: str = "", *, imports: tuple[str, ...] = (), overrides: dict[str, str] | None = None) -> bytes:
    exports = {**DEFAULT_EXPORTS, **(overrides or {})}
    text = "\n".join([
        "(module",
        *(f'(import "homecore" "{name}" (func ${name} {IMPORT_TYPES[name]}))' for name in imports),
        '(memory (export "memory") 4)',
        '(func (export "alloc") (param i32) (result i32) (i32.const 65536))',
        '(func (export "dealloc") (param i32 i32))',
        *exports.values(),
        body,
        ")"])
    return wasmtime.wat2wasm(text)


def data(offset: int, text: str) -> str:
    """A data segment: `text` at `offset` (WAT string escapes for anything not plain)."""
    escaped = "".join(c if c.isalnum() or c in "/._-:+ {}[],#" else f"\\{ord(c):02x}" for c in text)
    return f'(data (i32.const {offset}) "{escaped}")'


def plugin(publisher: Publisher, into: Path, domain: str, wasm: bytes, *, imports: tuple[str, ...] = (),
           permissions: list[str] | None = None, **manifest: Any) -> Path:
    directory = into / domain
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "plugin.wasm").write_bytes(wasm)
    raw = {"domain": domain, "name": domain.replace("_", " "), "version": "1.0.0", "wasm_module": "plugin.wasm",
           "host_imports_required": list(imports), "homecore_permissions": permissions or [], **manifest}
    (directory / "manifest.json").write_bytes(orjson.dumps(raw))
    publisher.sign(directory)
    return directory
