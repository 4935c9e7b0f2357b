"""Several bridges on one broker (DESIGN.md, Scale): a share group does each piece of work once."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

import orjson

from tests.brokers import free_port_udp
from tests.homeassistant.fixtures import CONFIGS
from tests.mqtt_probe import Probe

CLI = [sys.executable, "-m", "bridge"]
LAMP_CONFIG = "homeassistant/light/0x00158d0001a2b3c4/light/config"
LAMP_SET = "zigbee2mqtt/Living room lamp/set"


def _bridge(mosquitto, tmp_path, instance: str) -> subprocess.Popen:
    cfg = tmp_path / f"{instance}.yaml"
    cfg.write_text(f"mqtt:\n  url: {mosquitto.url}\n"
                   f"bridge:\n  instance: {instance}\n  share_group: house\n  health_interval: 1\n"
                   f"nodes:\n  udp:\n    bind: 127.0.0.1\n    port: {free_port_udp()}\n"
                   "homeassistant:\n  collect_seconds: 0.5\n")
    return subprocess.Popen([*CLI, "run", "-c", str(cfg), "--no-status"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def _pub(port: int, topic: str, body: dict) -> None:
    """One-shot mosquitto_pub, as a user's script would."""
    subprocess.run([shutil.which("mosquitto_pub") or "/usr/bin/mosquitto_pub", "-p", str(port),
                    "-t", topic, "-m", orjson.dumps(body).decode()], check=True, timeout=10)


def _knows_lamp(probe: Probe, instance: str) -> bool:
    tx = os.urandom(4).hex()
    probe.publish(f"ruview/bridge/{instance}/request/info", {"transaction": tx})
    answer = probe.wait_topic(f"ruview/bridge/{instance}/response/info", 5,
                              match=lambda m: m.json().get("transaction") == tx).json()
    return "light.living_room_lamp" in answer["data"].get("discovered_entities", [])


def _barrier(probe: Probe, *instances: str) -> None:
    """Each instance has answered on its own topic: what was sent before is handled."""
    for instance in instances:
        tx = os.urandom(4).hex()
        probe.publish(f"ruview/bridge/{instance}/request/health_check", {"transaction": tx})
        probe.wait_topic(f"ruview/bridge/{instance}/response/health_check", 5,
                         match=lambda m: m.json().get("transaction") == tx)
    probe.flush()


def test_two_bridges_in_a_share_group_do_each_call_and_request_once(mosquitto, tmp_path):
    seed = Probe(mosquitto.port)
    seed.publish(LAMP_CONFIG, CONFIGS[LAMP_CONFIG], retain=True)
    a, b = _bridge(mosquitto, tmp_path, "a"), _bridge(mosquitto, tmp_path, "b")
    probe = Probe(mosquitto.port).subscribe("ruview/#", LAMP_SET)
    try:
        for instance in ("a", "b"):
            probe.wait_topic(f"ruview/bridge/{instance}/state", 20, match=lambda m: m.json()["state"] == "online")
        probe.wait_for(lambda _: _knows_lamp(probe, "a") and _knows_lamp(probe, "b"), 15,
                       "both instances discovered the lamp")
        probe.clear()

        for i in range(20):
            _pub(mosquitto.port, "ruview/service/light/turn_on",
                 {"id": f"call-{i}", "data": {"entity_id": "light.living_room_lamp"}})
            _pub(mosquitto.port, "ruview/bridge/request/health_check", {"transaction": i})
        probe.wait_for(lambda ms: len([m for m in ms if m.topic == LAMP_SET]) >= 20, 15, "20 lamp commands")
        _barrier(probe, "a", "b")

        commands = probe.on(LAMP_SET)
        assert len(commands) == 20 and {m.payload for m in commands} == {b'{"state":"ON"}'}
        answers = [m.json() for m in probe.on("ruview/service/light/turn_on/response")]
        assert sorted(a["id"] for a in answers) == sorted(f"call-{i}" for i in range(20))
        assert all(a["success"] for a in answers)
        health = [m.json()["transaction"] for m in probe.on("ruview/bridge/response/health_check")]
        assert sorted(health) == list(range(20))

        # both instances took a share of the work (the broker spreads a shared subscription)
        def calls_by_instance(messages) -> dict[str, int]:
            latest = {}
            for m in messages:
                if m.topic.endswith("/health") and m.topic.count("/") == 3:
                    latest[m.topic.split("/")[2]] = m.json()["services"]["calls"]
            return latest

        probe.wait_for(lambda ms: sum(calls_by_instance(ms).values()) >= 20 and len(calls_by_instance(ms)) == 2,
                       5, "health reports counting every call")
        calls = calls_by_instance(probe.messages)
        assert sum(calls.values()) == 20 and min(calls.values()) > 0, calls

        # one instance stops cleanly: the other stays online, and serves every call alone
        a.send_signal(signal.SIGINT)
        assert a.wait(15) == 0
        probe.wait_topic("ruview/bridge/a/state", 5, match=lambda m: m.json()["state"] == "offline")
        late = Probe(mosquitto.port).subscribe("ruview/bridge/+/state", "ruview/bridge/state")
        assert late.on("ruview/bridge/b/state")[-1].json() == {"state": "online"}
        assert late.on("ruview/bridge/state") == [], "grouped instances never share one state topic"
        late.close()
        probe.clear()
        for i in range(5):
            _pub(mosquitto.port, "ruview/service/light/turn_on",
                 {"id": f"after-{i}", "data": {"entity_id": "light.living_room_lamp"}})
        probe.wait_for(lambda ms: len([m for m in ms if m.topic == LAMP_SET]) >= 5, 15, "5 more commands")
        _barrier(probe, "b")
        assert len(probe.on(LAMP_SET)) == 5
    finally:
        for proc in (a, b):
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                proc.wait(15)
        seed.publish(LAMP_CONFIG, b"", retain=True)
        probe.close()
        seed.close()


def test_a_per_instance_request_on_the_shared_topic_says_where_to_send_it(mosquitto, tmp_path):
    a = _bridge(mosquitto, tmp_path, "solo")
    probe = Probe(mosquitto.port).subscribe("ruview/bridge/#")
    try:
        probe.wait_topic("ruview/bridge/solo/state", 20, match=lambda m: m.json()["state"] == "online")
        _pub(mosquitto.port, "ruview/bridge/request/restart", {"transaction": 7})
        answer = probe.wait_topic("ruview/bridge/response/restart", 5).json()
        assert answer["status"] == "error" and answer["transaction"] == 7
        assert "ruview/bridge/solo/request/restart" in answer["error"]
        assert a.poll() is None  # and it did not restart
    finally:
        a.send_signal(signal.SIGINT)
        a.wait(15)
        probe.close()
