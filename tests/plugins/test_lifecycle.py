"""Plugin lifecycle as a user drives it: files appear, change and go; bridge requests; a restart
from the compile cache; status on MQTT; the registry agents read; the privacy gate."""

from __future__ import annotations

import json
import os
import shutil

import orjson

from bridge.core.services import ServiceError
from bridge.plugins.extension import PluginsExtension
from bridge.plugins.host import Plugin
from tests.homeassistant.test_discovery_schema import check_component
from tests.test_hostile_input import pub, request
from tests.polling import wait_until
from tests.plugins.helpers import Publisher
from tests.plugins.test_plugins_e2e import plugin_bridge, publisher  # noqa: F401 (fixtures)

ENTRY = {"threshold_alert": {"sensor": "sensor.hall_temperature", "high": 26, "low": 24,
                             "alert": "binary_sensor.hall_too_warm", "name": "Hall too warm"}}


def status(probe, domain, match=lambda s: True, timeout=5.0, since: int = 0):
    """The first status of `domain` from message number `since` on that matches."""
    topic = f"ruview/plugin/{domain}/status"

    def found(messages):
        return next((m.json() for m in messages[since:] if m.topic == topic and m.payload and match(m.json())), None)

    return found(probe.wait_for(lambda ms: found(ms) is not None, timeout, what=f"a status of {domain}"))


def test_files_appearing_changing_and_going_load_reload_and_unload(mosquitto, plugin_bridge,  # noqa: F811
                                                                    make_probe, publisher, tmp_path):  # noqa: F811
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    probe = make_probe(mosquitto, "ruview/plugin/+/status", "ruview/bridge/response/#")
    bridge, host, _ = plugin_bridge(mosquitto, {"dirs": [str(plugins)], "trusted_keys": [publisher.public],
                                                "entries": ENTRY})
    assert host.plugins == {}
    target = publisher.install("threshold-alert", tmp_path / "staging")
    shutil.move(str(target), plugins / "threshold-alert")  # appears whole, as a package manager would
    assert status(probe, "threshold_alert", lambda s: s["state"] == "running")["version"] == "1.0.0"
    assert bridge.services.has("threshold_alert", "reset")
    assert [m["cog_id"] for m in bridge.modules.all()] == ["ruview.threshold-alert"]
    assert bridge.info()["plugins"][0]["state"] == "running"

    # a new version: the manifest changes (and is signed again)
    manifest = plugins / "threshold-alert" / "manifest.json"
    raw = orjson.loads(manifest.read_bytes())
    raw["version"] = "1.0.1"
    mark = len(probe.messages)
    manifest.write_bytes(orjson.dumps(raw))
    publisher.sign(plugins / "threshold-alert")
    assert wait_until(lambda: "threshold_alert" in host.plugins and
                      host.plugins["threshold_alert"].manifest.version == "1.0.1", 10)
    # a widened permission without a new signature: refused, and 1.0.1 runs on
    raw["homecore_permissions"].append("state:write:*")
    raw["version"] = "1.0.2"
    mark = len(probe.messages)
    manifest.write_bytes(orjson.dumps(raw))
    refused = status(probe, "threshold_alert", lambda s: "refused" in (s["reason"] or ""), 10, mark)
    assert refused["state"] == "running" and refused["version"] == "1.0.1"
    assert "signature does not verify" in refused["reason"]
    assert bridge.services.has("threshold_alert", "reset")
    pub(mosquitto, "ruview/state/sensor.hall_temperature", {"state": "30", "attributes": {}})
    assert wait_until(lambda: (s := bridge.states.get("binary_sensor.hall_too_warm")) and s.state == "on", 5)
    mark = len(probe.messages)
    publisher.sign(plugins / "threshold-alert")
    assert status(probe, "threshold_alert", lambda s: s["state"] == "running" and not s["reason"], 10,
                  mark)["version"] == "1.0.2"
    mark = len(probe.messages)
    shutil.rmtree(plugins / "threshold-alert")
    assert status(probe, "threshold_alert", lambda s: s["state"] == "stopped", 10, mark)["reason"] == \
        "its directory is gone"
    assert bridge.modules.all() == []


