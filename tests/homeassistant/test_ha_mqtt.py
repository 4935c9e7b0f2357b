"""Home Assistant discovery out and in, end to end on a real Mosquitto."""

from __future__ import annotations

import time

import pytest

from bridge.core.eventdata import EventFired, StateChanged
from bridge.app import build_bridge
from bridge.homeassistant.extension import HomeAssistantExtension
from bridge.nodes.extension import NodesExtension
from firmware_tools.simulate import generate, make_nodes, send_udp
from tests.brokers import free_port
from tests.conftest import served, settled
from tests.homeassistant.fixtures import CONFIGS, STATES
from tests.homeassistant.test_discovery_schema import check_component
from tests.polling import wait_until

HA = {"collect_seconds": 0.5, "birth_delay": 0.2, "rename_pause": 0.3}
NODE_KEY = "ruview_ruview_node_{}"


@pytest.fixture
def ha_bridge(make_config):
    made = []

    def make(broker, nodes=None, **ha):
        port = free_port()
        config = make_config(broker, nodes={"publish_interval": 0.2, "udp": {"bind": "127.0.0.1", "port": port},
                                            **(nodes or {})},
                             homeassistant={**HA, **ha})
        bridge = build_bridge(config, extensions=[NodesExtension(), HomeAssistantExtension()])
        nodes, ha_ext = bridge.extension("nodes"), bridge.extension("homeassistant")
        bridge.start()
        assert bridge.mqtt.wait_connected(15)
        made.append(bridge)
        return bridge, nodes, ha_ext, port

    yield make
    for bridge in made:
        bridge.stop()


def devices_on_broker(probe):
    for topic, payload in CONFIGS.items():
        probe.publish(topic, payload, retain=True)
    for topic, payload in STATES.items():
        probe.publish(topic, payload if isinstance(payload, dict) else payload.encode(), retain=True)


def test_discovered_devices_become_home_state_and_services_publish_exact_commands(
        mosquitto, ha_bridge, make_probe):
    devices_on_broker(make_probe(mosquitto))
    bridge, _, ha, _ = ha_bridge(mosquitto)
    assert wait_until(lambda: len(ha.devices.entities) == 7, 5), sorted(ha.devices.entities)
    followed = ["light.living_room_lamp", "switch.coffee_plug", "binary_sensor.hall_pir_occupancy",
                "sensor.hall_pir_temperature", "switch.tasmota_a1b2c3_desk_fan_socket", "fan.bedroom_esp_bedroom_fan"]
    # each exists at once as "unknown" (as in HA), then takes the state its device published
    assert wait_until(lambda: all(getattr(bridge.states.get(e), "state", "unknown") != "unknown"
                                  for e in followed), 5)
    lamp = bridge.states.get("light.living_room_lamp")
    assert lamp.state == "on" and lamp.attributes["brightness"] == 128  # 127 of 254, in HA's 0..255
    assert lamp.attributes["area"] == "Living room"
    assert bridge.states.get("binary_sensor.hall_pir_occupancy").state == "on"
    assert bridge.states.get("sensor.hall_pir_temperature").state == "21.5"
    assert bridge.states.get("switch.tasmota_a1b2c3_desk_fan_socket").state == "on"
    assert bridge.states.get("fan.bedroom_esp_bedroom_fan").state == "off"

    devices = make_probe(mosquitto, "zigbee2mqtt/+/set", "cmnd/#", "bedroom-esp/#", "ruview/service/#")
    devices.clear()

    def call(domain, service, data, call_id):
        devices.publish(f"ruview/service/{domain}/{service}", {"id": call_id, "data": data})
        return devices.wait_topic(f"ruview/service/{domain}/{service}/response",
                                  match=lambda m: m.json()["id"] == call_id).json()

    assert call("light", "turn_on", {"entity_id": "light.living_room_lamp", "brightness_pct": 50}, "a")["success"]
    cmd = devices.wait_topic("zigbee2mqtt/Living room lamp/set")
    assert cmd.payload == b'{"state":"ON","brightness":127}' and not cmd.retain

    assert call("light", "turn_on", {"entity_id": "light.tasmota_d4e5f6_hall_dimmer", "brightness_pct": 50},
                "b")["success"]
    assert devices.wait_topic("cmnd/tasmota_D4E5F6/Dimmer").payload == b"50"
    assert devices.wait_topic("cmnd/tasmota_D4E5F6/POWER").payload == b"ON"

    reply = call("switch", "turn_on", {"entity_id": "switch.coffee_plug"}, "c")
    assert reply["success"], (reply, sorted(ha.devices.entities))
    assert devices.wait_topic("zigbee2mqtt/Coffee plug/set").payload == b"ON"
    assert call("homeassistant", "toggle", {"entity_id": "switch.tasmota_a1b2c3_desk_fan_socket"}, "d")["success"]
    assert devices.wait_topic("cmnd/tasmota_A1B2C3/POWER").payload == b"OFF"  # it was on

    before = [m.topic for m in devices.messages]
    reply = call("light", "turn_on", {"entity_id": ["light.living_room_lamp", "light.nowhere"]}, "e")
    assert not reply["success"] and "unknown entity 'light.nowhere'" in reply["error"]
    # a command would have been published before the answer, on the same connection
    after = [m.topic for m in devices.messages if not m.topic.startswith("ruview/")]
    assert after == [t for t in before if not t.startswith("ruview/")], "an error call published a command"

    devices.publish("homeassistant/switch/0x00158d0005d6e7f8/switch/config", b"", retain=True)
    assert wait_until(lambda: "switch.coffee_plug" not in ha.devices.entities, 5)
    assert bridge.states.get("switch.coffee_plug") is None


