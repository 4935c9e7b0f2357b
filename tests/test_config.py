"""Config loading: defaults, merging, validation messages, secrets."""

from __future__ import annotations

import pytest

from bridge.config import ConfigError, defaults, load_config, redacted, secret_values, validate_config


def test_partial_file_is_merged_over_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("mqtt:\n  base_topic: home/ruview\n  tls:\n    verify: false\n")
    cfg = load_config(path, env={})
    assert cfg["mqtt"]["base_topic"] == "home/ruview"
    assert cfg["mqtt"]["tls"]["verify"] is False
    assert cfg["mqtt"]["tls"]["ca"] is None  # sibling keys keep their defaults
    assert cfg["mqtt"]["keepalive"] == defaults()["mqtt"]["keepalive"]
    assert cfg["bridge"] == defaults()["bridge"]


def test_empty_file_means_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("# nothing\n")
    assert load_config(path, env={}) == defaults()


@pytest.mark.parametrize("raw,message", [
    ({"mqtt": {"keepalive": "abc"}}, 'mqtt.keepalive: expected an integer 5..3600, got "abc"'),
    ({"mqtt": {"keepalive": True}}, "mqtt.keepalive: expected an integer 5..3600, got True"),
    ({"mqtt": {"embedded": {"port": 70000}}}, "mqtt.embedded.port: expected an integer 1..65535, got 70000"),
    ({"mqtt": {"protocol": "4"}}, 'mqtt.protocol: expected one of auto, 3.1.1, 5, got "4"'),
    ({"mqtt": {"base_topic": "a/#"}}, "mqtt.base_topic: expected a topic of"),
    ({"mqtt": {"url": "mqtt://u:p@host"}}, "mqtt.url: expected a URL without credentials"),
    ({"mqtt": {"tls": "yes"}}, 'mqtt.tls: expected a mapping of keys, got "yes"'),
    ({"mqtt": {"tls": {"verfy": False}}}, "mqtt.tls.verfy: unknown key (did you mean 'verify'?)"),
    ({"nodes_typo": {}}, "nodes_typo: unknown key (did you mean 'nodes'?)"),
    ({"mqtt": {"embedded": {"bind": "0.0.0.0"}}}, "mqtt.embedded.bind: listening on 0.0.0.0"),
    ({"mqtt": {"tls": {"cert": "c.pem"}}}, "mqtt.tls.cert: expected mqtt.tls.cert and mqtt.tls.key together"),
    ({"mqtt": {"reconnect": {"min_delay": 10, "max_delay": 1}}}, "mqtt.reconnect.min_delay"),
    ({"nodes": {"devices": {3: {"expected_hours": ["7-23"]}}}},
     'nodes.devices.3.expected_hours: expected ranges like "07:00-23:30"'),
    ({"nodes": {"devices": {3: {"expected_hours": ["07:00-25:00"]}}}},
     "times run from 00:00 to 24:00"),
    ({"nodes": {"max_delay": 0}}, "nodes.max_delay: expected a number 0.1..3600, got 0"),
])
def test_errors_name_the_key_and_what_was_expected(raw, message):
    with pytest.raises(ConfigError) as err:
        validate_config(raw, "my.yaml", env={})
    text = str(err.value)
    assert text.startswith("my.yaml: ") and message in text and "\n" not in text


def test_several_problems_are_counted_in_one_line():
    with pytest.raises(ConfigError, match=r"\(and 2 more problems\)$"):
        validate_config({"mqtt": {"keepalive": "x", "port": 1, "qos": 2}}, "c.yaml", env={})


def test_secrets_from_environment_and_file(tmp_path):
    cfg = validate_config({"mqtt": {"password": "from-file"}}, env={"RUVIEW_MQTT_PASSWORD": "from-env",
                                                                    "RUVIEW_MQTT_USERNAME": "me"})
    assert cfg["mqtt"]["password"] == "from-env" and cfg["mqtt"]["username"] == "me"
    secret_file = tmp_path / "pw"
    secret_file.write_text("from-secret-file\n")
    cfg = validate_config({"mqtt": {"password_file": str(secret_file)}}, env={})
    assert cfg["mqtt"]["password"] == "from-secret-file"
    with pytest.raises(ConfigError, match="mqtt.password_file: cannot read"):
        validate_config({"mqtt": {"password_file": str(tmp_path / "nope")}}, env={})


def test_redacted_copy_hides_secrets_only():
    cfg = validate_config({"mqtt": {"username": "bridge", "password": "hunter22"}}, env={})
    safe = redacted(cfg)
    assert safe["mqtt"]["password"] == "***" and safe["mqtt"]["username"] == "bridge"
    assert cfg["mqtt"]["password"] == "hunter22"  # the original is untouched
    assert secret_values(cfg) == ["hunter22"]


def test_non_loopback_embedded_broker_allowed_with_credentials():
    cfg = validate_config({"mqtt": {"username": "u", "password": "longenough",
                                    "embedded": {"bind": "0.0.0.0"}}}, env={})
    assert cfg["mqtt"]["embedded"]["bind"] == "0.0.0.0"


def test_shipped_config_yaml_is_exactly_the_defaults():
    from pathlib import Path
    shipped = Path(__file__).resolve().parents[1] / "config.yaml"
    assert load_config(shipped, env={}) == defaults(), "config.yaml and the schema disagree"


@pytest.mark.parametrize("raw,message", [
    ({"nodes": {"devices": {3: {"name": "kitchen", "privacy_class": "raw"}}}},
     "nodes.devices.3.privacy_class: node 3 (kitchen) is raw (0)"),
    ({"nodes": {"devices": {4: {"privacy_class": 1}}}}, "nodes.devices.4.privacy_class: node 4 is derived (1)"),
    ({"nodes": {"privacy_class": "derived"}}, "nodes.privacy_class: class 1 may not be exported"),
    ({"nodes": {"devices": {0: {}}}}, "nodes.devices.0: key must be a node id 1..255"),
    ({"nodes": {"devices": {1: {"name": "a"}, 2: {"name": "a"}}}}, "share a name"),
])
def test_privacy_and_node_rules(raw, message):
    with pytest.raises(ConfigError) as err:
        validate_config(raw, "c.yaml", env={})
    assert message in str(err.value)