def test_a_change_that_lands_while_a_plugin_loads_is_still_acted_on(mosquitto, plugin_bridge, make_probe,  # noqa: F811
                                                                   publisher, tmp_path, monkeypatch):  # noqa: F811
    """The watcher remembers the files as they were when they were read, not as they are once the
    plugin has started: an edit made while 1.0.1 is being verified is seen and judged afterwards."""
    plugins = tmp_path / "plugins"
    publisher.install("threshold-alert", plugins)
    probe = make_probe(mosquitto, "ruview/plugin/+/status")
    _, host, _ = plugin_bridge(mosquitto, {"dirs": [str(plugins)], "trusted_keys": [publisher.public],
                                           "entries": ENTRY})
    assert status(probe, "threshold_alert", lambda s: s["state"] == "running")["version"] == "1.0.0"
    manifest = plugins / "threshold-alert" / "manifest.json"
    widened = orjson.loads(manifest.read_bytes())
    widened["version"] = "1.0.2"
    widened["homecore_permissions"].append("state:write:*")
    compile_module, edits = host.runtime.compile, []

    def compile_while_the_file_changes(module, digest):
        if not edits:  # the first compile after the files were read: 1.0.1's
            manifest.write_bytes(orjson.dumps(widened))  # unsigned, so it must be refused
            edits.append(digest)
        return compile_module(module, digest)

    monkeypatch.setattr(host.runtime, "compile", compile_while_the_file_changes)
    signed = publisher.install("threshold-alert", tmp_path / "staging", version="1.0.1") / "manifest.json"
    mark = len(probe.messages)
    os.replace(signed, manifest)  # 1.0.1, signed, in one step
    refused = status(probe, "threshold_alert", lambda s: "refused" in (s["reason"] or ""), 10, mark)
    assert edits, "1.0.1 was never compiled"
    assert refused["state"] == "running" and refused["version"] == "1.0.1"
    assert "signature does not verify" in refused["reason"]


