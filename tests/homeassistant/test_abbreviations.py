"""HA's MQTT discovery abbreviations: the whole table, in one place, and read as HA reads it."""

from __future__ import annotations

import pathlib
import re

import pytest

from bridge.homeassistant.abbreviations import (ABBREVIATIONS, DEVICE_ABBREVIATIONS, ORIGIN_ABBREVIATIONS,
                                                REMOVED_ABBREVIATIONS)
from bridge.homeassistant.entities import expand, parse_config

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
TABLES = {"ABBREVIATIONS": ABBREVIATIONS, "DEVICE_ABBREVIATIONS": DEVICE_ABBREVIATIONS,
          "ORIGIN_ABBREVIATIONS": ORIGIN_ABBREVIATIONS}


@pytest.mark.parametrize("short,long", [
    ("stat_t", "state_topic"), ("cmd_t", "command_topic"), ("dev", "device"), ("o", "origin"),
    ("p", "platform"), ("cmps", "components"), ("avty", "availability"), ("avty_t", "availability_topic"),
    ("json_attr_t", "json_attributes_topic"), ("pl_on", "payload_on"), ("pl_off", "payload_off"),
    ("uniq_id", "unique_id"), ("def_ent_id", "default_entity_id"), ("val_tpl", "value_template"),
    ("unit_of_meas", "unit_of_measurement"), ("dev_cla", "device_class"), ("t", "topic"),
    ("pause_mw_cmd_tpl", "pause_command_template"),  # HA's own spelling, kept as HA has it
])
def test_has_home_assistants_well_known_entries(short, long):
    assert ABBREVIATIONS[short] == long


def test_device_and_origin_tables_are_home_assistants():
    assert DEVICE_ABBREVIATIONS == {
        "cns": "connections", "cu": "configuration_url", "hw": "hw_version", "ids": "identifiers",
        "mdl": "model", "mdl_id": "model_id", "mf": "manufacturer", "name": "name", "sa": "suggested_area",
        "sn": "serial_number", "sw": "sw_version"}
    assert ORIGIN_ABBREVIATIONS == {"name": "name", "sw": "sw_version", "url": "support_url"}


def test_the_table_is_the_whole_of_home_assistants():
    assert len(ABBREVIATIONS) == 273  # HA's, at the source named in the module's header
    # HA dropped these when it removed the options (object_id in 2026.4); they are not its any more
    assert {"obj_id", "clrm", "lrst_t"}.isdisjoint(ABBREVIATIONS)


@pytest.mark.parametrize("name", TABLES)
def test_keys_and_values_are_unique_both_ways(name):
    table = TABLES[name]
    assert len(set(table.values())) == len(table), f"{name}: two short keys for one long key"
    # a short key is never another entry's long key (which would make the expansion ambiguous)
    assert {k for k in table if k in set(table.values()) and table[k] != k} == set()
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", k) and re.fullmatch(r"[a-z][a-z0-9_]*", v)
               for k, v in table.items())


def test_the_removed_abbreviations_do_not_shadow_home_assistants():
    assert set(REMOVED_ABBREVIATIONS).isdisjoint(ABBREVIATIONS)
    assert set(REMOVED_ABBREVIATIONS.values()).isdisjoint(ABBREVIATIONS.values())


def test_there_is_one_copy_of_the_table_under_bridge():
    """No other module keeps its own abbreviation copy (the old one in entities.py drifted)."""
    offenders = []
    for path in (ROOT / "bridge").rglob("*.py"):
        if path.name == "abbreviations.py":
            continue
        text = path.read_text(encoding="utf-8")
        if re.search(r"""["'](stat_t|cmd_t|uniq_id|avty_t|dev_cla)["']\s*:""", text):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


