"""Every request answered "ok" survives kill -9 (issue 33): a bridge process under 100 Hz node
traffic is told something, killed with SIGKILL a random moment after the answer (0-50 ms), and
started again on the same state directory; the effect must be there. Retained MQTT state is
wiped between runs, so nothing but the state store can carry it."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from bridge.nodes import codec
from bridge.nodes.codec import EdgeVitals, FeatureState
from tests.brokers import free_port_udp
from tests.mqtt_probe import Probe
from tests.polling import wait_until

CLI = [sys.executable, "-m", "bridge"]
NODES = (3, 4, 5)


def _frames(node_id: int, seq: int) -> list[bytes]:
    return [codec.encode_feature_state(FeatureState(
        node_id, 0, seq % 65536, seq * 10_000, 0.1, 1.0, 14.0, 0.9, 62.0, 0.9, 0.0, 0.0, 0.9, 0x07, -50)),
        codec.encode_edge_vitals(EdgeVitals(node_id, 0b111, 15.0, 63.0, -50, 1, 0.2, 1.0, seq * 10))]


class Traffic:
    """100 frames/s per node, over real UDP, until stopped."""

    def __init__(self, port: int) -> None:
        self.port, self.stop = port, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        seq = 1
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            while not self.stop.wait(0.01):
                for node_id in NODES:
                    for data in _frames(node_id, seq):
                        sock.sendto(data, ("127.0.0.1", self.port))
                seq += 1

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)


class Bridge:
    """`ruview-bridge run` on a config file; kill -9 and start again."""

    def __init__(self, broker: Any, tmp_path: Path, udp: int) -> None:
        self.broker = broker
        self.config = tmp_path / "config.yaml"
        self.config.write_text(f"mqtt:\n  url: {broker.url}\nbridge:\n  health_interval: 1\n"
                               f"  state_dir: {tmp_path / 'state'}\n"
                               f"nodes:\n  offline_after: 5\n  presence:\n    calibration: 1\n    warmup: 600\n"
                               f"  udp:\n    bind: 127.0.0.1\n    port: {udp}\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([*CLI, "run", "-c", str(self.config), "--no-status"], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, env=os.environ.copy())

    def kill(self) -> str:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        out, _ = self.proc.communicate(timeout=10)
        return out


def _wipe_retained(port: int) -> None:
    """What the broker retained from the last run is gone: only the store may remember."""
    probe = Probe(port)
    try:
        probe.subscribe("ruview/#", "crash-test/marker")
        probe.publish("crash-test/marker", b"1")  # comes after every retained message of the subscription
        probe.wait_topic("crash-test/marker", 10)
        for topic in {m.topic for m in probe.messages if m.retain and m.payload}:
            probe.publish(topic, b"", retain=True)
    finally:
        probe.close()


def _nodes(probe: Probe) -> dict[int, dict]:
    found = [m for m in probe.on("ruview/bridge/nodes") if m.payload]
    return {n["node_id"]: n for n in found[-1].json()} if found else {}


def _request(probe: Probe, verb: str, body: dict, n: int) -> dict:
    probe.publish(f"ruview/bridge/request/{verb}", {**body, "transaction": n})
    return probe.wait_topic(f"ruview/bridge/response/{verb}", 10,
                            match=lambda m: m.json().get("transaction") == n).json()


def _node_state(probe: Probe, name: str) -> dict:
    found = [m for m in probe.on(f"ruview/node/{name}") if m.payload]
    return found[-1].json() if found else {}


# the requests, answered "ok", then what must hold after kill -9 and a restart
CASES: dict[str, tuple[list[tuple[str, dict]], Callable[[dict[int, dict], Probe], bool]]] = {
    "rename": ([("node/rename", {"from": "node_3", "to": "den"})],
               lambda nodes, p: nodes.get(3, {}).get("name") == "den"),
    "set": ([("node/set", {"node": 3, "room": "Den", "enter_ratio": 5})],
            lambda nodes, p: nodes.get(3, {}).get("room") == "Den"
            and _node_state(p, "node_3").get("thresholds", {}).get("enter_ratio") == 5.0),
    "privacy": ([("node/privacy", {"node": 5, "class": "restricted"})],
                lambda nodes, p: nodes.get(5, {}).get("privacy_class") == "restricted"
                and _node_state(p, "node_5") != {} and "breathing_bpm" not in _node_state(p, "node_5")),
    "register": ([("node/register", {"node_id": 12, "name": "garage", "room": "Garage"})],
                 lambda nodes, p: nodes.get(12, {}).get("name") == "garage" and nodes[12].get("room") == "Garage"),
    "remove": ([("node/rename", {"from": "node_4", "to": "porch"}), ("node/remove", {"node": "porch"})],
               lambda nodes, p: nodes.get(4, {}).get("name") == "node_4"),
    # the answer says calibration started; its baseline is kept once learned (and health counts the write)
    "calibrate": ([("node/calibrate", {"node": 3})],
                  lambda nodes, p: _node_state(p, "node_3").get("baseline") is not None),
    "log_level": ([("log_level", {"level": "warning"})],
                  lambda nodes, p: bool(p.on("ruview/bridge/info"))
                  and p.on("ruview/bridge/info")[-1].json().get("log_level") == "warning"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_an_ok_survives_kill_9_at_a_random_moment_under_traffic(case, mosquitto, tmp_path):
    steps, holds = CASES[case]
    udp = free_port_udp()
    traffic = Traffic(udp)
    bridge = Bridge(mosquitto, tmp_path, udp)
    outputs: list[str] = []
    try:
        bridge.start()
        probe = Probe(mosquitto.port)
        try:
            probe.subscribe("ruview/bridge/response/#", "ruview/bridge/nodes")
            assert wait_until(lambda: all(i in _nodes(probe) and _nodes(probe)[i]["online"] for i in NODES), 20), \
                "nodes online"
            for n, (verb, body) in enumerate(steps, start=1):
                answer = _request(probe, verb, body, n)
                assert answer["status"] == "ok", (verb, answer)
            if case == "calibrate":  # learned (warm-up is 600 s: only the calibration can give it) and stored
                probe.subscribe("ruview/bridge/health")
                assert wait_until(lambda: any(3 in m.json().get("nodes", {}).get("baselines_kept", [])
                                              for m in probe.on("ruview/bridge/health")), 20), "baseline stored"
            time.sleep(random.uniform(0, 0.05))  # not a wait for anything: the kill's random moment after "ok"
        finally:
            probe.close()
        outputs.append(bridge.kill())
        _wipe_retained(mosquitto.port)
        bridge.start()
        probe = Probe(mosquitto.port)
        try:
            probe.subscribe("ruview/bridge/nodes", "ruview/bridge/info", "ruview/node/+")
            assert wait_until(lambda: holds(_nodes(probe), probe), 20), (steps, _nodes(probe), outputs[-1][-2000:])
        finally:
            probe.close()
        outputs.append(bridge.kill())
    finally:
        traffic.close()
        if bridge.proc is not None and bridge.proc.poll() is None:
            bridge.kill()
    broken = [o[o.index("Traceback"):][:3000] for o in outputs if "Traceback" in o]
    assert not broken, "\n".join(broken)
