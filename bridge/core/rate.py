"""A per-second rate of a growing counter, for the status line and bridge/health."""

from __future__ import annotations

import time
from typing import Callable


class RateMeter:
    """Per-second rate of a growing counter, sampled at most once per `period` seconds.

    The status line is also redrawn after every log line; a rate taken over the few
    milliseconds since the last draw would be noise (9 messages in 1 ms is not 9,000/s).
    """

    def __init__(self, read: Callable[[], int], period: float = 1.0) -> None:
        self.read, self.period = read, period
        self._last = (time.monotonic(), read())
        self._rate = 0.0

    def rate(self) -> float:
        now = time.monotonic()
        then, before = self._last
        if now - then >= self.period:
            value = self.read()
            self._rate = max(0.0, (value - before) / (now - then))
            self._last = (now, value)
        return self._rate
