"""`ruview-bridge state show | backup | restore` (docs/state.md), run as a user runs them."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

from bridge.nodes.extension import NodesExtension
from tests.brokers import free_port
from tests.harness import in_process

CLI = [sys.executable, "-m", "bridge"]


def _state(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, "state", *args], capture_output=True, text=True, cwd=cwd, timeout=30,
                          env=os.environ.copy())


def _bridge():
    bridge, _ = in_process({"nodes": {"udp": {"bind": "127.0.0.1", "port": free_port()}}}, [NodesExtension()])
    return bridge


def _register(bridge, node_id: int, name: str) -> None:
    assert bridge.api.handle("node/register", {"node_id": node_id, "name": name})["status"] == "ok"


def test_backup_while_running_restore_only_when_stopped_and_show(tmp_path):
    backup = tmp_path / "backup.db"
    bridge = _bridge()
    try:
        _register(bridge, 9, "attic")
        made = _state("backup", str(backup), cwd=tmp_path)
        assert made.returncode == 0 and stat.S_IMODE(backup.stat().st_mode) == 0o600, made.stderr
        busy = _state("restore", str(backup), cwd=tmp_path)
        assert busy.returncode == 1 and "a bridge is running" in busy.stderr
        _register(bridge, 10, "cellar")
    finally:
        bridge.stop()
    shown = json.loads(_state("show", cwd=tmp_path).stdout)
    assert shown["settings"]["nodes"]["node/10"]["name"] == "cellar"
    not_a_store = tmp_path / "notes.txt"
    not_a_store.write_text("hello")
    refused = _state("restore", str(not_a_store), cwd=tmp_path)
    assert refused.returncode == 1 and "is not a ruview-bridge state store" in refused.stderr
    assert "cellar" in _state("show", cwd=tmp_path).stdout, "a refused restore changes nothing"
    restored = _state("restore", str(backup), cwd=tmp_path)
    assert restored.returncode == 0, restored.stderr
    bridge = _bridge()
    try:
        nodes = bridge.extension("nodes").registry
        assert nodes.get(9) is not None and nodes.get(9).name == "attic"
        assert nodes.get(10) is None, "what was set after the backup is gone"
    finally:
        bridge.stop()


def test_a_restore_takes_only_settings_never_a_backups_triggers_views_or_bad_values(tmp_path):
    import sqlite3
    bridge = _bridge()
    try:
        _register(bridge, 9, "attic")
    finally:
        bridge.stop()
    hostile = tmp_path / "hostile.db"
    assert _state("backup", str(hostile), cwd=tmp_path).returncode == 0
    with sqlite3.connect(hostile) as db:
        db.execute("INSERT INTO settings VALUES ('bridge', 'log_level', x'ff00', 0)")
        db.execute("CREATE TRIGGER undo AFTER INSERT ON settings BEGIN DELETE FROM settings; END")
        db.execute("CREATE VIEW v AS SELECT 1")
        db.execute("INSERT INTO outbox (topic, payload, qos, retain, queued) VALUES "
                   "('homeassistant/lock/front/config', x'7b7d', 1, 1, 0)")
    restored = _state("restore", str(hostile), cwd=tmp_path)
    assert restored.returncode == 0 and "skipped bridge/log_level" in restored.stderr, restored.stderr
    shown = json.loads(_state("show", cwd=tmp_path).stdout)
    assert shown["messages_waiting_for_the_broker"] == 0
    with sqlite3.connect(shown["file"]) as db:
        kinds = db.execute("SELECT type, name FROM sqlite_master WHERE type IN ('trigger', 'view')").fetchall()
    assert kinds == [], kinds
    bridge = _bridge()
    try:
        _register(bridge, 10, "cellar")  # a trigger would have wiped the settings here
        nodes = bridge.extension("nodes").registry
        assert nodes.get(9).name == "attic"
    finally:
        bridge.stop()
