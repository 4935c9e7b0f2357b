"""Incoming JSON payloads: parsed once, with an error message a sender can act on."""

from __future__ import annotations

from typing import Any

import orjson


class PayloadError(ValueError):
    pass


def parse_json(payload: bytes, *, expect_object: bool = True) -> Any:
    """Parse an MQTT payload; the empty payload is an empty object."""
    if not payload.strip():
        return {}
    try:
        value = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise PayloadError(f"payload is not valid JSON: {exc}") from None
    if expect_object and not isinstance(value, dict):
        raise PayloadError(f"payload must be a JSON object, got {type(value).__name__}")
    return value


def dumps(value: Any) -> bytes:
    """Compact JSON as an exact-size bytes object.

    orjson (3.13) hands back bytes that keep its 4 KB write buffer; payloads
    live on in the retained cache and the outbox, so they are copied to their
    real size (measured by bench/nodes_memory.py: 4 KB per retained topic).
    """
    return bytes(memoryview(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)))
