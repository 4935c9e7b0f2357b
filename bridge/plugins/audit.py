"""The plugins' audit log: every load, unload, crash and denial, tamper-evident.

One JSON object per line; each carries `prev`, the SHA-256 of the line before it (the first:
64 zeros), so an edited, removed or reordered line breaks the chain from there on.
`ruview-bridge plugin audit --verify` checks it.
"""

from __future__ import annotations

import hashlib
import os
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

GENESIS = "0" * 64


class AuditLog:
    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._prev: str | None = None

    def _last(self) -> str:
        if self._prev is None:
            self._prev = GENESIS
            try:
                with open(self.path, "rb") as f:
                    for line in f:
                        if line.strip():
                            self._prev = hashlib.sha256(line.rstrip(b"\n")).hexdigest()
            except FileNotFoundError:
                pass
        return self._prev

    def record(self, plugin: str, action: str, **detail: Any) -> dict[str, Any]:
        with self._lock:
            entry = {"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "plugin": plugin,
                     "action": action, **detail, "prev": self._last()}
            line = orjson.dumps(entry)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "ab") as f:
                f.write(line + b"\n")
            self._prev = hashlib.sha256(line).hexdigest()
            return entry


def verify(path: str | os.PathLike) -> tuple[int, str | None]:
    """(records that verify, the first problem or None)."""
    prev, count = GENESIS, 0
    try:
        lines = Path(path).read_bytes().split(b"\n")
    except OSError as exc:
        return 0, f"{path}: {exc.strerror}"
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            return count, f"{path}:{number}: not a JSON record"
        if not isinstance(entry, dict) or entry.get("prev") != prev:
            return count, f"{path}:{number}: the chain breaks here (a record before it was changed, removed or reordered)"
        prev, count = hashlib.sha256(line).hexdigest(), count + 1
    return count, None