def test_a_plugin_says_running_only_once_its_services_are_registered_and_takes_calls_while_starting(
        mosquitto, plugin_bridge, publisher, tmp_path, monkeypatch):  # noqa: F811
    """An automation that calls a plugin's service as soon as its status says running must not be
    told the service does not exist; a call made while it starts waits for it."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    bridge, host, _ = plugin_bridge(mosquitto, {"dirs": [str(plugins)], "trusted_keys": [publisher.public],
                                                "entries": ENTRY})
    at_status, answers = [], []
    publish_status, call = host.services.publish_status, Plugin._call

    def recording_status(plugin):
        at_status.append((plugin.state, bridge.services.has("threshold_alert", "reset")))
        publish_status(plugin)

    def calling_during_setup(self, export, *buffers):
        if export == "setup_entry":  # a call that comes while the plugin starts
            try:
                answers.append(bridge.services.call("threshold_alert", "reset", {}))  # not waited for here:
                # the plugin host's inbox is starting this plugin
            except ServiceError as exc:
                answers.append(str(exc))
        return call(self, export, *buffers)

    monkeypatch.setattr(host.services, "publish_status", recording_status)
    monkeypatch.setattr(Plugin, "_call", calling_during_setup)
    target = publisher.install("threshold-alert", tmp_path / "staging")
    shutil.move(str(target), plugins / "threshold-alert")
    assert wait_until(lambda: any(state == "running" for state, _ in at_status), 10), at_status
    assert all(registered for state, registered in at_status if state == "running"), at_status
    assert [future.answer() for future in answers] == [{"queued": True}], answers


def test_bridge_requests_list_unload_load_and_reload(mosquitto, plugin_bridge, make_probe,  # noqa: F811
                                                    publisher, tmp_path):  # noqa: F811
    plugins = tmp_path / "plugins"
    publisher.install("threshold-alert", plugins)
    probe = make_probe(mosquitto, "ruview/plugin/+/status", "ruview/bridge/response/#",
                       "ruview/state/binary_sensor.hall_too_warm", "homeassistant/#", "ruview/service/+/+/response")
    bridge, host, _ = plugin_bridge(mosquitto, {"dirs": [str(plugins)], "trusted_keys": [publisher.public],
                                                "entries": ENTRY, "watch": False})
    # the entity the plugin registered, announced to Home Assistant on its own device
    config_topic = "homeassistant/binary_sensor/ruview_ruview_plugin_threshold_alert/hall_too_warm/config"
    config = probe.wait_topic(config_topic, 10, match=lambda m: bool(m.payload)).json()
    check_component("binary_sensor", config)
    assert config["name"] == "Hall too warm" and config["device_class"] == "problem"
    assert config["state_topic"] == "ruview/state/binary_sensor.hall_too_warm"
    assert config["device"]["name"] == "RuView plugin Threshold alert"
    listed = request(mosquitto, probe, "plugin/list", {}, 1)
    assert listed["status"] == "ok" and [p["domain"] for p in listed["data"]["plugins"]] == ["threshold_alert"]
    assert listed["data"]["plugins"][0]["trust"] == "signed"

    pub(mosquitto, "ruview/state/sensor.hall_temperature", {"state": "30", "attributes": {}})
    assert wait_until(lambda: (s := bridge.states.get("binary_sensor.hall_too_warm")) and s.state == "on", 5)

    gone = request(mosquitto, probe, "plugin/unload", {"domain": "threshold_alert"}, 2)
    assert gone["status"] == "ok" and host.plugins == {}
    assert status(probe, "threshold_alert", lambda s: s["state"] == "stopped")["reason"] == "unloaded by request"
    assert probe.wait_topic(config_topic, 5, match=lambda m: m.payload == b"").retain is not None  # cleared
    assert bridge.mqtt.connected
    pub(mosquitto, "ruview/state/sensor.hall_temperature", {"state": "10", "attributes": {}})
    assert wait_until(lambda: bridge.states.get("sensor.hall_temperature").state == "10", 5)
    # a request answered by the plugin host's own inbox comes after that state change went through it
    assert request(mosquitto, probe, "plugin/list", {}, 20)["data"]["plugins"] == []
    assert bridge.states.get("binary_sensor.hall_too_warm").state == "on"

    bad = request(mosquitto, probe, "plugin/unload", {"domain": "nope"}, 3)
    assert bad["status"] == "error" and "no plugin 'nope' is loaded" in bad["error"]
    missing = request(mosquitto, probe, "plugin/load", {"path": str(tmp_path / "nowhere")}, 4)
    assert missing["status"] == "error" and "no manifest.json there" in missing["error"]
    loaded = request(mosquitto, probe, "plugin/load", {"path": str(plugins / "threshold-alert")}, 5)
    assert loaded["status"] == "ok" and loaded["data"]["state"] == "running"
    # the plugin's registered service, called like any other
    pub(mosquitto, "ruview/service/threshold_alert/reset", {"id": "r1", "data": {}})
    answer = probe.wait_topic("ruview/service/threshold_alert/reset/response", 5).json()
    assert answer["id"] == "r1" and answer["success"], answer
    again = request(mosquitto, probe, "plugin/reload", {"domain": "threshold_alert"}, 6)
    assert again["status"] == "ok" and host.plugins["threshold_alert"].compiled == "cache"
    pub(mosquitto, "ruview/state/sensor.hall_temperature", {"state": "10.5", "attributes": {}})
    assert wait_until(lambda: bridge.states.get("binary_sensor.hall_too_warm").state == "off", 5)


def test_a_restart_starts_from_the_compile_cache_and_ignores_a_cache_file_it_did_not_write(
        mosquitto, plugin_bridge, make_probe, publisher, tmp_path):  # noqa: F811
    plugins = tmp_path / "plugins"
    publisher.install("presence-lights", plugins)
    settings = {"dirs": [str(plugins)], "trusted_keys": [publisher.public], "watch": False}
    bridge, host, _ = plugin_bridge(mosquitto, settings)
    assert host.plugins["presence_lights"].compiled.startswith("compiled in")
    bridge.stop()
    bridge, host, _ = plugin_bridge(mosquitto, settings)
    assert host.plugins["presence_lights"].compiled == "cache"
    bridge.stop()
    cached = [p for p in (tmp_path / "cache").iterdir() if p.suffix == ".cwasm"]
    assert len(cached) == 1 and (cached[0].stat().st_mode & 0o077) == 0
    cached[0].write_bytes(b"\x7fELF not ours" + cached[0].read_bytes()[12:])  # someone else's native code
    bridge, host, _ = plugin_bridge(mosquitto, settings)
    assert host.plugins["presence_lights"].compiled.startswith("compiled in")
    assert host.plugins["presence_lights"].state == "running"


def test_a_plugin_on_node_topics_sees_a_restricted_node_without_its_vitals(mosquitto, plugin_bridge,  # noqa: F811
                                                                           make_probe, tmp_path):
    publisher = Publisher(tmp_path)
    plugins = tmp_path / "plugins"
    # threshold-alert, also subscribed to node state: it gets each as an mqtt_message event
    plugin = publisher.install("threshold-alert", plugins, subscriptions=["ruview/node/+"],
                               homecore_permissions=["state:read:sensor.*", "state:write:binary_sensor.*",
                                                     "entity:register", "mqtt:subscribe:ruview/node/+"])
    received = []
    bridge, host, udp = plugin_bridge(mosquitto, {"dirs": [str(plugins)], "trusted_keys": [publisher.public],
                                                  "entries": ENTRY},
                                      nodes={"devices": {1: {"privacy_class": "restricted"}}})
    overreach = host.plugins["threshold_alert"]
    original = overreach.receive_now  # its MQTT messages arrive on its own inbox, no second hop
    overreach.receive_now = lambda kind, data, source: (received.append((kind.decode(), orjson.loads(data))),
                                                        original(kind, data, source))
    from firmware_tools.simulate import generate, make_nodes, send_udp
    send_udp(generate(make_nodes(1, "visit", 20), 20), "127.0.0.1", udp, speed=0)
    assert wait_until(lambda: any(k == "mqtt_message" for k, _ in received), 10)
    states = [json.loads(d["payload"]) for k, d in received if k == "mqtt_message" and d["payload"]]
    assert states and all("breathing_bpm" not in s and "heart_bpm" not in s for s in states)
    assert all(s.get("privacy_class") == "restricted" for s in states if "privacy_class" in s)
    assert plugin.is_dir() and isinstance(host, PluginsExtension)


def test_the_sensing_apis_registry_lists_loaded_plugins_for_agents(mosquitto, make_config, publisher, tmp_path):  # noqa: F811
    from bridge.app import build_bridge
    from bridge.http.extension import HttpExtension
    from tests.brokers import free_port
    from tests.http.test_http_api import get
    plugins = tmp_path / "plugins"
    publisher.install("presence-lights", plugins)
    port = free_port()
    config = make_config(mosquitto, http={"enabled": True, "port": port},
                         plugins={"enabled": True, "dirs": [str(plugins)], "trusted_keys": [publisher.public],
                                  "cache_dir": str(tmp_path / "cache"), "audit_log": str(tmp_path / "audit")})
    bridge = build_bridge(config, extensions=[PluginsExtension(), HttpExtension()])
    bridge.start()
    try:
        code, registry, _ = get(f"http://127.0.0.1:{port}/api/v1/edge/registry")
        assert code == 200
        plugin = registry["registry"]["plugins"][0]
        assert plugin["id"] == "ruview.presence-lights" and plugin["version"] == "1.0.0"
        assert plugin["category"] == "automation" and plugin["state"] == "running"
        assert plugin in registry["registry"]["cogs"]
    finally:
        bridge.stop()