def test_nodes_are_announced_demotion_clears_vitals_and_stale_configs_go(mosquitto, ha_bridge, make_probe):
    seed = make_probe(mosquitto)
    stale = "homeassistant/sensor/ruview_ruview_node_99/rssi/config"
    seed.publish(stale, {"name": "old", "state_topic": "ruview/node/gone", "unique_id": "x",
                         "origin": {"name": "ruview-bridge"}}, retain=True)
    foreign = "homeassistant/sensor/other_thing/rssi/config"
    seed.publish(foreign, {"name": "keep", "state_topic": "x/y", "origin": {"name": "someone-else"}}, retain=True)
    probe = make_probe(mosquitto, "homeassistant/#")
    bridge, nodes, ha, port = ha_bridge(mosquitto)
    probe.wait_topic(stale, match=lambda m: m.payload == b"")
    send_udp(generate(make_nodes(1, "breathing", 15, first_id=5), 15), "127.0.0.1", port, speed=0)
    key = NODE_KEY.format(5)
    breathing = f"homeassistant/sensor/{key}/breathing/config"
    cfg = probe.wait_topic(breathing, timeout=8).json()
    assert cfg["state_topic"] == "ruview/node/node_5" and cfg["origin"]["name"] == "ruview-bridge"
    probe.wait_topic("homeassistant/binary_sensor/ruview_bridge_ruview/connection_state/config")
    assert not [m for m in probe.on(foreign) if m.payload == b""], "only our own configs are cleared"

    probe.publish("ruview/bridge/request/node/privacy", {"node": "node_5", "class": "restricted"})
    probe.wait_topic(breathing, match=lambda m: m.payload == b"")
    probe.wait_topic(f"homeassistant/sensor/{key}/heart_rate/config", match=lambda m: m.payload == b"")
    settled(bridge)
    held = make_probe(mosquitto, f"homeassistant/+/{key}/+/config")  # what HA finds retained now
    event = held.wait_topic(f"homeassistant/event/{key}/event/config")
    assert event.retain and "unrecognized_activity_pattern" in event.json()["event_types"]
    held.wait_topic(f"homeassistant/binary_sensor/{key}/presence/config")
    assert not [m for m in held.messages if m.payload and ("/breathing/" in m.topic or "/heart_rate/" in m.topic)]

    probe.clear()
    probe.publish("homeassistant/status", b"online")
    probe.wait_topic(f"homeassistant/binary_sensor/{key}/presence/config", timeout=5)
    assert not [m for m in probe.messages if "/breathing/" in m.topic and m.payload]


