"""The plugins on a full or read-only disk (issue 33, finding 4): one clear error naming the file
and what to do, the plugins run on, health says it, and no half-written file is left behind.

Each case runs the bridge in a process of its own (tests/plugins/disk_child.py), so that the disk
trouble is real: as root, in a mount namespace of its own with the plugins' directory a read-only
bind mount or a 64 KiB tmpfs; otherwise read-only is a 0500 directory and a full disk is simulated
at the OS boundary (os.write fails with ENOSPC)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.plugins import wat
from tests.plugins.helpers import Publisher

ROOT = Path(__file__).resolve().parents[2]


def can_mount() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs tmpfs /mnt"],
                          capture_output=True, timeout=10).returncode == 0


MOUNT = can_mount()


def on_troubled_disk(tmp_path: Path, trouble: str) -> dict:
    publisher = Publisher(tmp_path)
    plugins = tmp_path / "plugins"
    wat.plugin(publisher, plugins, "steady", wat.module())
    directory, state = tmp_path / "disk", tmp_path / "state"
    directory.mkdir()
    child = [sys.executable, "-m", "tests.plugins.disk_child", str(directory), str(state), str(plugins),
             publisher.public]
    if MOUNT:
        setup = {"read-only": 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0"',
                 "full": 'mount -t tmpfs -o size=64k,mode=0700 tmpfs "$0"'}[trouble]
        command = ["unshare", "-m", "sh", "-c", f'{setup} && shift && exec "$@"', str(directory), "--", *child]
    elif trouble == "read-only":
        directory.chmod(0o500)
        command = child
    else:
        command = [*child, "--simulate-full"]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    directory.chmod(0o700)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_a_read_only_disk_is_one_clear_error_and_the_plugins_run_on(tmp_path):
    out = on_troubled_disk(tmp_path, "read-only")
    assert out["plugins"] == {"steady": "running"} and out["feature"] == "running", out
    assert out["state_published"], "the rest of the bridge goes on"
    audit = out["disk"]["audit_log"]
    assert audit["problem"] and str(tmp_path / "disk" / "audit.jsonl") in audit["problem"], audit
    assert "plugins.audit_log" in audit["problem"] and audit["unwritten"] >= 2, audit  # load and unload
    assert out["errors"] == [f"plugins: {audit['problem']}"], "said once, as one error"
    assert out["tracebacks"] == 0, out
    assert "load" in out["audit_on_mqtt"], "what goes to MQTT still goes"
    cache = out["disk"]["compile_cache"]
    assert cache["problem"] and "plugins.cache_dir" in cache["problem"], cache
    assert sum("compile cache" in w for w in out["warnings"]) == 1, out["warnings"]
    assert out["files"] == [], "nothing written, nothing half-written"


def test_a_full_disk_leaves_no_partial_files_and_the_audit_chain_whole(tmp_path):
    out = on_troubled_disk(tmp_path, "full")
    assert out["plugins"] == {"steady": "running"} and out["feature"] == "running", out
    assert not [f for f in out["files"] if f.endswith(".tmp")], out["files"]
    cache = out["disk"]["compile_cache"]
    assert cache["problem"] and cache["unwritten"] >= 1, cache
    audit = out["disk"]["audit_log"]
    assert audit["problem"] and audit["unwritten"] >= 1, audit  # the unload, on the full disk
    _, problem = out["verified"]
    assert problem is None, out["verified"]  # what was written is whole and chained (no half line)
    assert out["tracebacks"] == 0 and len(out["errors"]) == 1, out["errors"]
