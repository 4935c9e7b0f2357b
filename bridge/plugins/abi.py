"""The plugin ABI, in one place: host imports, required exports, return codes (docs/plugins.md;
the C side is plugins/pdk/ruview_plugin.h). Every value crossing is an i32."""

from __future__ import annotations

IMPORT_MODULE = "homecore"  # the seed's module name (ADR-128 §5)
MAX_BUFFER = 64 * 1024  # bytes: no string or JSON crossing the boundary may be longer

# return codes of every host import (>= 0: success; for hc_state_get, the bytes written)
OK = 0
NOT_FOUND = -1
BUFFER_TOO_SMALL = -2
DENIED = -3
BAD_POINTER = -4
INVALID = -5
FAILED = -6
RATE_LIMITED = -7
CODES = {OK: "ok", NOT_FOUND: "not found", BUFFER_TOO_SMALL: "buffer too small", DENIED: "permission denied",
         BAD_POINTER: "pointer or length outside the plugin's memory, or over 64 KiB",
         INVALID: "invalid argument", FAILED: "failed", RATE_LIMITED: "rate limited"}

# name -> number of i32 parameters (each returns one i32)
IMPORTS: dict[str, int] = {
    "hc_log": 3,               # level, msg, msg_len
    "hc_state_get": 4,         # entity, entity_len, out, out_cap -> bytes written
    "hc_state_set": 6,         # entity, len, state, len, attributes_json, len
    "hc_event_fire": 4,        # type, len, data_json, len
    "hc_service_call": 6,      # domain, len, service, len, data_json, len
    "hc_entity_register": 2,   # config_json, len
    "hc_mqtt_publish": 6,      # topic, len, payload, len, qos, retain
    "hc_mqtt_subscribe": 2,    # filter, len
}

# name -> (parameters, results); optional exports may be missing, never of another type
EXPORTS: dict[str, tuple[int, int]] = {
    "alloc": (1, 1),
    "dealloc": (2, 0),
    "setup_entry": (2, 1),
    "receive_event": (4, 1),
    "call_service_handler": (6, 1),
}
OPTIONAL_EXPORTS: dict[str, tuple[int, int]] = {"teardown": (0, 1), "_initialize": (0, 0)}
