"""The same plugin written in each PDK language (C, Rust, AssemblyScript) lives the same life on a real
Mosquitto: it registers its entity, writes its state (the state machine and MQTT see it), takes
service calls, unloads, loads and reloads — the seed's P2 test, for every language."""

from __future__ import annotations

import pytest

from tests.homeassistant.test_discovery_schema import check_component
from tests.plugins.helpers import PLUGINS
from tests.plugins.test_lifecycle import ENTRY, status
from tests.plugins.test_plugins_e2e import plugin_bridge, publisher  # noqa: F401 (fixtures)
from tests.polling import wait_until
from tests.test_hostile_input import pub, request

# the one threshold-alert plugin (domain threshold_alert), written in each language
PORTS = [name for name in ("threshold-alert", "threshold-alert-rust", "threshold-alert-as")
         if (PLUGINS / name).is_dir()]
CONFIG_TOPIC = "homeassistant/binary_sensor/ruview_ruview_plugin_threshold_alert/hall_too_warm/config"


@pytest.mark.parametrize("port", PORTS)
def test_a_plugin_in_each_language_registers_writes_state_and_lives_through_the_bridge_requests(
        port, mosquitto, plugin_bridge, make_probe, publisher, tmp_path):  # noqa: F811
    plugins = tmp_path / "plugins"
    publisher.install(port, plugins)
    probe = make_probe(mosquitto, "ruview/plugin/+/status", "ruview/bridge/response/#", "homeassistant/#",
                       "ruview/state/binary_sensor.hall_too_warm", "ruview/service/+/+/response")
    entry = {"threshold_alert": {**ENTRY["threshold_alert"], "name": 'Hall "too" warm \u00e9'}}
    bridge, host, _ = plugin_bridge(mosquitto, {"dirs": [str(plugins)], "trusted_keys": [publisher.public],
                                                "entries": entry, "watch": False})
    running = status(probe, "threshold_alert", lambda s: s["state"] == "running", 10)
    assert running["trust"] == "signed" and running["cog_id"].startswith("ruview.threshold-alert")
    # registers an entity: announced to Home Assistant, its name decoded and encoded again intact
    config = probe.wait_topic(CONFIG_TOPIC, 10, match=lambda m: bool(m.payload)).json()
    check_component("binary_sensor", config)
    assert config["name"] == 'Hall "too" warm \u00e9' and config["device_class"] == "problem"
    # writes its state: the state machine and MQTT see it
    pub(mosquitto, "ruview/state/sensor.hall_temperature", {"state": "30.5", "attributes": {}})
    assert wait_until(lambda: (s := bridge.states.get("binary_sensor.hall_too_warm")) and s.state == "on", 5)
    on = probe.wait_topic("ruview/state/binary_sensor.hall_too_warm", 5, match=lambda m: m.json()["state"] == "on")
    assert on.json()["attributes"]["device_class"] == "problem"
    pub(mosquitto, "ruview/state/sensor.hall_temperature", {"state": "25", "attributes": {}})  # between: holds
    pub(mosquitto, "ruview/state/sensor.hall_temperature", {"state": "unavailable", "attributes": {}})
    pub(mosquitto, "ruview/state/sensor.hall_temperature", {"state": "-35", "attributes": {}})
    assert wait_until(lambda: bridge.states.get("binary_sensor.hall_too_warm").state == "off", 5)
    # its registered service, called like any other; an unknown one is not found
    pub(mosquitto, "ruview/service/threshold_alert/reset", {"id": "r1", "data": {}})
    answer = probe.wait_topic("ruview/service/threshold_alert/reset/response", 5,
                              match=lambda m: m.json().get("id") == "r1").json()
    assert answer["success"], answer
    # the bridge requests: unload, load, reload (from the compile cache)
    gone = request(mosquitto, probe, "plugin/unload", {"domain": "threshold_alert"}, 2)
    assert gone["status"] == "ok" and host.plugins == {}
    loaded = request(mosquitto, probe, "plugin/load", {"path": str(plugins / port)}, 3)
    assert loaded["status"] == "ok" and loaded["data"]["state"] == "running", loaded
    again = request(mosquitto, probe, "plugin/reload", {"domain": "threshold_alert"}, 4)
    assert again["status"] == "ok" and host.plugins["threshold_alert"].compiled == "cache"
    pub(mosquitto, "ruview/state/sensor.hall_temperature", {"state": "27", "attributes": {}})
    assert wait_until(lambda: bridge.states.get("binary_sensor.hall_too_warm").state == "on", 5)
    health = host.plugins["threshold_alert"].health()
    assert health["crashes"] == 0 and health["denied"] == 0


@pytest.mark.parametrize("port", PORTS)
def test_a_plugin_in_each_language_refuses_entry_data_it_cannot_use(port, mosquitto, plugin_bridge, make_probe,  # noqa: F811
                                                                     publisher, tmp_path):  # noqa: F811
    plugins = tmp_path / "plugins"
    publisher.install(port, plugins)
    probe = make_probe(mosquitto, "ruview/plugin/+/status")
    # low above high: the plugin's own check (setup_entry answers -5), as the config schema cannot say it
    entry = {"threshold_alert": {**ENTRY["threshold_alert"], "low": 30}}
    plugin_bridge(mosquitto, {"dirs": [str(plugins)], "trusted_keys": [publisher.public], "entries": entry,
                              "watch": False})
    failed = status(probe, "threshold_alert", lambda s: s["state"] == "failed", 10)
    assert "-5" in failed["reason"] or "invalid" in failed["reason"], failed
