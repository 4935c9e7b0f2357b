"""The state store: what users set at run time, and QoS >= 1 messages waiting for the broker.

A user told "ok" must find the change after a crash, a restart or a broker outage, so every change
is committed here before it is answered or applied; MQTT's retained state is a mirror for others,
never the source of truth. One SQLite file (`state.db` in `bridge.state_dir`, WAL, 0600):
the standard library's sqlite3 gives atomic, crash-safe commits that hand-written JSON files
(rename dances, partial writes on a full disk) do not.

A store that cannot be written (read-only directory, full disk, a file that is not a database)
never stops the bridge: it is opened read-only or empty, `problem` says what is wrong and what to
do, and each write raises StoreError naming the file, so the feature refuses that one change.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple

import orjson

log = logging.getLogger("bridge.store")

FILE_NAME = "state.db"
SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS settings (
    scope TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, updated REAL NOT NULL,
    PRIMARY KEY (scope, key));
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, payload BLOB NOT NULL,
    qos INTEGER NOT NULL, retain INTEGER NOT NULL, queued REAL NOT NULL);
"""


class StoreError(RuntimeError):
    """A change that could not be committed: nothing was changed."""


class InUse(OSError):
    """Another process holds the state directory."""


def lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


class Queued(NamedTuple):
    """A QoS >= 1 message kept until the broker took it."""

    row: int
    topic: str
    payload: bytes
    qos: int
    retain: bool


def _what_to_do(exc: BaseException) -> str:
    text = str(exc).lower()
    code = getattr(exc, "errno", None) or getattr(exc, "sqlite_errorcode", None)
    if "full" in text or code in (errno.ENOSPC, errno.EDQUOT, sqlite3.SQLITE_FULL):
        return "the disk is full: free space there"
    if "readonly" in text or "read-only" in text or code in (errno.EROFS, errno.EACCES, errno.EPERM,
                                                              sqlite3.SQLITE_READONLY):
        return "it is read-only: make the directory writable by the bridge's user"
    if "not a database" in text or "malformed" in text:
        return "it is damaged: move it aside (the bridge starts empty) or restore a backup (docs/state.md)"
    return text


def _value(scope: str, key: Any, raw: Any) -> Any:
    """A stored value; one that is not JSON (an edited or restored file) is skipped and said."""
    try:
        return orjson.loads(raw)
    except (orjson.JSONDecodeError, TypeError):
        log.warning("state store: ignored %s/%s: not a JSON value", scope, str(key)[:80])
        return None


