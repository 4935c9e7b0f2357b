"""Config loading: defaults, merging, validation messages, secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.catalog import load_config, sections, validate_config
from bridge.config import ConfigError, defaults, redacted, secret_values

SHIPPED = Path(__file__).resolve().parents[1] / "config.yaml"


def _problems(raw, env=None) -> list[str]:
    with pytest.raises(ConfigError) as err:
        validate_config(raw, "my.yaml", env=env or {})
    lines = str(err.value).splitlines()
    assert lines == err.value.lines and all(line.startswith("my.yaml: ") for line in lines)
    return [line.removeprefix("my.yaml: ") for line in lines]


def test_partial_file_is_merged_over_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("mqtt:\n  base_topic: home/ruview\n  tls:\n    verify: false\n")
    cfg = load_config(path, env={})
    assert cfg.mqtt.base_topic == "home/ruview"
    assert cfg.mqtt.tls.verify is False
    assert cfg.mqtt.tls.ca is None  # sibling keys keep their defaults
    assert cfg.mqtt.keepalive == defaults(sections()).mqtt.keepalive
    assert cfg.bridge == defaults(sections()).bridge


def test_an_empty_file_is_an_error_and_null_sections_mean_defaults(tmp_path):
    """An empty file is a mistake (a truncated write, the wrong file), never "all defaults": those
    would move UDP to 0.0.0.0:5005 and lose the nodes (issue 33, finding 5)."""
    path = tmp_path / "c.yaml"
    path.write_text("# nothing\n")
    with pytest.raises(ConfigError, match="is empty"):
        load_config(path, env={})
    path.write_text("mqtt:\nnodes:\n  presence:\n")
    assert load_config(path, env={}) == defaults(sections())


@pytest.mark.parametrize("raw,message", [
    ({"mqtt": {"keepalive": "abc"}}, 'mqtt.keepalive: expected a whole number 5..3600, got "abc"'),
    ({"mqtt": {"keepalive": True}}, "mqtt.keepalive: expected a whole number 5..3600, got true"),
    ({"mqtt": {"tls": {"verify": "yes"}}}, 'mqtt.tls.verify: expected true or false, got "yes"'),
    ({"mqtt": {"client_id": None, "username": None, "keepalive": None}},
     "mqtt.keepalive: expected a whole number 5..3600, got null"),
    ({"mqtt": {"embedded": {"port": 70000}}}, "mqtt.embedded.port: expected a whole number 1..65535, got 70000"),
    ({"mqtt": {"protocol": "4"}}, 'mqtt.protocol: expected one of auto, 3.1.1, 5, got "4"'),
    ({"mqtt": {"base_topic": "a/#"}}, "mqtt.base_topic: expected a topic of"),
    ({"mqtt": {"tls": "yes"}}, 'mqtt.tls: expected a mapping of keys, got "yes"'),
    ({"mqtt": {"tls": {"verfy": False}}}, "mqtt.tls.verfy: unknown key (did you mean 'verify'?)"),
    ({"nodes_typo": {}}, "nodes_typo: unknown key (did you mean 'nodes'?)"),
    ({"nodes": {"devices": {3: {"nmae": "x"}}}}, "nodes.devices.3.nmae: unknown key (did you mean 'name'?)"),
    ({"mqtt": {"embedded": {"bind": "0.0.0.0"}}}, "mqtt.embedded.bind: listening on 0.0.0.0"),
    ({"mqtt": {"tls": {"cert": str(SHIPPED)}}}, "mqtt.tls.cert: expected mqtt.tls.cert and mqtt.tls.key together"),
    ({"mqtt": {"tls": {"ca": "/nonexistent/ca.pem"}}},
     'mqtt.tls.ca: expected a file that exists (no such file), got "/nonexistent/ca.pem"'),
    ({"mqtt": {"tls": {"key": "/"}}}, "mqtt.tls.key: expected a file (this is a directory"),
    ({"mqtt": {"reconnect": {"min_delay": 10, "max_delay": 1}}}, "mqtt.reconnect.min_delay"),
    ({"nodes": {"devices": {3: {"expected_hours": ["7-23"]}}}},
     'nodes.devices.3.expected_hours: expected ranges like "07:00-23:30"'),
    ({"nodes": {"devices": {3: {"expected_hours": ["07:00-25:00"]}}}},
     "times run from 00:00 to 24:00"),
    ({"nodes": {"max_delay": 0}}, "nodes.max_delay: expected a number 0.1..3600, got 0"),
    ({"nodes": {"serial": {"desk": {"baudrate": 9600}}}}, "nodes.serial.desk.url: required, but missing"),
    ({"nodes": {"devices": {3: {"name": "hall-"}}}}, "nodes.devices.3.name: expected a name of lower-case"),
    ({"nodes": {"devices": {3: {"name": "a--b"}}}}, "nodes.devices.3.name: expected a name of lower-case"),
    ({"bridge": {"instance": "state"}}, "bridge.instance: expected a word of [a-z0-9_-]"),
    ({"homeassistant": {"discovery_prefix": "ruview"}}, "homeassistant.discovery_prefix: 'ruview' is also"),
])
def test_errors_name_the_key_and_what_was_expected(raw, message):
    problems = _problems(raw)
    assert len(problems) == 1 and message in problems[0], problems


def test_every_problem_is_reported_at_once_one_line_each():
    problems = _problems({"mqtt": {"keepalive": "x", "port": 1, "tls": {"ca": "/nope.pem"}},
                          "nodes": {"offline_after": -1}})
    assert len(problems) == 4, problems
    assert [p.split(":")[0] for p in problems] == ["mqtt.keepalive", "mqtt.tls.ca", "mqtt.port",
                                                   "nodes.offline_after"]


@pytest.mark.parametrize("raw", [
    {"mqtt": {"url": "mqtt://user:TopSecret@host"}},
    {"mqtt": {"url": "mqtts://user:TopSecret@host:8883/"}},
    {"mqtt": {"password": ["TopSecret"]}},
    {"mqtt": {"password": {"value": "TopSecret"}}},
    {"mqtt": {"password": "TopSecret", "keepalive": "TopSecret"}},
])
def test_secrets_are_never_echoed_in_errors(raw):
    problems = _problems(raw)
    assert problems and not any("TopSecret" in p for p in problems), problems


def test_environment_overrides_are_validated_like_the_file_and_named():
    problems = _problems({}, env={"RUVIEW_MQTT_USERNAME": "x" * 300})
    assert problems == ["mqtt.username (from RUVIEW_MQTT_USERNAME): expected a user name, got "
                        f'"{"x" * 97}..."'], problems


def test_secrets_from_environment_and_file(tmp_path):
    cfg = validate_config({"mqtt": {"password": "from-file"}}, env={"RUVIEW_MQTT_PASSWORD": "from-env",
                                                                    "RUVIEW_MQTT_USERNAME": "me"})
    assert cfg.mqtt.password_value() == "from-env" and cfg.mqtt.username == "me"
    secret_file = tmp_path / "pw"
    secret_file.write_text("from-secret-file\n")
    cfg = validate_config({"mqtt": {"password_file": str(secret_file)}}, env={})
    assert cfg.mqtt.password_value() == "from-secret-file"
    assert _problems({"mqtt": {"password_file": str(tmp_path / "nope")}}) == [
        f'mqtt.password_file: expected a file that exists (no such file), got "{tmp_path / "nope"}"']
    too_long = "x" * 300  # longer than a file name may be: a config error, not a crash
    [problem] = _problems({"mqtt": {"password_file": too_long}})
    assert problem.startswith("mqtt.password_file: expected a file path this system can open (File name too long)")


def test_redacted_copy_hides_secrets_only():
    cfg = validate_config({"mqtt": {"username": "bridge", "password": "hunter22"}}, env={})
    safe = redacted(cfg)
    assert safe["mqtt"]["password"] == "***" and safe["mqtt"]["username"] == "bridge"
    assert "hunter22" not in str(safe) and "hunter22" not in repr(cfg)
    assert cfg.mqtt.password_value() == "hunter22"  # the original is untouched
    assert secret_values(cfg) == ["hunter22"]
    assert redacted(validate_config({}, env={}))["mqtt"]["password"] is None


def test_non_loopback_embedded_broker_allowed_with_credentials():
    cfg = validate_config({"mqtt": {"username": "u", "password": "longenough",
                                    "embedded": {"bind": "0.0.0.0"}}}, env={})
    assert cfg.mqtt.embedded.bind == "0.0.0.0"


def test_shipped_config_yaml_is_exactly_the_defaults(monkeypatch):
    monkeypatch.delenv("RUVIEW_HTTP_DEFAULT_PORT")  # the suite's own (no fixed port in tests)
    assert load_config(SHIPPED, env={}) == defaults(sections()), "config.yaml and the schema disagree"


def test_each_feature_owns_its_section_and_config_imports_none():
    import ast
    config_dir = Path(__file__).resolve().parents[1] / "bridge" / "config"
    for module in config_dir.glob("*.py"):
        tree = ast.parse(module.read_text())
        imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
        assert not [m for m in imported if m.startswith(("bridge.nodes", "bridge.homeassistant"))], module
    assert {"nodes", "homeassistant"} <= set(sections())


@pytest.mark.parametrize("raw,message", [
    ({"nodes": {"devices": {3: {"name": "kitchen", "privacy_class": "raw"}}}},
     "nodes.devices.3.privacy_class: node 3 (kitchen) is raw (0)"),
    ({"nodes": {"devices": {4: {"privacy_class": 1}}}}, "nodes.devices.4.privacy_class: node 4 is derived (1)"),
    ({"nodes": {"privacy_class": "derived"}}, "nodes.privacy_class: the default class is derived (1)"),
    ({"nodes": {"privacy_class": True}}, "nodes.privacy_class: expected raw, derived"),
    ({"nodes": {"devices": {0: {}}}}, "nodes.devices.0: key must be a node id 1..255, got 0"),
    ({"nodes": {"devices": {True: {}}}}, "key must be a node id 1..255, got true"),
    ({"nodes": {"devices": {1: {"name": "a"}, 2: {"name": "a"}}}}, "share a name"),
    ({"nodes": {"devices": {1: {"name": "node_2"}, 2: {}}}}, "nodes.devices.1.name: 'node_2' is node 2's"),
])
def test_privacy_and_node_rules(raw, message):
    problems = _problems(raw)
    assert any(message in p for p in problems), problems


@pytest.mark.parametrize("room", ["bad\x00room", "esc\x1b[31m", "evil\u202egnp", "x" * 65, ""])
def test_a_configured_room_follows_the_same_rule_as_a_requested_one(room):
    with pytest.raises(ConfigError, match="nodes.devices.1.room: expected a room name"):
        validate_config({"nodes": {"devices": {1: {"room": room}}}}, "test", env={})
    assert validate_config({"nodes": {"devices": {1: {"room": "Küche"}}}}, "test", env={})
