"""WASM plugins end to end on a real Mosquitto: a signed plugin drives a discovered light; hostile
plugins are contained; tampering is refused with the cause."""

from __future__ import annotations

import json
import subprocess
import sys

import orjson
import pytest

from bridge.app import build_bridge
from bridge.homeassistant.extension import HomeAssistantExtension
from bridge.nodes.extension import NodesExtension
from bridge.plugins.extension import PluginsExtension
from firmware_tools.simulate import generate, make_nodes, send_udp
from tests.brokers import free_port_udp
from tests.homeassistant.test_ha_mqtt import devices_on_broker
from tests.polling import wait_until
from tests.plugins.helpers import Publisher

LAMP_SET = "zigbee2mqtt/Living room lamp/set"


@pytest.fixture
def publisher(tmp_path):
    return Publisher(tmp_path)


@pytest.fixture
def plugin_bridge(make_config, tmp_path):
    made = []

    def make(broker, plugins: dict, nodes=None):
        udp = free_port_udp()
        config = make_config(broker, nodes={"publish_interval": 0.2, "udp": {"bind": "127.0.0.1", "port": udp},
                                            **(nodes or {})},
                             homeassistant={"collect_seconds": 0.3},
                             plugins={"enabled": True, "cache_dir": str(tmp_path / "cache"),
                                      "audit_log": str(tmp_path / "audit.jsonl"), "watch_interval": 0.3,
                                      "restart_backoff": 0.05, **plugins})
        bridge = build_bridge(config, extensions=[NodesExtension(), HomeAssistantExtension(), PluginsExtension()])
        bridge.start()
        assert bridge.mqtt.wait_connected(15)
        assert bridge.extension_state["plugins"]["state"] == "running", bridge.extension_state
        made.append(bridge)
        return bridge, bridge.extension("plugins"), udp

    yield make
    for bridge in made:
        bridge.stop()


def test_presence_in_a_room_turns_its_discovered_light_on_then_off(mosquitto, plugin_bridge, make_probe,
                                                                    publisher, tmp_path):
    devices_on_broker(make_probe(mosquitto))
    plugin = publisher.install("presence-lights", tmp_path / "plugins")
    probe = make_probe(mosquitto, LAMP_SET, "ruview/plugin/+/status")
    bridge, host, udp = plugin_bridge(
        mosquitto, {"dirs": [str(tmp_path / "plugins")], "trusted_keys": [publisher.public],
                    "entries": {"presence_lights": {"lights": {"Living room": "light.living_room_lamp"},
                                                    "off_delay_s": 1}}},
        nodes={"devices": {1: {"name": "lounge", "room": "Living room"}}})
    status = probe.wait_topic("ruview/plugin/presence_lights/status")
    assert json.loads(status.payload)["state"] == "running", status.payload
    assert json.loads(status.payload)["trust"] == "signed"
    assert wait_until(lambda: bridge.states.get("light.living_room_lamp") is not None, 5)  # discovered
    assert not [m for m in probe.messages if m.topic == LAMP_SET]

    frames = list(generate(make_nodes(1, "visit", 60), 60))  # someone is in the room from 18 s to 42 s
    send_udp([f for f in frames if f[0] < 30], "127.0.0.1", udp, speed=0)  # in: the first 30 s at once
    assert wait_until(lambda: [m for m in probe.messages if m.topic == LAMP_SET], 10), \
        (host.plugins["presence_lights"].health(), bridge.states.get("binary_sensor.lounge_presence"))
    on = probe.wait_topic(LAMP_SET, timeout=1)
    assert on.payload == b'{"state":"ON"}' and not on.retain
    assert bridge.states.get("binary_sensor.lounge_presence").state == "on"
    send_udp([f for f in frames if f[0] >= 30], "127.0.0.1", udp, speed=0)  # out: the rest
    assert probe.wait_for(lambda ms: any(m.topic == LAMP_SET and m.payload == b'{"state":"OFF"}' for m in ms),
                          timeout=10), [m.payload for m in probe.messages if m.topic == LAMP_SET]
    health = host.plugins["presence_lights"].health()
    assert health["events"] >= 2 and health["denied"] == 0 and health["crashes"] == 0
    assert plugin.is_dir()


