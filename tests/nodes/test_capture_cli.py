"""capture / replay / import-recording as a user runs them, against real processes."""

from __future__ import annotations

import signal
import subprocess
import sys

from bridge.nodes.capture import read_capture
from firmware_tools.simulate import generate, make_nodes, send_udp
from tests.brokers import free_port
from tests.netstat import udp_bound, udp_unread_bytes
from tests.polling import wait_until
from tests.mqtt_probe import Probe
from tests.nodes.test_recording import RECORDING, load_recording

CLI = [sys.executable, "-m", "bridge"]


def test_import_then_replay_into_a_running_bridge(mosquitto, tmp_path):
    load_recording()  # fails clearly if the shared data is missing
    capture = tmp_path / "rec.jsonl"
    out = subprocess.run([*CLI, "import-recording", str(RECORDING), str(capture)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "5783 datagrams" in out.stderr
    port = free_port()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"mqtt:\n  url: {mosquitto.url}\nnodes:\n  udp:\n    bind: 127.0.0.1\n"
                   f"    port: {port}\n")
    bridge = subprocess.Popen([*CLI, "run", "-c", str(cfg)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        probe = Probe(mosquitto.port).subscribe("ruview/#")
        probe.wait_topic("ruview/bridge/state", 15, match=lambda m: m.json()["state"] == "online")
        replay = subprocess.run([*CLI, "replay", str(capture), "-c", str(cfg), "--speed", "20"],
                                capture_output=True, text=True, timeout=60)
        assert replay.returncode == 0 and "replayed 5783 datagrams" in replay.stderr
        probe.wait_topic("ruview/node/node_1", 10)
        probe.wait_topic("ruview/node/node_2", 10)
        raw = [d.data[20:32] for d in read_capture(capture) if d.data[:4] == b"\x01\x00\x11\xc5"]
        blob = b"".join(m.payload for m in probe.messages)
        assert not any(chunk in blob for chunk in raw if len(set(chunk)) >= 6)
        probe.close()
    finally:
        bridge.send_signal(signal.SIGINT)
        bridge.wait(15)


def test_capture_records_what_arrives(tmp_path):
    port = free_port()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"nodes:\n  udp:\n    bind: 127.0.0.1\n    port: {port}\n")
    path = tmp_path / "cap.jsonl"
    proc = subprocess.Popen([*CLI, "capture", str(path), "-c", str(cfg), "--duration", "30"],
                            stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: udp_bound(port), 15), "capture never listened"
        stream = list(generate(make_nodes(2, "visit", 4), 4))
        send_udp(iter(stream), "127.0.0.1", port, speed=0)
        assert wait_until(lambda: udp_unread_bytes(port) == 0, 10), "capture did not read it all"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        proc.kill()
    got = list(read_capture(path))
    assert [d.data for d in got] == [data for _, data in stream]
    assert all(d.src.startswith("127.0.0.1:") for d in got)
    assert all(a.t <= b.t for a, b in zip(got, got[1:]))
