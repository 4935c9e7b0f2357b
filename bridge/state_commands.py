"""`ruview-bridge state show | backup | restore`: the state store from the command line (docs/state.md).

A backup is SQLite's online backup of `state.db`: consistent even while the bridge runs and
commits. A restore replaces the store with a backup's content, only while no bridge holds the
state directory, after checking the file is a ruview-bridge state store (what a restore does:
the nodes' names, rooms, classes, thresholds and baselines, plugin choices and the log level
come back as they were when the backup was made; messages waiting for the broker are not taken).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Any

from bridge.core.store import SCHEMA, FILE_NAME, SCHEMA_VERSION, lock_path


def _store_path(config: Any) -> Path:
    return config.bridge.state_path / FILE_NAME


def _fail(text: str) -> int:
    print(f"ruview-bridge: {text}", file=sys.stderr)
    return 1


def _schema_of(path: Path) -> int:
    """The schema version of a state store file; ValueError when it is not one."""
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            row = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            db.execute("SELECT scope, key, value FROM settings LIMIT 1").fetchall()
    except sqlite3.Error as exc:
        raise ValueError(f"{path} is not a ruview-bridge state store ({exc})") from None
    if row is None or not str(row[0]).isdigit():
        raise ValueError(f"{path} is not a ruview-bridge state store (no schema)")
    return int(row[0])


MAX_ROWS = 100_000  # a state store holds a few hundred settings


def _copy_settings(backup: Path, into: Path) -> None:
    """A fresh store (our schema, nothing else: no trigger or view a backup file may carry) with the
    backup's settings, each a JSON value; messages of another time are not taken."""
    with sqlite3.connect(f"file:{backup}?mode=ro", uri=True) as source:
        rows = source.execute(f"SELECT scope, key, value, updated FROM settings LIMIT {MAX_ROWS + 1}").fetchall()
    if len(rows) > MAX_ROWS:
        raise ValueError(f"{backup} holds over {MAX_ROWS:,} settings: not a state store this bridge wrote")
    kept = []
    for scope, key, value, updated in rows:
        if not (isinstance(scope, str) and isinstance(key, str) and isinstance(value, (bytes, str))
                and isinstance(updated, (int, float))):
            continue
        try:
            json.loads(value)
        except ValueError:
            print(f"ruview-bridge: skipped {scope}/{key[:80]}: not a JSON value", file=sys.stderr)
            continue
        kept.append((scope, key, value if isinstance(value, bytes) else value.encode(), float(updated)))
    with sqlite3.connect(into) as copy:
        copy.executescript(SCHEMA)
        copy.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        copy.executemany("INSERT OR REPLACE INTO settings VALUES (?, ?, ?, ?)", kept)


def cmd_show(args: argparse.Namespace, config: Any) -> int:
    path = _store_path(config)
    if not path.exists():
        return _fail(f"{path}: no state store yet (the bridge makes it on its first start)")
    try:
        _schema_of(path)
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            settings = db.execute("SELECT scope, key, value FROM settings ORDER BY scope, key").fetchall()
            waiting = db.execute("SELECT count(*) FROM outbox").fetchone()[0]
    except (ValueError, sqlite3.Error) as exc:
        return _fail(str(exc))
    shown: dict[str, dict[str, Any]] = {}
    for scope, key, value in settings:
        try:
            shown.setdefault(str(scope), {})[str(key)] = json.loads(value)
        except (ValueError, TypeError):
            shown.setdefault(str(scope), {})[str(key)] = "(not a JSON value: ignored by the bridge)"
    print(json.dumps({"file": str(path), "settings": shown, "messages_waiting_for_the_broker": waiting},
                     indent=2, ensure_ascii=False))
    return 0


def cmd_backup(args: argparse.Namespace, config: Any) -> int:
    path, target = _store_path(config), Path(args.file)
    if not path.exists():
        return _fail(f"{path}: no state store yet (the bridge makes it on its first start)")
    if target.exists() and not args.force:
        return _fail(f"{target} exists; give another file or --force")
    partial: Path | None = None
    try:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent or ".")
        os.close(fd)  # a new file of ours, 0600: never one planted there (a symlink, a wider mode)
        partial = Path(name)
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as source, sqlite3.connect(partial) as copy:
            source.backup(copy)
        os.replace(partial, target)
    except (OSError, sqlite3.Error) as exc:
        if partial is not None:
            partial.unlink(missing_ok=True)
        return _fail(f"backup of {path} to {target} failed: {getattr(exc, 'strerror', None) or exc}")
    print(f"{path} backed up to {target}", file=sys.stderr)
    return 0


def cmd_restore(args: argparse.Namespace, config: Any) -> int:
    path, backup = _store_path(config), Path(args.file)
    try:
        schema = _schema_of(backup)
    except ValueError as exc:
        return _fail(str(exc))
    if schema > SCHEMA_VERSION:
        return _fail(f"{backup} was written by a newer ruview-bridge (schema {schema}); upgrade first")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock = os.open(lock_path(path), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return _fail(f"a bridge is running on {path.parent}: stop it, then restore")
        partial: Path | None = None
        try:
            fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".restoring", dir=path.parent)
            os.close(fd)
            partial = Path(name)
            _copy_settings(backup, partial)
            for stale in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
                stale.unlink(missing_ok=True)
            os.replace(partial, path)
        except (OSError, sqlite3.Error, ValueError) as exc:
            if partial is not None:
                partial.unlink(missing_ok=True)
            return _fail(f"restore of {backup} into {path} failed, nothing changed: "
                         f"{getattr(exc, 'strerror', None) or exc}")
    finally:
        os.close(lock)
    print(f"{path} restored from {backup}; start the bridge", file=sys.stderr)
    return 0


def add_parsers(sub: Any) -> None:
    state = sub.add_parser("state", help="show, back up or restore what the bridge keeps (docs/state.md)")
    cmds = state.add_subparsers(dest="state_command", metavar="ACTION", required=True)
    show = cmds.add_parser("show", help="print what the state store holds, as JSON")
    show.set_defaults(func=cmd_show, needs_config=True)
    backup = cmds.add_parser("backup", help="copy the state store to FILE (safe while the bridge runs)")
    backup.add_argument("file")
    backup.add_argument("--force", action="store_true", help="replace FILE if it exists")
    backup.set_defaults(func=cmd_backup, needs_config=True)
    restore = cmds.add_parser("restore", help="replace the state store with a backup (the bridge stopped)")
    restore.add_argument("file")
    restore.set_defaults(func=cmd_restore, needs_config=True)
    for parser in (show, backup, restore):
        parser.add_argument("-c", "--config", help="configuration file (YAML) for bridge.state_dir")