# keys the old hand-copied subset lacked, abbreviated, and the same config in full
SHORT = {
    "~": "garage/door", "name": "Door", "uniq_id": "door_1", "def_ent_id": "cover.garage_door",
    "cmd_t": "~/set", "stat_t": "~/state", "pos_t": "~/position", "set_pos_t": "~/set_position",
    "tilt_cmd_t": "~/tilt", "pl_open": "OPEN", "pl_cls": "CLOSE", "pl_stop": "STOP",
    "stat_open": "open", "stat_clsd": "closed", "pos_open": 100, "pos_clsd": 0, "opt": False,
    "ent_cat": "config", "en": True, "ic": "mdi:garage", "e": "utf-8", "sug_dsp_prc": 1,
    "avty": [{"t": "~/availability", "pl_avail": "up", "pl_not_avail": "down", "val_tpl": "{{ value }}"}],
    "dev": {"ids": ["garage_1"], "name": "Garage", "sa": "Garage", "mdl_id": "GD-2", "sn": "123",
            "hw": "rev b", "cu": "http://garage.local"},
    "o": {"name": "garage2mqtt", "sw": "1.2", "url": "https://example.com/support"},
}
LONG = {
    "~": "garage/door", "name": "Door", "unique_id": "door_1", "default_entity_id": "cover.garage_door",
    "command_topic": "~/set", "state_topic": "~/state", "position_topic": "~/position",
    "set_position_topic": "~/set_position", "tilt_command_topic": "~/tilt", "payload_open": "OPEN",
    "payload_close": "CLOSE", "payload_stop": "STOP", "state_open": "open", "state_closed": "closed",
    "position_open": 100, "position_closed": 0, "optimistic": False, "entity_category": "config",
    "enabled_by_default": True, "icon": "mdi:garage", "encoding": "utf-8", "suggested_display_precision": 1,
    "availability": [{"topic": "~/availability", "payload_available": "up", "payload_not_available": "down",
                      "value_template": "{{ value }}"}],
    "device": {"identifiers": ["garage_1"], "name": "Garage", "suggested_area": "Garage", "model_id": "GD-2",
               "serial_number": "123", "hw_version": "rev b", "configuration_url": "http://garage.local"},
    "origin": {"name": "garage2mqtt", "sw_version": "1.2", "support_url": "https://example.com/support"},
}


def test_an_abbreviated_config_reads_the_same_as_its_long_form():
    assert expand(SHORT) == expand(LONG)
    [short] = parse_config("homeassistant/cover/garage/door/config", SHORT, "homeassistant")
    [long] = parse_config("homeassistant/cover/garage/door/config", LONG, "homeassistant")
    assert short == long
    assert short.entity_id == "cover.garage_door" and short.area == "Garage" and short.origin == "garage2mqtt"
    assert short.get("set_position_topic") == "garage/door/set_position"
    assert short.device["serial_number"] == "123" and short.config["origin"]["support_url"].endswith("/support")
    assert short.get("availability")[0]["payload_not_available"] == "down"


def test_a_device_config_with_abbreviations_reads_the_same_as_its_long_form():
    def device(a: bool) -> dict:
        k = (lambda short, long: short if a else long)
        return {k("dev", "device"): {k("ids", "identifiers"): "hub2", "name": "Hub", k("mdl_id", "model_id"): "H2"},
                k("o", "origin"): {"name": "hub2mqtt", k("url", "support_url"): "https://example.com"},
                k("stat_t", "state_topic"): "hub2/state",  # shared by every component
                k("cmps", "components"): {
                    "lamp": {k("p", "platform"): "light", k("uniq_id", "unique_id"): "hub2_lamp",
                             k("cmd_t", "command_topic"): "hub2/lamp/set",
                             k("def_ent_id", "default_entity_id"): "light.hub_lamp",
                             k("clr_temp_cmd_t", "color_temp_command_topic"): "hub2/lamp/ct",
                             k("max_k", "max_kelvin"): 6500, k("fx_list", "effect_list"): ["rainbow"]},
                    "temp": {k("p", "platform"): "sensor", k("uniq_id", "unique_id"): "hub2_temp",
                             k("dev_cla", "device_class"): "temperature",
                             k("stat_cla", "state_class"): "measurement",
                             k("sug_dsp_prc", "suggested_display_precision"): 1}}}

    def read(payload: dict) -> dict:
        return {e.entity_id: e for e in parse_config("homeassistant/device/hub2/config", payload, "homeassistant")}

    short, long = read(device(True)), read(device(False))
    assert short == long and set(short) == {"light.hub_lamp", "sensor.hub"}  # unnamed: the device's name
    lamp = short["light.hub_lamp"]
    assert lamp.get("color_temp_command_topic") == "hub2/lamp/ct" and lamp.get("max_kelvin") == 6500
    assert lamp.get("state_topic") == "hub2/state" and lamp.device["model_id"] == "H2"
    assert lamp.config["origin"]["support_url"] == "https://example.com"


def test_obj_id_is_still_read_for_firmware_that_sends_it():
    payload = {"name": "Plug", "obj_id": "desk_plug", "cmd_t": "plug/set"}
    [plug] = parse_config("homeassistant/switch/plug/config", payload, "homeassistant")
    assert plug.entity_id == "switch.desk_plug"