def test_number_and_button_commands_reach_the_node(mosquitto, ha_bridge, make_probe):
    bridge, nodes, ha, port = ha_bridge(mosquitto)
    probe = make_probe(mosquitto, "ruview/node/+")
    send_udp(generate(make_nodes(1, "empty", 15, first_id=6), 15), "127.0.0.1", port, speed=0)
    probe.wait_topic("ruview/node/node_6")
    probe.publish("ruview/node/node_6/set", b'{"enter_ratio": 4.5}')  # what the number entity sends
    state = probe.wait_topic("ruview/node/node_6", match=lambda m: m.json()["thresholds"]["enter_ratio"] == 4.5)
    assert state.json()["thresholds"]["exit_ratio"] == 1.8
    probe.publish("ruview/node/node_6/set", b'{"enter_ratio": 500}')  # out of range: ignored
    probe.publish("ruview/node/node_6/set", b'{"calibrate": true}')  # the button's payload_press
    probe.wait_topic("ruview/node/node_6", match=lambda m: m.json()["calibrating"] is True)
    assert nodes.pipeline.engine(6).settings.enter_ratio == 4.5
    # a retained command is never taken (MQTT 5 keeps the retain flag on live delivery for us)
    probe.publish("ruview/node/node_6/set", b'{"enter_ratio": 9.0}', retain=True)
    try:
        served(probe, bridge)
        probe.flush()
        assert nodes.pipeline.engine(6).settings.enter_ratio == 4.5
        assert bridge.router.ignored_retained >= 1
    finally:
        probe.publish("ruview/node/node_6/set", b"", retain=True)


def _all_available(probe, configs: dict) -> bool:
    """Every announced entity's availability topics last said online (what HA would show)."""
    last = {m.topic: m.payload for m in probe.messages}
    for cfg in configs.values():
        for source in cfg.get("availability", []):
            if b'"online"' not in last.get(source["topic"], b""):
                return False
    return bool(configs)


def _configs(probe) -> dict:
    out = {}
    for m in probe.messages:
        if m.topic.startswith("homeassistant/") and m.topic.endswith("/config"):
            if m.payload:
                out[m.topic] = m.json()
            else:
                out.pop(m.topic, None)
    return out


@pytest.mark.parametrize("ha_first", [True, False], ids=["ha-started-first", "bridge-started-first"])
def test_entities_end_up_available_whichever_starts_first(mosquitto, ha_bridge, make_probe, ha_first):
    ha = make_probe(mosquitto, "homeassistant/#", "ruview/#") if ha_first else None
    if ha_first:
        ha.publish("homeassistant/status", b"online")  # HA's birth, before any bridge exists
    bridge, nodes, ha_ext, port = ha_bridge(mosquitto, discover_devices=False)
    send_udp(generate(make_nodes(2, "empty", 12, first_id=11), 12), "127.0.0.1", port, speed=0)
    assert wait_until(lambda: len(nodes.registry) == 2, 5)
    if not ha_first:  # HA starts once the bridge has announced everything
        assert wait_until(lambda: not ha_ext._collecting and not ha_ext._pacing
                          and len([t for t in ha_ext.published if "_node_1" in t]) >= 2 * 14, 10)
        settled(bridge)
        ha = make_probe(mosquitto, "homeassistant/#", "ruview/#")  # HA starts: retained copies
        ha.publish("homeassistant/status", b"online")
    assert wait_until(lambda: len([t for t in _configs(ha) if "_node_1" in t]) >= 2 * 14, 10)
    configs = _configs(ha)
    assert wait_until(lambda: _all_available(ha, _configs(ha)), 5)
    for topic, cfg in configs.items():
        platform = topic.split("/")[1]
        if platform in ("binary_sensor", "sensor", "event", "button", "number"):
            check_component(platform, cfg)  # HA's schema, as received from the broker


