"""Rates: a counter's per-second rate (status line, bridge/health), and a token bucket (rate caps)."""

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


class TokenBucket:
    """`rate` a second, with bursts of twice that: a flood is refused, a burst is not.
    The one rate cap the edges share (HTTP requests per client, a plugin's host calls)."""

    __slots__ = ("rate", "burst", "tokens", "at")

    def __init__(self, rate: float) -> None:
        self.rate, self.burst = rate, 2 * rate
        self.tokens, self.at = self.burst, time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True
