"""Foreign discovery configs parsed into entities, and the exact commands services produce."""

from __future__ import annotations

import orjson
import pytest

from bridge.homeassistant import commands
from bridge.homeassistant.entities import parse_config, render_value
from tests.homeassistant.fixtures import CONFIGS


def entities():
    out = {}
    for topic, payload in CONFIGS.items():
        for e in parse_config(topic, payload, "homeassistant"):
            out[e.entity_id] = e
    return out


def test_fixture_configs_become_entities_with_names_areas_and_topics():
    es = entities()
    assert set(es) == {"light.living_room_lamp", "switch.coffee_plug", "binary_sensor.hall_pir_occupancy",
                       "sensor.hall_pir_temperature", "switch.tasmota_a1b2c3_desk_fan_socket",
                       "light.tasmota_d4e5f6_hall_dimmer", "fan.bedroom_esp_bedroom_fan"}
    lamp = es["light.living_room_lamp"]
    assert lamp.is_json_light and lamp.name == "Living room lamp" and lamp.area == "Living room"
    assert lamp.get("brightness_scale") == 254 and lamp.origin == "Zigbee2MQTT"
    plug = es["switch.tasmota_a1b2c3_desk_fan_socket"]  # abbreviations expanded
    assert plug.get("command_topic") == "cmnd/tasmota_A1B2C3/POWER" and plug.area == "Office"
    fan = es["fan.bedroom_esp_bedroom_fan"]  # "~" resolved
    assert fan.get("state_topic") == "bedroom-esp/fan/bedroom_fan/state"
    assert fan.get("percentage_command_topic") == "bedroom-esp/fan/bedroom_fan/speed_level/command"


def test_device_config_with_components_gives_one_entity_per_component():
    payload = {"dev": {"ids": "hub1", "name": "Hub", "sa": "Garage"}, "o": {"name": "some-hub"},
               "cmps": {"door": {"p": "binary_sensor", "dev_cla": "door", "uniq_id": "hub1_door",
                                 "stat_t": "hub/door"},
                        "light": {"p": "light", "uniq_id": "hub1_light", "cmd_t": "hub/light/set",
                                  "schema": "json"}}}
    found = {e.entity_id: e for e in parse_config("homeassistant/device/hub1/config", payload, "homeassistant")}
    assert set(found) == {"binary_sensor.hub", "light.hub"}
    assert all(e.area == "Garage" and e.origin == "some-hub" for e in found.values())


@pytest.mark.parametrize("template,payload,expected", [
    ("{{ value_json.state }}", b'{"state":"ON"}', "ON"),
    ("{{value_json.POWER}}", b'{"POWER":"OFF"}', "OFF"),
    ("{{ value_json['a'][\"b\"] }}", b'{"a":{"b":3}}', 3),
    ("{{ value }}", b"21.5", "21.5"),
    (None, b"OFF", "OFF"),
    ("{{ value_json.missing }}", b'{"state":"ON"}', None),
])
def test_plain_templates(template, payload, expected):
    value_json = orjson.loads(payload) if payload[:1] == b"{" else None
    assert render_value(template, payload, value_json) == expected


def test_json_light_brightness_pct_uses_the_device_scale():
    lamp = entities()["light.living_room_lamp"]
    [cmd] = commands.light_on(lamp, {"brightness_pct": 50})
    assert cmd.topic == "zigbee2mqtt/Living room lamp/set"
    assert orjson.loads(cmd.payload) == {"state": "ON", "brightness": 127}  # 50 % of 254
    full = commands.light_on(lamp, {"brightness_pct": 50, "color_name": "red", "transition": 2})[0]
    assert orjson.loads(full.payload) == {"state": "ON", "brightness": 127,
                                          "color": {"r": 255, "g": 0, "b": 0}, "transition": 2}


def test_json_light_on_the_default_scale_gets_128_for_half():
    cfg = dict(CONFIGS["homeassistant/light/0x00158d0001a2b3c4/light/config"])
    del cfg["brightness_scale"]
    [lamp] = parse_config("homeassistant/light/x/light/config", cfg, "homeassistant")
    assert commands.light_on(lamp, {"brightness_pct": 50})[0].payload == b'{"state":"ON","brightness":128}'


def test_default_schema_light_sends_brightness_then_on_to_their_topics():
    dimmer = entities()["light.tasmota_d4e5f6_hall_dimmer"]
    cmds = commands.light_on(dimmer, {"brightness_pct": 50})
    assert [(c.topic, c.payload) for c in cmds] == [("cmnd/tasmota_D4E5F6/Dimmer", b"50"),
                                                    ("cmnd/tasmota_D4E5F6/POWER", b"ON")]
    assert [(c.topic, c.payload) for c in commands.light_off(dimmer, {})] == [
        ("cmnd/tasmota_D4E5F6/POWER", b"OFF")]


def test_switch_and_fan_payloads():
    es = entities()
    assert commands.switch_on(es["switch.coffee_plug"], {})[0].payload == b"ON"
    cmds = commands.fan_on(es["fan.bedroom_esp_bedroom_fan"], {"percentage": 40})
    assert [(c.topic, c.payload) for c in cmds] == [("bedroom-esp/fan/bedroom_fan/command", b"ON"),
                                                    ("bedroom-esp/fan/bedroom_fan/speed_level/command", b"40")]


@pytest.mark.parametrize("data,message", [
    ({"brightness_pct": 150}, "brightness_pct must be a number 0..100"),
    ({"color_name": "ultraviolet"}, "unknown color_name"),
    ({"rgb_color": [1, 2]}, "rgb_color must be"),
])
def test_bad_service_data_is_refused(data, message):
    with pytest.raises(commands.CommandError, match=message):
        commands.light_on(entities()["light.living_room_lamp"], data)