def test_a_restart_keeps_the_entities_of_quiet_nodes_until_they_are_removed(mosquitto, ha_bridge, make_probe):
    """Known nodes — configured, or retained from the earlier run — keep their discovery (issue 12 #2)."""
    configured = {"devices": {12: {"name": "cellar", "room": "Cellar"}}}
    bridge, _, _, port = ha_bridge(mosquitto, **{})
    send_udp(generate(make_nodes(1, "empty", 12, first_id=7), 12), "127.0.0.1", port, speed=0)
    watcher = make_probe(mosquitto, "homeassistant/#", "ruview/node/#")
    rssi = f"homeassistant/sensor/{NODE_KEY.format(7)}/rssi/config"
    watcher.wait_topic(rssi, timeout=8)
    bridge.stop()  # node 7 is quiet from now on; its configs and state stay retained on the broker
    watcher.clear()

    second, nodes, ha, _ = ha_bridge(mosquitto, nodes=configured)  # a new run that never hears from it
    assert wait_until(lambda: not ha._collecting and not ha._pacing, 10)
    settled(second)
    watcher.flush()
    cleared = [m.topic for m in watcher.messages if m.payload == b"" and "/config" in m.topic]
    assert cleared == [], f"a restart cleared the entities of a quiet node: {cleared[:3]}"
    cellar = f"homeassistant/binary_sensor/{NODE_KEY.format(12)}/presence/config"
    assert watcher.wait_topic(cellar).json()["device"]["suggested_area"] == "Cellar"  # configured, never heard
    assert {n.node_id for n in nodes.registry.all()} == {7, 12}

    probe = make_probe(mosquitto, "ruview/bridge/response/#")
    probe.publish("ruview/bridge/request/node/remove", {"node": "node_7", "transaction": 1})
    assert probe.wait_topic("ruview/bridge/response/node/remove").json()["status"] == "ok"
    watcher.wait_topic(rssi, match=lambda m: m.payload == b"", timeout=8)
    settled(second)
    late = make_probe(mosquitto, "homeassistant/#", "ruview/node/#")  # what HA would find now
    assert not [m.topic for m in late.messages if ("node_7" in m.topic or NODE_KEY.format(7) in m.topic)
                and m.payload]


def test_a_restricted_node_never_announces_vitals(mosquitto, make_config, make_probe):
    whole = make_probe(mosquitto, "homeassistant/#")
    port = free_port()
    config = make_config(mosquitto, nodes={"udp": {"bind": "127.0.0.1", "port": port},
                                           "devices": {9: {"privacy_class": "restricted"}}},
                         homeassistant=HA)
    bridge = build_bridge(config)
    bridge.start()
    try:
        send_udp(generate(make_nodes(1, "breathing", 12, first_id=9), 12), "127.0.0.1", port, speed=0)
        whole.wait_topic(f"homeassistant/binary_sensor/{NODE_KEY.format(9)}/presence/config", timeout=8)
        ha = bridge.extension("homeassistant")
        assert wait_until(lambda: not ha._pacing, 10)
        settled(bridge)
        whole.flush()
        announced = [m.topic for m in whole.messages if m.payload]
        assert not [t for t in announced if "/breathing/" in t or "/heart_rate/" in t]
        # the activity-pattern event crosses at Restricted (privacy rule 3: events without scores)
        assert [t for t in announced if t.endswith("unrecognized_activity_pattern/config")]
    finally:
        bridge.stop()


def test_statestream_makes_ha_only_entities_known(mosquitto, ha_bridge, make_probe):
    ha = make_probe(mosquitto)
    ha.publish("hass/light/kitchen_ceiling/state", b'"on"', retain=True)  # JSON-encoded, as HA sends
    ha.publish("hass/sensor/outside_temperature/state", b'"3.5"', retain=True)
    bridge, _, _, _ = ha_bridge(mosquitto, statestream_topic="hass")
    assert wait_until(lambda: bridge.states.get("sensor.outside_temperature") is not None, 5)
    assert bridge.states.get("light.kitchen_ceiling").state == "on"
    assert bridge.states.get("sensor.outside_temperature").state == "3.5"
    ha.publish("hass/light/kitchen_ceiling/state", b'"off"', retain=True)
    assert wait_until(lambda: bridge.states.get("light.kitchen_ceiling").state == "off", 5)


def test_a_foreign_config_with_a_wildcard_state_topic_is_refused_not_followed(mosquitto, ha_bridge, make_probe,
                                                                              caplog):
    import logging
    caplog.set_level(logging.WARNING, logger="bridge.homeassistant.devices")
    seed = make_probe(mosquitto)
    bad = {"name": "Greedy", "state_topic": "#", "command_topic": "greedy/set", "unique_id": "g1",
           "device": {"identifiers": ["g"], "name": "Greedy"}}
    for topic in ("homeassistant/switch/greedy/a/config", "homeassistant/switch/greedy/b/config"):
        seed.publish(topic, {**bad, "state_topic": "+/x" if topic.endswith("b/config") else "#"}, retain=True)
    seed.publish(topic, {**bad, "state_topic": "#"}, retain=True)  # the same one again
    try:
        bridge, _, ha, _ = ha_bridge(mosquitto)
        assert wait_until(lambda: ha.devices.rejected >= 3, 5), ha.devices.rejected
        assert not ha.devices.entities
        assert not [r for r in bridge.router._routes if r.topic_filter in ("#", "+/x")], \
            "subscribed to the whole broker"
        said = [r.getMessage() for r in caplog.records if "greedy" in r.getMessage()]
        assert len(said) == 2 and all("wildcard" in s for s in said), said  # once per config topic
        assert bridge.health()["homeassistant"]["refused"] >= 3
    finally:
        for topic in ("homeassistant/switch/greedy/a/config", "homeassistant/switch/greedy/b/config"):
            seed.publish(topic, b"", retain=True)


