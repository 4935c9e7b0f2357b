"""Context ids and timestamps in Home Assistant's formats.

HA tags every state change and event with a context (a ULID) so that causes
can be traced (`parent_id`). We use the same shape so HA-minded tools and
users read our payloads without translation.
"""

from __future__ import annotations

import random
import time
from datetime import datetime, timezone

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]  # 10 bits -> 2 characters


def new_context_id() -> str:
    """A ULID: 48-bit millisecond time + 80 random bits, Crockford base32, sortable.

    Context ids must be unique, not unguessable, so the fast PRNG is enough
    (os.urandom is a system call and tripled the cost of a state write).
    """
    value = (time.time_ns() // 1_000_000) << 80 | random.getrandbits(80)
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in range(120, -10, -10)])


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


def context(parent_id: str | None = None, user_id: str | None = None) -> dict:
    return {"id": new_context_id(), "parent_id": parent_id, "user_id": user_id}
