"""A full or read-only state directory is loud and local (issue 33): the change that cannot be
kept is refused with the file and what to do, nothing else stops, no partial file is left, and
health shows it. Real filesystems: a 512 KiB tmpfs (filled up, then freed) and a read-only
mount, each in a private mount namespace around a real bridge process (root, as CI runs)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from bridge.core.store import StateStore
from bridge.nodes import codec
from bridge.nodes.codec import FeatureState
from tests.brokers import free_port_udp
from tests.mqtt_probe import Probe
from tests.polling import wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("nsenter"),
                                reason="needs root, unshare and nsenter for a tmpfs in a private mount namespace "
                                       "(CI runs as root)")


def _frame(node_id: int, seq: int) -> bytes:
    return codec.encode_feature_state(FeatureState(
        node_id, 0, seq % 65536, seq * 10_000, 0.1, 1.0, 14.0, 0.9, 62.0, 0.9, 0.0, 0.0, 0.9, 0x07, -50))


class Mounted:
    """A bridge process whose state directory is a small tmpfs of its own mount namespace."""

    def __init__(self, broker, tmp_path: Path, *, read_only: bool = False, bind_ro: bool = False) -> None:
        self.state = tmp_path / "state"
        self.state.mkdir(exist_ok=True)
        self.udp = free_port_udp()
        config = tmp_path / "config.yaml"
        config.write_text(f"mqtt:\n  url: {broker.url}\nbridge:\n  health_interval: 1\n  state_dir: {self.state}\n"
                          f"nodes:\n  udp:\n    bind: 127.0.0.1\n    port: {self.udp}\n")
        remount = f"mount -o remount,ro {self.state} && " if read_only else ""
        mount = (f"mount --bind {self.state} {self.state} && mount -o remount,bind,ro {self.state}" if bind_ro
                 else f"mount -t tmpfs -o size=512k,mode=0700 tmpfs {self.state}")
        script = (f"mount --make-rprivate / && {mount} && "
                  f"{remount}exec {sys.executable} -m bridge run -c {config} --no-status")
        self.proc = subprocess.Popen(["unshare", "-m", "sh", "-c", script], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, env=os.environ.copy())
        self.stop = threading.Event()
        self.sender = threading.Thread(target=self._traffic, daemon=True)
        self.sender.start()

    def _traffic(self) -> None:
        seq = 1
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            while not self.stop.wait(0.02):
                sock.sendto(_frame(7, seq), ("127.0.0.1", self.udp))
                seq += 1

    def inside(self, command: str) -> subprocess.CompletedProcess:
        """A shell command in the bridge's mount namespace (where the tmpfs is)."""
        return subprocess.run(["nsenter", "-t", str(self.proc.pid), "-m", "sh", "-c", command],
                              capture_output=True, text=True, timeout=30)

    def close(self) -> str:
        self.stop.set()
        self.sender.join(5)
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=20)
        return out


def _request(probe: Probe, verb: str, body: dict, n: int) -> dict:
    probe.publish(f"ruview/bridge/request/{verb}", {**body, "transaction": n})
    return probe.wait_topic(f"ruview/bridge/response/{verb}", 10,
                            match=lambda m: m.json().get("transaction") == n).json()


def _health(probe: Probe) -> dict:
    probe.clear()
    return probe.wait_topic("ruview/bridge/health", 10).json()


@pytest.mark.slow
def test_a_full_state_directory_refuses_changes_loudly_and_the_bridge_runs_on(mosquitto, tmp_path):
    bridge = Mounted(mosquitto, tmp_path)
    probe = Probe(mosquitto.port)
    try:
        probe.subscribe("ruview/bridge/response/#", "ruview/bridge/health", "ruview/node/+")
        assert wait_until(lambda: any(m.json().get("nodes", {}).get("count") == 1
                                      for m in probe.on("ruview/bridge/health")), 20), "node 7 heard"
        assert _request(probe, "node/rename", {"from": "node_7", "to": "hall"}, 1)["status"] == "ok"
        bridge.inside(f"dd if=/dev/zero of={bridge.state}/filler bs=4k 2>/dev/null; sync")  # the disk is full
        refused = _request(probe, "node/rename", {"from": "hall", "to": "lobby"}, 2)
        assert refused["status"] == "error" and "disk is full" in refused["error"] and "state.db" in refused["error"]
        health = _health(probe)
        assert health["store"]["failed_writes"] >= 1 and "disk is full" in health["store"]["last_error"]
        assert health["extensions"]["nodes"]["state"] == "running" and health["mqtt"]["connected"]
        assert health["nodes"]["frames_per_second"] > 0, "frames still flow"
        bridge.inside(f"rm {bridge.state}/filler")
        assert _request(probe, "node/rename", {"from": "hall", "to": "lobby"}, 3)["status"] == "ok"
        left = bridge.inside(f"ls -a {bridge.state}").stdout.split()
        assert not [name for name in left if name.endswith((".tmp", ".partial", ".restoring"))], left
    finally:
        probe.close()
        out = bridge.close()
    said = [line for line in out.splitlines() if "disk is full" in line]
    assert len(said) == 1 and "ERROR" in said[0], out[-3000:]  # once, not once per refused change
    assert "Traceback" not in out, out[-3000:]


