"""`ruview-node monitor` on a pty: log lines by level, frames decoded inline, replug survived."""

from __future__ import annotations

import io
import json
import os
import threading
import time
import tty

from bridge.nodes.codec import FeatureState, encode_feature_state
from firmware_tools.monitor import monitor
from firmware_tools.provision import open_console

FRAME = encode_feature_state(FeatureState(7, 2, 42, 1234567, 0.25, 0.75, 14.5, 0.9, 0.0, 0.0,
                                          0.0, 0.0, 0.0, 3, -61))
STREAM = (b"I (1234) adaptive_ctrl: medium tick: state=6 yield=20pps\r\n" + FRAME
          + b"W (1300) wifi: beacon timeout\r\n\x1b[0;31mE (1400) csi: queue full\x1b[0m\r\n")


def _pty_with(data: bytes, delay: float = 0.3):
    master, slave = os.openpty()
    tty.setraw(slave)

    def feed():
        time.sleep(delay)
        os.write(master, data)
    threading.Thread(target=feed, daemon=True).start()
    return master, slave, os.ttyname(slave)


def _run(path: str, **kw) -> list[str]:
    out = io.StringIO()
    monitor(lambda: open_console(path), out, duration=1.2, say=lambda _: None, **kw)
    return out.getvalue().splitlines()


def test_log_lines_are_coloured_by_level_and_frames_decoded_inline():
    master, slave, path = _pty_with(STREAM)
    try:
        lines = _run(path, colour=True, as_json=False, frames_only=False)
    finally:
        os.close(master), os.close(slave)
    assert lines[0] == "\x1b[32mI (1234) adaptive_ctrl: medium tick: state=6 yield=20pps\x1b[0m"
    assert lines[1].startswith("\x1b[35m[feature_state] node_id=7 mode=2 seq=42")
    assert "presence_score=0.75" in lines[1] and "rssi=-61" in lines[1]
    assert lines[2].startswith("\x1b[33mW (1300)") and lines[3].startswith("\x1b[31mE (1400) csi: queue full")


def test_json_and_frames_only():
    master, slave, path = _pty_with(STREAM)
    try:
        records = [json.loads(line) for line in _run(path, colour=False, as_json=True, frames_only=False)]
    finally:
        os.close(master), os.close(slave)
    assert [r["type"] for r in records] == ["log", "frame", "log", "log"]
    assert records[0] == {"type": "log", "level": "I", "uptime_ms": 1234, "tag": "adaptive_ctrl",
                          "message": "medium tick: state=6 yield=20pps"}
    assert records[1]["kind"] == "feature_state" and records[1]["respiration_bpm"] == 14.5
    assert records[3]["level"] == "E" and records[3]["message"] == "queue full"

    master, slave, path = _pty_with(STREAM * 2)
    try:
        lines = _run(path, colour=False, as_json=False, frames_only=True)
    finally:
        os.close(master), os.close(slave)
    assert len(lines) == 2 and all(line.startswith("[feature_state] node_id=7") for line in lines)


def test_monitor_waits_for_a_port_that_comes_back():
    attempts = []
    master, slave, path = _pty_with(STREAM, delay=1.5)   # written once the port is back

    def flaky_open():
        attempts.append(time.monotonic())
        if len(attempts) < 3:
            raise OSError("No such file or directory: '/dev/ttyACM0'")
        return open_console(path)

    out, notes = io.StringIO(), []
    try:
        monitor(flaky_open, out, colour=False, as_json=False, frames_only=True, duration=2.5, say=notes.append)
    finally:
        os.close(master), os.close(slave)
    assert len(attempts) == 3 and any("waiting for the port" in n for n in notes)
    assert out.getvalue().startswith("[feature_state] node_id=7")