def test_tampering_one_byte_or_widening_a_permission_is_refused_with_the_cause(mosquitto, plugin_bridge,
                                                                               make_probe, publisher, tmp_path):
    plugins = tmp_path / "plugins"
    tampered = publisher.install("presence-lights", plugins)
    data = bytearray((tampered / "plugin.wasm").read_bytes())
    data[len(data) // 2] ^= 0x01
    (tampered / "plugin.wasm").write_bytes(bytes(data))
    widened = publisher.install("threshold-alert", plugins)
    raw = orjson.loads((widened / "manifest.json").read_bytes())
    raw["homecore_permissions"].append("service:call:lock.*")
    (widened / "manifest.json").write_bytes(orjson.dumps(raw))
    probe = make_probe(mosquitto, "ruview/plugin/+/status")
    bridge, host, _ = plugin_bridge(mosquitto, {"dirs": [str(plugins)], "trusted_keys": [publisher.public]})
    first = json.loads(probe.wait_topic("ruview/plugin/presence_lights/status").payload)
    second = json.loads(probe.wait_topic("ruview/plugin/threshold_alert/status").payload)
    assert first["state"] == "rejected" and "does not match wasm_module_hash" in first["reason"]
    assert second["state"] == "rejected" and "signature does not verify" in second["reason"]
    assert "homecore_permissions" in second["reason"]
    assert host.plugins == {}
    audit = subprocess.run([sys.executable, "-m", "bridge", "plugin", "audit", "--file", str(tmp_path / "audit.jsonl")],
                           capture_output=True, text=True)
    assert audit.returncode == 0 and "records, the chain is intact" in audit.stdout, audit


HOSTILE = ["loop", "grow", "oob", "overreach", "trap", "flood"]


def test_hostile_plugins_are_contained_and_the_others_keep_working(mosquitto, plugin_bridge, make_probe,
                                                                   publisher, tmp_path):
    plugins = tmp_path / "plugins"
    for name in HOSTILE + ["undeclared"]:
        publisher.install(f"hostile/{name}", plugins)
    publisher.install("threshold-alert", plugins)
    probe = make_probe(mosquitto, "ruview/plugin/#", "ruview/state/binary_sensor.hall_too_warm",
                       "ruview/bridge/response/#")
    bridge, host, _ = plugin_bridge(
        mosquitto, {"dirs": [str(plugins)], "trusted_keys": [publisher.public], "max_crashes": 3,
                    "entries": {"threshold_alert": {"sensor": "sensor.hall_temperature", "high": 26, "low": 24,
                                                    "alert": "binary_sensor.hall_too_warm"}}})
    undeclared = json.loads(probe.wait_topic("ruview/plugin/hostile_undeclared/status").payload)
    assert undeclared["state"] == "rejected" and "hc_mqtt_publish" in undeclared["reason"] \
        and "host_imports_required" in undeclared["reason"]
    assert wait_until(lambda: host.plugins["hostile_trap"].disabled, 10)
    assert "disabled after 3 crashes" in host.plugins["hostile_trap"].reason

    for round_ in range(3):  # poke the hostile ones while the sensor moves
        subprocess.run(["mosquitto_pub", "-p", str(mosquitto.port), "-q", "1", "-t", "ruview/event/poke",
                        "-m", '{"data": {}}'], check=True)
        for value in ("27.5", "23.0"):
            subprocess.run(["mosquitto_pub", "-p", str(mosquitto.port), "-q", "1", "-r",
                            "-t", "ruview/state/sensor.hall_temperature",
                            "-m", json.dumps({"state": value, "attributes": {}})], check=True)
            want = "on" if value == "27.5" else "off"
            assert wait_until(lambda: (s := bridge.states.get("binary_sensor.hall_too_warm")) is not None
                              and s.state == want, 5), (round_, value)
    # the bridge still answers while all that went on
    subprocess.run(["mosquitto_pub", "-p", str(mosquitto.port), "-t", "ruview/bridge/request/health_check",
                    "-m", "{}"], check=True)
    assert probe.wait_topic("ruview/bridge/response/health_check") is not None

    flooder = host.plugins["hostile_flood"]
    assert wait_until(lambda: flooder.counters.rate_limited > 0 or flooder.counters.crashes >= 1, 10)
    h = {name: host.plugins[f"hostile_{name}"].health() for name in HOSTILE}
    loop_reasons = [json.loads(m.payload).get("reason") or "" for m in probe.messages
                    if m.topic == "ruview/plugin/hostile_loop/status"]
    assert h["loop"]["crashes"] >= 1
    assert any("ran out of fuel" in r or "longer than limits.time_per_call_ms" in r for r in loop_reasons), loop_reasons
    assert h["grow"]["crashes"] >= 1
    assert h["oob"]["bad_pointers"] >= 3 and h["oob"]["crashes"] >= 1
    assert h["overreach"]["denied"] >= 1 and bridge.states.get("lock.front_door") is None
    flood = [m for m in probe.messages if m.topic == "ruview/plugin/hostile_flood/spam"]
    # at most a burst (2 x host_calls_per_s) per poke got out: the rest was refused, or the call cut off
    assert len(flood) <= 3 * 400 + 10 and (h["flood"]["rate_limited"] > 0 or h["flood"]["crashes"] >= 1), \
        (len(flood), h["flood"])
    audits = [json.loads(m.payload) for m in probe.messages if m.topic == "ruview/plugin/hostile_overreach/audit"]
    assert any(a["action"] == "deny" and a["subject"] == "lock.front_door" for a in audits)
    threshold = host.plugins["threshold_alert"].health()
    assert threshold["crashes"] == 0 and threshold["events"] >= 6
