"""Context ids and timestamps in Home Assistant's formats.

HA tags every state change and event with a context (a ULID) so that causes
can be traced (`parent_id`). We use the same shape so HA-minded tools and
users read our payloads without translation.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_context_id() -> str:
    """A ULID: 48-bit millisecond time + 80 random bits, Crockford base32, sortable."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


def context(parent_id: str | None = None, user_id: str | None = None) -> dict:
    return {"id": new_context_id(), "parent_id": parent_id, "user_id": user_id}