@pytest.mark.slow
def test_a_read_only_state_directory_keeps_the_bridge_running_and_refuses_changes(mosquitto, tmp_path):
    bridge = Mounted(mosquitto, tmp_path, read_only=True)
    probe = Probe(mosquitto.port)
    try:
        probe.subscribe("ruview/bridge/response/#", "ruview/bridge/health")
        assert wait_until(lambda: any(m.json().get("nodes", {}).get("count") == 1
                                      for m in probe.on("ruview/bridge/health")), 20), "node 7 heard"
        refused = _request(probe, "node/privacy", {"node": 7, "class": "restricted"}, 1)
        assert refused["status"] == "error" and "read-only" in refused["error"], refused
        health = _health(probe)
        assert health["store"]["writable"] is False and "read-only" in health["store"]["problem"]
        assert health["extensions"]["nodes"]["state"] == "running"
    finally:
        probe.close()
        out = bridge.close()
    assert "Traceback" not in out, out[-3000:]


@pytest.mark.slow
def test_a_demotion_survives_kill_9_and_a_start_on_a_read_only_state_directory(mosquitto, tmp_path):
    """The demotion's commit may still be in state.db-wal when the bridge dies; a start that can only
    read the directory must see it (or, if it cannot, fail closed), never publish the vitals."""
    state = tmp_path / "state"
    StateStore.in_dir(state).close()  # an earlier run's store: its tables are in state.db itself
    udp = free_port_udp()
    config = tmp_path / "first.yaml"
    config.write_text(f"mqtt:\n  url: {mosquitto.url}\nbridge:\n  health_interval: 1\n  state_dir: {state}\n"
                      f"nodes:\n  udp:\n    bind: 127.0.0.1\n    port: {udp}\n")
    first = subprocess.Popen([sys.executable, "-m", "bridge", "run", "-c", str(config), "--no-status"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    probe = Probe(mosquitto.port)
    try:
        probe.subscribe("ruview/bridge/response/#", "ruview/bridge/health")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            assert wait_until(lambda: sock.sendto(_frame(7, 1), ("127.0.0.1", udp)) and any(
                m.json().get("nodes", {}).get("count") == 1 for m in probe.on("ruview/bridge/health")), 20)
        assert _request(probe, "node/privacy", {"node": 7, "class": "restricted"}, 1)["status"] == "ok"
    finally:
        probe.close()
        first.kill()
        first.wait(10)
    assert (state / "state.db-wal").exists(), "the commit is in the write-ahead log, not yet in state.db"
    probe = Probe(mosquitto.port)
    probe.publish("ruview/node/node_7", b"", retain=True)  # only the store may say what node 7 is
    probe.subscribe("ruview/node/+", "ruview/bridge/health")
    bridge = Mounted(mosquitto, tmp_path, bind_ro=True)
    try:
        assert wait_until(lambda: any(m.payload for m in probe.on("ruview/node/node_7")), 20), "node 7 published"
        # this run's health (the first run's may be retained on the topic) says it cannot write
        assert probe.wait_topic("ruview/bridge/health", 10, match=lambda m: bool(m.payload) and
                                m.json().get("store", {}).get("writable") is False), "read-only in this run"
        published = [m.json() for m in probe.on("ruview/node/node_7") if m.payload]
        assert all(p["privacy_class"] == "restricted" and "breathing_bpm" not in p for p in published), published
    finally:
        probe.close()
        out = bridge.close()
    assert "Traceback" not in out, out[-3000:]
