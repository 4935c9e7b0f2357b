"""What the frontend shows from before it was opened: each node's score against its baseline over the
last minutes (the Home chart starts full, not empty) and the latest log lines. Bounded rings,
written on the HTTP extension's inbox, read by the server's loop under one lock."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

SAMPLE_EVERY = 2.0  # seconds: one point per node at most this often
SAMPLES = 300  # points per node: ten minutes at SAMPLE_EVERY
LOG_LINES = 500


class History:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._samples: dict[str, deque[tuple[float, float, float | None]]] = {}
        self._logs: deque[dict[str, Any]] = deque(maxlen=LOG_LINES)

    def sample(self, name: str, state: dict[str, Any] | Any) -> tuple[tuple[float, float, float | None], bool] | None:
        """The point for `name` from its state (if it has a score), and whether it replaces the last one:
        points stay SAMPLE_EVERY apart, and the newest always holds the newest state."""
        score, baseline = state.get("presence_score"), state.get("baseline")
        if not isinstance(score, (int, float)) or score <= 0:
            return None
        now = time.time()
        with self._lock:
            points = self._samples.setdefault(name, deque(maxlen=SAMPLES))
            point = (round(now, 1), float(score), float(baseline) if isinstance(baseline, (int, float)) else None)
            replaces = bool(points) and now - points[-1][0] < SAMPLE_EVERY and len(points) > 1 \
                and points[-1][0] - points[-2][0] < SAMPLE_EVERY
            if replaces:
                points[-1] = point
            else:
                points.append(point)
            return point, replaces

    def rename(self, old: str, new: str) -> None:
        with self._lock:
            if old in self._samples:
                self._samples[new] = self._samples.pop(old)

    def forget(self, name: str) -> None:
        with self._lock:
            self._samples.pop(name, None)

    def samples(self) -> dict[str, list[tuple[float, float, float | None]]]:
        with self._lock:
            return {name: list(points) for name, points in self._samples.items()}

    def log(self, line: dict[str, Any]) -> None:
        with self._lock:
            self._logs.append(line)

    def logs(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._logs)
