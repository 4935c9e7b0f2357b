"""A manifest's config_schema: checked itself when the manifest is read, covered by the signature,
and the entry data checked against it before setup_entry — every problem at once, with its path."""

from __future__ import annotations

import orjson
import pytest

from bridge.plugins import trust
from bridge.plugins.manifest import ManifestError, load_manifest, parse_manifest
from bridge.plugins.schema import entry_problem, form, schema_problems, validate
from tests.plugins.helpers import PLUGINS
from tests.plugins.test_lifecycle import ENTRY, status
from tests.plugins.test_plugins_e2e import plugin_bridge, publisher  # noqa: F401 (fixtures)

SCHEMA = load_manifest(PLUGINS / "threshold-alert").config_schema


def test_entry_data_is_checked_whole_and_every_problem_names_its_path_and_why():
    assert SCHEMA is not None
    assert validate(ENTRY["threshold_alert"], SCHEMA) == []
    bad = {"sensor": "hall", "high": "warm", "alert": "sensor.hall_too_warm", "name": "", "colour": "red"}
    problems = validate(bad, SCHEMA, "plugins.entries.threshold_alert")
    assert problems == [
        "plugins.entries.threshold_alert.low: required, and missing",
        'plugins.entries.threshold_alert.sensor: "hall" is not an entity id like sensor.hall',
        'plugins.entries.threshold_alert.high: expected a number, got "warm"',
        'plugins.entries.threshold_alert.alert: "sensor.hall_too_warm" is not a binary_sensor entity',
        "plugins.entries.threshold_alert.name: shorter than 1 characters",
        "plugins.entries.threshold_alert.colour: not a setting of this plugin "
        "(its settings: sensor, high, low, alert, name)"], problems
    assert validate([], SCHEMA) == ["data: expected an object, got []"]
    assert validate({**ENTRY["threshold_alert"], "high": True}, SCHEMA) == ["data.high: expected a number, got True"]


def test_ranges_enums_integers_arrays_and_the_room_picker():
    schema = {"type": "object", "properties": {
        "delay": {"type": "integer", "minimum": 1, "maximum": 60},
        "ratio": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        "mode": {"enum": ["fast", "slow"]},
        "rooms": {"type": "array", "maxItems": 2, "items": {"type": "string", "format": "room"}},
        "lights": {"type": "object", "propertyNames": {"format": "room"},
                   "additionalProperties": {"type": "string", "format": "entity_id", "domain": ["light", "switch"]}}}}
    assert schema_problems(schema) == []
    assert validate({"delay": 5.0, "ratio": 0.5, "mode": "fast", "rooms": ["Hall"],
                     "lights": {"Hall": "switch.hall_lamp"}}, schema) == []
    problems = validate({"delay": 61.5, "ratio": 1, "mode": "turbo", "rooms": ["Hall", " Kitchen", "Den"],
                         "lights": {"Hall\u202e": "lock.front_door"}}, schema)
    assert problems[:2] == ["data.delay: expected an integer, got 61.5", "data.ratio: 1 must be below 1"], problems
    assert 'data.mode: "turbo" is not one of "fast", "slow"' in problems
    assert "data.rooms: more than 2 items" in problems
    assert any(p.startswith("data.rooms[1]: expected a room name") for p in problems)
    assert any(p.startswith("data.lights.Hall\u202e (the name): expected a room name") for p in problems)
    assert 'data.lights.Hall\u202e: "lock.front_door" is not a light or switch entity' in problems
    too_many = validate({f"k{i}": i for i in range(30)}, {"type": "object", "additionalProperties": False})
    assert len(too_many) == 21 and too_many[-1] == "... and 10 more"


def test_a_schema_the_bridge_cannot_check_is_a_manifest_error_naming_the_keyword():
    raw = orjson.loads((PLUGINS / "threshold-alert" / "manifest.json").read_bytes())
    raw["config_schema"] = {"type": "object", "properties": {"high": {"type": "float", "pattern": "(a+)+$"},
                                                             "alert": {"format": "email", "domain": "light"}}}
    with pytest.raises(ManifestError) as err:
        parse_manifest(orjson.dumps(raw), "p/manifest.json")
    text = str(err.value)
    for expected in ("config_schema.properties.high.type: expected one of object, string",
                     "config_schema.properties.high.pattern: not supported",
                     "config_schema.properties.alert.format: expected one of entity_id, room",
                     'config_schema.properties.alert.domain: an entity domain (or a list of them), with "format"'):
        assert f"p/manifest.json: {expected}" in text, text


def test_the_signature_covers_the_schema_and_a_manifest_without_one_signs_as_before(tmp_path, publisher):  # noqa: F811
    plugin = publisher.install("threshold-alert", tmp_path)
    module = (plugin / "plugin.wasm").read_bytes()
    manifest = load_manifest(plugin)
    assert trust.verify(manifest, module, "m", trusted_keys=[publisher.public]).how == "signed"
    assert manifest.config_schema is not None
    loosened = dict(manifest.config_schema, required=[])
    with pytest.raises(trust.TrustError, match="signature does not verify"):
        trust.verify(manifest.model_copy(update={"config_schema": loosened}), module, "m",
                     trusted_keys=[publisher.public])
    without = manifest.model_copy(update={"config_schema": None})
    assert "config_schema" not in without.security_fields()  # what plugins signed before it existed


def test_entry_problem_says_where_the_data_lives():
    assert entry_problem(None, {"anything": 1}, "x") is None
    assert entry_problem(SCHEMA, ENTRY["threshold_alert"], "threshold_alert") is None
    why = entry_problem(SCHEMA, {}, "threshold_alert")
    assert why is not None and why.startswith("its config entry data breaks the manifest's config_schema: "
                                              "plugins.entries.threshold_alert.sensor: required, and missing; ")


def test_the_form_is_drawn_from_the_schema_with_pickers():
    fields = {f["path"]: f for f in form(SCHEMA)["fields"]}
    assert fields["sensor"]["widget"] == "entity" and fields["sensor"]["domain"] == "sensor"
    assert fields["high"]["widget"] == "number" and fields["high"]["required"]
    assert not fields["name"]["required"]
    lights = {f["path"]: f for f in form(load_manifest(PLUGINS / "presence-lights").config_schema)["fields"]}
    assert lights["off_delay_s"]["default"] == 120 and lights["lights"]["widget"] == "json"


def test_a_plugin_whose_entry_data_breaks_its_schema_does_not_start_and_says_which_field_and_why(
        mosquitto, plugin_bridge, make_probe, publisher, tmp_path):  # noqa: F811
    plugins = tmp_path / "plugins"
    publisher.install("threshold-alert-rust", plugins)
    probe = make_probe(mosquitto, "ruview/plugin/+/status")
    bad = {"threshold_alert": {**ENTRY["threshold_alert"], "high": "warm", "alert": "hall"}}
    bridge, host, _ = plugin_bridge(mosquitto, {"dirs": [str(plugins)], "trusted_keys": [publisher.public],
                                                "entries": bad, "watch": False})
    refused = status(probe, "threshold_alert", lambda s: s["state"] == "rejected", 10)
    assert "plugins.entries.threshold_alert.high: expected a number, got \"warm\"" in refused["reason"], refused
    assert "plugins.entries.threshold_alert.alert: \"hall\" is not an entity id" in refused["reason"]
    assert "threshold_alert" not in host.plugins and not bridge.services.has("threshold_alert", "reset")