class StateStore:
    """One SQLite database; safe to call from any thread (one connection behind a lock)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problem: str | None = None  # why changes cannot be stored, for health and errors
        self.writes = 0
        self.failed_writes = 0
        self.last_error: str | None = None  # the newest write that failed, for health
        self.complete = True  # False: what was stored could not all be read (fail closed where it matters)
        self._lock = threading.Lock()
        self._lock_fd: int | None = None
        self._db = self._open()

    @classmethod
    def in_dir(cls, state_dir: Path) -> "StateStore":
        return cls(state_dir / FILE_NAME)

    @classmethod
    def in_memory(cls) -> "StateStore":
        """A store that forgets at exit (tests, tools that keep nothing)."""
        return cls(Path(":memory:"))

    # ------------------------------------------------------------ opening

    def _open(self) -> sqlite3.Connection:
        if str(self.path) == ":memory:":
            return self._prepare(sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None))
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if self.path.parent.stat().st_mode & 0o077:  # never changed here: it may be a shared directory
                log.warning("state directory %s is open to other users (mode %o): it holds secrets (OTA PSKs, "
                            "HomeKit keys); chmod 700 it", self.path.parent, self.path.parent.stat().st_mode & 0o777)
            self._hold_lock()
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)  # SQLite gives -wal/-shm the same mode
            os.close(fd)
            if self.path.stat().st_mode & 0o077:
                os.chmod(self.path, 0o600)
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=5.0)
            return self._prepare(db)
        except InUse as exc:
            self.problem = f"{self.path}: {exc}; settings changed now are refused"
            log.error("state store %s", self.problem)
            return self._read_only()
        except (OSError, sqlite3.Error) as exc:
            self.problem = f"{self.path}: cannot be written ({_what_to_do(exc)}); settings changed now are refused"
            log.error("state store %s", self.problem)
            return self._read_only()

    def _hold_lock(self) -> None:
        """One bridge per state directory: a second would undo the first's changes (and restore
        must not replace the file under a running bridge). Held until close()."""
        fd = os.open(lock_path(self.path), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise InUse(f"another ruview-bridge uses this state directory ({self.path.parent}); give each "
                        "bridge its own bridge.state_dir") from None
        self._lock_fd = fd

    def _prepare(self, db: sqlite3.Connection) -> sqlite3.Connection:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")  # "ok" means on disk, power cut or not
        db.executescript(SCHEMA)
        found = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if found is None:
            db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        elif int(found[0]) > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"written by a newer ruview-bridge (schema {found[0]})")
        return db

    def _read_only(self) -> sqlite3.Connection:
        """What was stored, read-only (the -wal file's commits included) if it can be read at all;
        otherwise an empty store, and `complete` False: a reader that must fail closed (privacy
        classes) then knows it may be missing what was set."""
        if self.path.is_file():
            for uri in (f"file:{self.path}?mode=ro", f"file:{self.path}?mode=ro&immutable=1"):
                try:
                    db = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
                    db.execute("SELECT count(*) FROM settings").fetchone()
                except sqlite3.Error:
                    continue
                # immutable=1 skips the -wal file: commits since the last checkpoint are not seen
                self.complete = "immutable" not in uri or not self.path.with_name(self.path.name + "-wal").exists()
                return db
            self.complete = False
        db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        db.executescript(SCHEMA)
        return db

    def close(self) -> None:
        with self._lock:
            self._db.close()
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # releases the flock
                self._lock_fd = None

    # ------------------------------------------------------------ writing

    def _write(self, statements: Iterable[tuple[str, tuple[Any, ...]]], what: str = "the change was not stored"
               ) -> list[int]:
        """Run statements as one transaction, committed or not at all; their rows' ids (inserts).
        Raises StoreError (said once per cause) when the disk or file refuses."""
        if self.problem is not None:
            raise self._failed(self.problem)
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    rows = [self._db.execute(sql, args).lastrowid or 0 for sql, args in statements]
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:  # SQLite rolls back itself on some errors (a full disk)
                        self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise self._failed(f"{self.path}: {what} ({_what_to_do(exc)})") from None
            self.writes += 1
            self.last_error = None
        return rows

    def _failed(self, why: str) -> StoreError:
        self.failed_writes += 1
        if why != self.last_error:
            log.error("state store: %s", why)  # once per distinct cause, not once per refused change
        self.last_error = why
        return StoreError(why)

    def health(self) -> dict[str, Any]:
        return {"file": str(self.path), "writable": self.problem is None, "problem": self.problem,
                "writes": self.writes, "failed_writes": self.failed_writes, "last_error": self.last_error}

    # ------------------------------------------------------------ settings

    def scope(self, name: str) -> "StoreScope":
        return StoreScope(self, name)

    def _get(self, scope: str, key: str) -> Any:
        with self._lock:
            row = self._db.execute("SELECT value FROM settings WHERE scope=? AND key=?", (scope, key)).fetchone()
        return None if row is None else _value(scope, key, row[0])

    def _items(self, scope: str) -> dict[str, Any]:
        with self._lock:
            rows = self._db.execute("SELECT key, value FROM settings WHERE scope=? ORDER BY key", (scope,)).fetchall()
        found = {key: _value(scope, key, value) for key, value in rows if isinstance(key, str)}
        return {key: value for key, value in found.items() if value is not None}

    def _put(self, scope: str, changes: dict[str, Any], deletes: Iterable[str] = ()) -> None:
        now = time.time()
        self._write([("INSERT OR REPLACE INTO settings VALUES (?, ?, ?, ?)", (scope, k, orjson.dumps(v), now))
                     for k, v in changes.items()] +
                    [("DELETE FROM settings WHERE scope=? AND key=?", (scope, k)) for k in deletes])

    # ------------------------------------------------------------ outbox

    def outbox_add(self, messages: list[tuple[str, bytes, int, bool]]) -> list[int]:
        """Keep messages until the broker has them; their rows, in order. Raises StoreError."""
        now = time.time()
        return self._write([("INSERT INTO outbox (topic, payload, qos, retain, queued) VALUES (?, ?, ?, ?, ?)",
                             (t, p, q, int(r), now)) for t, p, q, r in messages], "messages not kept")

    def outbox_remove(self, rows: Iterable[int]) -> None:
        self._write([("DELETE FROM outbox WHERE id=?", (row,)) for row in rows])

    def outbox_pending(self) -> list[Queued]:
        with self._lock:
            found = self._db.execute("SELECT id, topic, payload, qos, retain FROM outbox ORDER BY id").fetchall()
        return [Queued(row, topic, bytes(payload), qos, bool(retain)) for row, topic, payload, qos, retain in found]


class StoreScope:
    """One feature's corner of the store: JSON values under text keys."""

    def __init__(self, store: StateStore, name: str) -> None:
        self.store, self.name = store, name

    def get(self, key: str, default: Any = None) -> Any:
        value = self.store._get(self.name, key)
        return default if value is None else value

    def items(self) -> dict[str, Any]:
        return self.store._items(self.name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.items())

    def put(self, key: str, value: Any) -> None:
        """Commit one value; returns once it is on disk, raises StoreError (nothing changed) if not."""
        self.store._put(self.name, {key: value})

    def put_many(self, changes: dict[str, Any], deletes: Iterable[str] = ()) -> None:
        """Several values and deletions, committed together or not at all."""
        self.store._put(self.name, changes, deletes)

    def delete(self, key: str) -> None:
        self.store._put(self.name, {}, [key])

    @property
    def writable(self) -> bool:
        return self.store.problem is None
