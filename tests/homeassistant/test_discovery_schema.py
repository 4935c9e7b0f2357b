"""Our discovery payloads against HA's documented schema for each platform."""

from __future__ import annotations

import pytest

from bridge.core.directory import NodeInfo
from bridge.homeassistant.discovery import bridge_configs, device_triggers, node_configs
from bridge.privacy import NODE_EVENTS as EVENT_TYPES
from bridge.privacy import PrivacyClass
from bridge.topics import DiscoveryTopics, Topics

TOPICS = Topics("ruview")
DT = DiscoveryTopics("homeassistant")
ANON, RESTRICTED = PrivacyClass.ANONYMOUS, PrivacyClass.RESTRICTED
REQUIRED = {  # from HA's MQTT platform docs
    "binary_sensor": {"state_topic"}, "sensor": {"state_topic"}, "event": {"state_topic", "event_types"},
    "button": {"command_topic"}, "number": {"command_topic"},
}
# Home Assistant's binary_sensor device classes (developers.home-assistant.io, BinarySensorDeviceClass)
BINARY_CLASSES = {"battery", "battery_charging", "carbon_monoxide", "cold", "connectivity", "door", "garage_door",
                  "gas", "heat", "light", "lock", "moisture", "motion", "moving", "occupancy", "opening", "plug",
                  "power", "presence", "problem", "running", "safety", "smoke", "sound", "tamper", "update",
                  "vibration", "window"}
SENSOR_CLASSES = {"signal_strength", None}
STATE_CLASSES = {"measurement", "total_increasing", None}
CATEGORIES = {"diagnostic", "config", None}
UNITS = {"signal_strength": {"dBm", "dB"}}


def per_component(node: NodeInfo) -> dict[str, dict]:
    return {**node_configs(DT, "component", TOPICS, node, 120),
            **bridge_configs(DT, "component", TOPICS)}


def check_component(platform: str, cfg: dict) -> None:
    assert REQUIRED[platform] <= set(cfg), (platform, cfg)
    assert cfg["origin"]["name"] == "ruview-bridge" and cfg["origin"]["sw"]
    assert cfg["device"]["identifiers"] and cfg["device"]["name"]
    if platform == "binary_sensor":
        assert cfg.get("device_class") in BINARY_CLASSES
    if platform == "sensor":
        assert cfg.get("device_class") in SENSOR_CLASSES
        assert cfg.get("state_class") in STATE_CLASSES
        if cfg.get("device_class") in UNITS:
            assert cfg["unit_of_measurement"] in UNITS[cfg["device_class"]]
    assert cfg.get("entity_category") in CATEGORIES
    if platform == "event":
        assert set(cfg["event_types"]) <= set(EVENT_TYPES)
    if platform == "number":
        assert cfg["min"] < cfg["max"] and cfg["step"] > 0 and "{{ value }}" in cfg["command_template"]
    assert "retain" not in cfg  # commands are never retained


def test_anonymous_node_entities_follow_the_schema():
    configs = per_component(NodeInfo(3, "kitchen", "Kitchen", ANON, mode=0))
    unique = [c["unique_id"] for c in configs.values() if "unique_id" in c]
    assert len(unique) == len(set(unique)) == len(configs)
    objects = set()
    for topic, cfg in configs.items():
        prefix, platform, key, object_id, last = topic.split("/")
        assert prefix == "homeassistant" and last == "config"
        check_component(platform, cfg)
        objects.add((platform, object_id))
    assert {("binary_sensor", "presence"), ("binary_sensor", "occupancy"), ("binary_sensor", "motion"),
            ("sensor", "breathing"), ("sensor", "heart_rate"), ("sensor", "rssi"), ("event", "event"),
            ("button", "calibrate"), ("number", "enter_ratio")} <= objects
    breathing = configs["homeassistant/sensor/ruview_ruview_node_3/breathing/config"]
    assert breathing["unit_of_measurement"] == "br/min" and "device_class" not in breathing
    heart = configs["homeassistant/sensor/ruview_ruview_node_3/heart_rate/config"]
    assert heart["unit_of_measurement"] == "bpm" and heart["state_class"] == "measurement"
    presence = configs["homeassistant/binary_sensor/ruview_ruview_node_3/presence/config"]
    assert presence["availability_mode"] == "all" and [a["topic"] for a in presence["availability"]] == [
        "ruview/bridge/state", "ruview/node/kitchen/availability"]
    assert presence["device"]["suggested_area"] == "Kitchen"
    assert presence["device"]["via_device"] == "ruview_bridge_ruview"


def test_restricted_node_announces_no_vitals_but_every_event():
    configs = per_component(NodeInfo(4, "bedroom", None, RESTRICTED))
    assert not [t for t in configs if "/breathing/" in t or "/heart_rate/" in t]
    assert "homeassistant/binary_sensor/ruview_ruview_node_4/presence/config" in configs
    event = configs["homeassistant/event/ruview_ruview_node_4/event/config"]
    # the events cross at Restricted (without scores, see test_privacy): fall and activity pattern too
    assert set(event["event_types"]) == set(EVENT_TYPES)
    triggers = device_triggers(DT, TOPICS, NodeInfo(4, "bedroom", None, RESTRICTED))
    assert {t["payload"] for t in triggers.values()} == set(EVENT_TYPES)


def test_unique_ids_do_not_change_with_the_name():
    before = per_component(NodeInfo(3, "kitchen", None, ANON))
    after = per_component(NodeInfo(3, "cooking", None, ANON))
    assert set(before) == set(after)
    assert {c["unique_id"] for c in before.values()} == {c["unique_id"] for c in after.values()}


def test_device_mode_is_one_config_with_components():
    [(topic, cfg)] = node_configs(DT, "device", TOPICS, NodeInfo(3, "kitchen", None, ANON),
                                  120).items()
    assert topic == "homeassistant/device/ruview_ruview_node_3/config"
    assert cfg["origin"]["name"] == "ruview-bridge" and cfg["device"]["name"] == "Kitchen"
    for object_id, comp in cfg["components"].items():
        check_component(comp["platform"], {**comp, "origin": cfg["origin"], "device": cfg["device"]})


@pytest.mark.parametrize("event", EVENT_TYPES)
def test_device_triggers_match_the_event_type(event):
    triggers = device_triggers(DT, TOPICS, NodeInfo(3, "kitchen", None, ANON))
    t = triggers[f"homeassistant/device_automation/ruview_ruview_node_3/{event}/config"]
    assert t["automation_type"] == "trigger" and t["topic"] == "ruview/node/kitchen/event"
    assert t["payload"] == event and t["value_template"] == "{{ value_json.event_type }}" and t["device"]
