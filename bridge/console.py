"""What a person sees: logging setup, secret masking, and the live status line.

On a terminal the bridge keeps one status line at the bottom (broker, nodes,
messages/s) and prints log lines above it; anywhere else (systemd, Docker,
a pipe) it writes plain log lines only.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Callable, TextIO



class SecretMask(logging.Filter):
    """Replace every configured secret in a log record by '***' (defence in depth)."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if len(s) >= 3]

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            text = record.getMessage()
            if any(s in text for s in self.secrets):
                for s in self.secrets:
                    text = text.replace(s, "***")
                record.msg, record.args = text, ()
        return True


class StatusLine:
    """One self-refreshing line at the bottom of a terminal."""

    def __init__(self, stream: TextIO, render: Callable[[], str], interval: float = 1.0) -> None:
        self.stream, self.render, self.interval = stream, render, interval
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._last = ""

    def clear(self) -> None:
        if self._last:
            self.stream.write("\r\033[K")
            self._last = ""

    def draw(self) -> None:
        self._last = self.render()
        self.stream.write("\r\033[K" + self._last)
        self.stream.flush()

    def run(self) -> None:
        while not self._stop.wait(self.interval):
            with self.lock:
                self.draw()

    def start(self) -> None:
        threading.Thread(target=self.run, name="status-line", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        with self.lock:
            self.clear()
            self.stream.flush()


class _StatusAwareHandler(logging.StreamHandler):
    def __init__(self, stream: TextIO, status: StatusLine) -> None:
        super().__init__(stream)
        self.status = status

    def emit(self, record: logging.LogRecord) -> None:
        with self.status.lock:
            self.status.clear()
            super().emit(record)
            if not self.status._stop.is_set():
                self.status.draw()


def setup_logging(level: str, secrets: list[str], status: StatusLine | None = None) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    stream = sys.stderr
    handler = _StatusAwareHandler(stream, status) if status else logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                                           "%Y-%m-%d %H:%M:%S"))
    handler.addFilter(SecretMask(secrets))
    root.addHandler(handler)
    root.setLevel(level.upper())
