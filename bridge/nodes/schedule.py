"""Expected hours: when occupancy in a node's room is normal.

Written as "HH:MM-HH:MM" ranges in the bridge's local time; a range may
cross midnight ("22:00-06:30"). Occupancy that starts outside every range
raises `unexpected_occupancy`. No ranges configured means no such events.
"""

from __future__ import annotations

import re
from datetime import datetime

_RANGE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def _minutes(hours: str, minutes: str, text: str) -> int:
    h, m = int(hours), int(minutes)
    if h > 24 or m > 59 or (h == 24 and m):
        raise ValueError(f"{text!r}: times run from 00:00 to 24:00")
    return h * 60 + m


class ExpectedHours:
    def __init__(self, ranges: list[str]) -> None:
        self.text = list(ranges)
        self._spans: list[tuple[int, int]] = []
        for text in ranges:
            match = _RANGE.match(text) if isinstance(text, str) else None
            if not match:
                raise ValueError(f"{text!r}: expected a range like \"07:00-23:30\"")
            start = _minutes(match[1], match[2], text)
            end = _minutes(match[3], match[4], text)
            if start == end:
                raise ValueError(f"{text!r}: start and end are the same; use \"00:00-24:00\" for all day")
            self._spans.append((start, end))

    def expects(self, when: datetime) -> bool:
        minute = when.hour * 60 + when.minute
        return any(start <= minute < end if start < end else (minute >= start or minute < end)
                   for start, end in self._spans)


def expected_hours(value) -> list[str] | None:
    """Config validator: None, or a list of valid ranges."""
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ValueError('expected a list of ranges like ["07:00-23:30"]')
    try:
        ExpectedHours(value)
    except ValueError as exc:
        raise ValueError(f'ranges like "07:00-23:30" ({exc})') from None
    return [v.strip() for v in value]
