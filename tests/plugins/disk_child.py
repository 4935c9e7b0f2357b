"""The plugins on a disk in trouble, run by tests/plugins/test_disk.py in a process of its own.

The test makes the trouble real where it can: as root, this process runs in a mount namespace of
its own (`unshare -m`) with the plugins' directory a read-only bind mount or a 64 KiB tmpfs; as
another user, read-only is a 0500 directory. A full disk for a user who cannot mount is simulated
at the OS boundary (`--simulate-full`: os.write to a file under the directory fails with ENOSPC).
It starts a bridge in process with the plugins extension and one signed plugin, compiles a module
large enough to fill the disk, and prints what the test asserts on as one JSON line.

    python -m tests.plugins.disk_child <dir> <bridge state dir> <plugins dir> <publisher key> [--simulate-full]
"""

from __future__ import annotations

import errno
import json
import logging
import os
import sys
import time
from pathlib import Path


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def simulate_full(directory: Path) -> None:
    """os.write into a file under `directory` fails as on a full disk (after the first 4 KiB)."""
    real = os.write
    room = {"left": 4096}

    def write(fd: int, data) -> int:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            target = ""
        if target.startswith(str(directory)):
            if room["left"] <= 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            data = bytes(data)[:room["left"]]
            room["left"] -= len(data)
        return real(fd, data)

    os.write = write  # type: ignore[assignment]


def fill(directory: Path) -> None:
    """Whatever room is left on the directory's disk, taken (nothing, when it is read-only)."""
    try:
        fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    except OSError:
        return
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)


def big_module() -> bytes:
    """A module whose compiled code is well over 64 KiB."""
    import wasmtime
    body = "".join(f'(func (export "f{i}") (param i32) (result i32) (i32.mul (local.get 0) (i32.const {i + 3})))'
                   for i in range(3000))
    return wasmtime.wat2wasm(f'(module (memory (export "memory") 1) {body})')


def main() -> int:
    directory, state, plugins, public = (Path(a) for a in sys.argv[1:5])
    if "--simulate-full" in sys.argv:
        simulate_full(directory)
    records = Records()
    logging.getLogger().addHandler(records)
    logging.getLogger().setLevel(logging.INFO)
    from bridge.plugins import audit
    from bridge.plugins.extension import PluginsExtension
    from bridge.plugins.trust import digest
    from tests.harness import in_process
    bridge, mqtt = in_process({
        "bridge": {"state_dir": str(state), "health_interval": 60},
        "plugins": {"enabled": True, "dirs": [str(plugins)], "trusted_keys": [str(public)], "watch": False,
                    "cache_dir": str(directory / "cache"), "audit_log": str(directory / "audit.jsonl")}},
        [PluginsExtension()])
    try:
        extension = bridge.extension("plugins")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not all(p.state == "running" for p in extension.plugins.values()):
            time.sleep(0.01)
        running = {d: p.state for d, p in extension.plugins.items()}
        module = big_module()
        extension.runtime.compile(module, digest(module))  # into the cache, which cannot take it
        fill(directory)
        for domain in list(extension.plugins):  # an audit record ("unload") on the full disk
            extension.unload(domain, "the test unloaded it")
        # one larger than a page: on a tmpfs the last page of the file may still hold a short one,
        # so this one is written in part, then cut back
        extension.audit_log.record("steady", "deny", permission="state:write", subject="s" * 6000)
        bridge.states.set("sensor.still_working", "yes")
        health = bridge.health()
        files = sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))
        verified = audit.verify(directory / "audit.jsonl") if (directory / "audit.jsonl").exists() else None
        out = {
            "plugins": running,
            "feature": bridge.extension_state["plugins"]["state"],
            "disk": health.get("plugins_disk"),
            "state_published": any(m.topic.endswith("/state/sensor.still_working") for m in mqtt.sent),
            "audit_on_mqtt": [json.loads(m.payload)["action"] for m in mqtt.sent if m.topic.endswith("/audit")],
            "files": files,
            "verified": verified,
            "errors": [r.getMessage() for r in records.records if r.levelno >= logging.ERROR],
            "warnings": [r.getMessage() for r in records.records if r.levelno == logging.WARNING],
            "tracebacks": sum(1 for r in records.records if r.exc_info),
        }
    finally:
        bridge.stop()
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
