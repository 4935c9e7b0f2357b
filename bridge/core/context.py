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


_millisecond: tuple[int, str] = (-1, "")  # the last millisecond an id was made in, and its 10 characters
_second: tuple[int, str] = (-1, "")  # the last second a timestamp was made in, and its text


def new_context_id() -> str:
    """A ULID: 48-bit millisecond time + 80 random bits, Crockford base32, sortable.

    Context ids must be unique, not unguessable, so the fast PRNG is enough
    (os.urandom is a system call and tripled the cost of a state write). The time's 10
    characters are made once per millisecond (a state write makes one id; plugins write
    tens of thousands a second).
    """
    global _millisecond
    ms = time.time_ns() // 1_000_000
    if ms != _millisecond[0]:
        _millisecond = (ms, "".join([_PAIRS[(ms >> shift) & 1023] for shift in (40, 30, 20, 10, 0)]))
    r = random.getrandbits(80)
    return "".join((_millisecond[1], _PAIRS[r >> 70], _PAIRS[(r >> 60) & 1023], _PAIRS[(r >> 50) & 1023],
                    _PAIRS[(r >> 40) & 1023], _PAIRS[(r >> 30) & 1023], _PAIRS[(r >> 20) & 1023],
                    _PAIRS[(r >> 10) & 1023], _PAIRS[r & 1023]))


def utc_now_iso() -> str:
    """Now, as Home Assistant writes it (`2026-12-02T01:00:00.000000+00:00`); the date and time
    of day are formatted once per second."""
    global _second
    second, micros = divmod(time.time_ns() // 1000, 1_000_000)
    if second != _second[0]:
        _second = (second, datetime.fromtimestamp(second, timezone.utc).isoformat()[:19])
    return f"{_second[1]}.{micros:06d}+00:00"


def context(parent_id: str | None = None, user_id: str | None = None) -> dict:
    return {"id": new_context_id(), "parent_id": parent_id, "user_id": user_id}
