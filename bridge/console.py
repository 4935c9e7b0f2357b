"""What a person sees: logging setup, secret masking, and the live status line.

On a terminal the bridge keeps one status line at the bottom (broker, nodes,
messages/s) and prints log lines above it; anywhere else (systemd, Docker,
a pipe) it writes plain log lines only. With `bridge.log_file` the same lines
also go to a rotating file that only this user may read (0600, its backups too).
The bridge's own log on MQTT is bridge/core/logs.py.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
import threading
from typing import Any, Callable, TextIO

LEVELS = ("debug", "info", "warning", "error")
FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
_ours: list[logging.Handler] = []  # the handlers setup_logging made: their level follows set_level


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


class PrivateRotatingFile(logging.handlers.RotatingFileHandler):
    """A rotating log file created 0600 (and each backup with it): logs say what nodes and
    people do at home, so only the bridge's user may read them."""

    def _open(self) -> Any:
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            if os.fstat(fd).st_uid == os.getuid():
                os.fchmod(fd, 0o600)  # a file an earlier version made readable by others
            return os.fdopen(fd, self.mode, encoding=self.encoding, errors=self.errors)
        except BaseException:
            os.close(fd)
            raise


def file_handler(path: str, max_bytes: int, backups: int, secrets: list[str]) -> logging.Handler:
    """The rotating file (raises OSError, which the caller reports naming bridge.log_file)."""
    handler = PrivateRotatingFile(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
    handler.setFormatter(logging.Formatter(FORMAT, DATE_FORMAT))
    handler.addFilter(SecretMask(secrets))
    return handler


def setup_logging(level: str, secrets: list[str], status: StatusLine | None = None,
                  log_file: logging.Handler | None = None) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        if handler in _ours and handler is not log_file:
            handler.close()
    _ours.clear()
    stream = sys.stderr
    handler = _StatusAwareHandler(stream, status) if status else logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(FORMAT, DATE_FORMAT))
    handler.addFilter(SecretMask(secrets))
    _ours.append(handler)
    if log_file is not None:
        _ours.append(log_file)
    for ours in _ours:
        root.addHandler(ours)
    set_level(level)


def set_level(level: str) -> None:
    """The bridge's log level from now on: the root logger's, and the console's and the file's."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    for handler in _ours:
        handler.setLevel(level.upper())