def test_a_device_announcing_itself_again_does_not_flap_its_state(mosquitto, ha_bridge, make_probe):
    devices = make_probe(mosquitto)
    devices_on_broker(devices)
    bridge, _, ha, _ = ha_bridge(mosquitto)
    # it exists as "unknown" from its config on; wait for the state its device published too
    lamp_state = lambda: getattr(bridge.states.get("light.living_room_lamp"), "state", "unknown")  # noqa: E731
    assert wait_until(lambda: lamp_state() != "unknown", 5)
    probe = make_probe(mosquitto, "ruview/state/light.living_room_lamp", "ruview/bridge/response/#")
    seen = []
    bridge.bus.subscribe(StateChanged, lambda c: seen.append(c) if c.entity_id == "light.living_room_lamp"
                         else None, None)
    lamp = "homeassistant/light/0x00158d0001a2b3c4/light/config"
    handled = ha.ctx.inbox.handled
    devices.publish(lamp, CONFIGS[lamp], retain=True)  # Zigbee2MQTT restarting announces it the same way
    assert wait_until(lambda: ha.ctx.inbox.handled > handled, 5)  # the config went through
    # then a round trip through the core inbox, where state_changed would be delivered
    devices.publish("ruview/bridge/request/health_check", b"{}")
    probe.wait_topic("ruview/bridge/response/health_check")
    assert seen == [] and all(m.payload for m in probe.messages if m.topic.startswith("ruview/state/"))
    assert bridge.states.get("light.living_room_lamp").state == "on"


def test_a_broker_restarted_without_its_retained_messages_gets_every_config_again(mosquitto, ha_bridge, make_probe):
    bridge, nodes, ha, port = ha_bridge(mosquitto)
    send_udp(generate(make_nodes(2, "visit", 10), 10), "127.0.0.1", port, speed=0)
    assert wait_until(lambda: len(ha.nodes) == 2 and not ha._pacing and len(ha.published) >= 2 * 14, 10)
    announced = sorted(ha.published)
    mosquitto.kill()  # a broker without persistence: its retained messages are gone
    assert wait_until(lambda: not bridge.mqtt.connected, 5)
    mosquitto.start()
    assert bridge.mqtt.wait_connected(15)
    watcher = make_probe(mosquitto, "homeassistant/#")
    watcher.wait_for(lambda ms: {m.topic for m in ms if m.payload} >= set(announced), timeout=15,
                     what="every config announced again")
    late = make_probe(mosquitto, "homeassistant/#")  # a subscriber after that gets them as retained
    late.wait_for(lambda ms: {m.topic for m in ms if m.retain and m.payload} >= set(announced), timeout=5,
                  what="every config retained on the restarted broker")
    assert sorted(ha.published) == announced


def test_nodes_heard_together_are_announced_in_turn_not_in_one_burst(mosquitto, ha_bridge, make_probe):
    """A bridge started beside a house of nodes hears them all in its first second; announcing
    each at once queued every config together (the memory peak stayed: bench/nodes_memory.py)."""
    from bridge.homeassistant.extension import PACE_SECONDS
    probe = make_probe(mosquitto, "homeassistant/binary_sensor/+/presence/config")
    bridge, _, ha, port = ha_bridge(mosquitto)
    assert wait_until(lambda: not ha._collecting, 5)
    send_udp(generate(make_nodes(8, "empty", 0.5, first_id=20), 0.5), "127.0.0.1", port, speed=0)
    arrived = probe.wait_for(lambda ms: len({m.topic for m in ms if m.payload}) == 8, timeout=10,
                             what="presence configs of all 8 nodes")
    times = sorted(m.received for m in arrived if m.payload)
    assert times[-1] - times[0] >= 7 * PACE_SECONDS * 0.8, "announced in one burst"
    assert wait_until(lambda: not ha._pacing, 5)
