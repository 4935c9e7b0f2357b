"""The plugins' audit log: every load, unload, crash and denial, tamper-evident.

One JSON object per line; each carries `prev`, the SHA-256 of the line before it (the first:
64 zeros), so an edited, removed or reordered line breaks the chain from there on.
`ruview-bridge plugin audit --verify` checks it.

A disk that is full or read-only never takes the plugins down: a record that cannot be written
whole is not written at all (a short write is cut back, so the chain never holds half a line and
the next record chains from the last whole one), the first failure is said once as an error that
names the file and what to do, the records not written are counted (`problem` and `unwritten`,
in bridge/health under `plugins_disk`), and the plugins run on; the records that go to MQTT
(loads, crashes, denials) are still published there.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger(__name__)

GENESIS = "0" * 64


class AuditLog:
    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._prev: str | None = None
        self.problem: str | None = None  # why records are not being written now (said once)
        self.unwritten = 0  # records that could not be written

    def _last(self) -> str:
        if self._prev is None:
            prev = GENESIS
            try:
                with open(self.path, "rb") as f:
                    for line in f:
                        if line.strip():
                            prev = hashlib.sha256(line.rstrip(b"\n")).hexdigest()
            except FileNotFoundError:
                pass
            self._prev = prev  # only once the file was read (an unreadable one raises, and is read again)
        return self._prev

    def record(self, plugin: str, action: str, **detail: Any) -> dict[str, Any]:
        """Append a record and return it; one that cannot be written is counted (see the module)."""
        with self._lock:
            entry = {"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "plugin": plugin,
                     "action": action, **detail}
            try:
                entry["prev"] = self._last()
                line = orjson.dumps(entry)
                self._append(line + b"\n")
            except OSError as exc:
                entry.setdefault("prev", self._prev or GENESIS)
                self.unwritten += 1
                if self.problem is None:
                    self.problem = (f"{self.path}: cannot write the plugins' audit log: "
                                    f"{exc.strerror or exc}; make its directory writable (and not full), or set "
                                    "plugins.audit_log to a file that is. The plugins run on; records are not "
                                    "kept until then")
                    log.error("plugins: %s", self.problem)
                return entry
            if self.problem is not None:
                log.warning("plugins: %s: writing the audit log again (%d records were not written)",
                            self.path, self.unwritten)
                self.problem = None
            self._prev = hashlib.sha256(line).hexdigest()
            return entry

    def _append(self, data: bytes) -> None:
        """data at the end of the file, whole or not at all."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            size = os.fstat(fd).st_size
            try:
                if os.write(fd, data) != len(data):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            except OSError:
                try:
                    os.ftruncate(fd, size)  # no half line: the chain stays whole
                except OSError:
                    pass
                raise
        finally:
            os.close(fd)

    def health(self) -> dict[str, Any]:
        return {"path": str(self.path), "problem": self.problem, "unwritten": self.unwritten}


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
