"""plugin/unload and plugin/load are kept over restarts (issue 33): what a request was answered
"ok" for is in the state store before it is done, and a new bridge does the same."""

from __future__ import annotations

from bridge.plugins.extension import PluginsExtension
from tests.harness import in_process
from tests.plugins import wat
from tests.plugins.helpers import Publisher
from tests.polling import wait_until

QUIET = '(func (export "receive_event") (param i32 i32 i32 i32) (result i32) (i32.const 0))'


def _start(tmp_path, publisher, dirs):
    bridge, _ = in_process({"plugins": {
        "enabled": True, "dirs": [str(d) for d in dirs], "trusted_keys": [publisher.public],
        "cache_dir": str(tmp_path / "cache"), "audit_log": str(tmp_path / "audit.jsonl"), "watch": False}},
        [PluginsExtension()])
    return bridge, bridge.extension("plugins")


def _ok(bridge, verb, **request):
    answer = bridge.api.handle(verb, request)
    assert answer["status"] == "ok", answer
    return answer["data"]


def test_an_unloaded_plugin_stays_unloaded_and_a_loaded_one_stays_loaded(tmp_path):
    publisher = Publisher(tmp_path)
    configured, elsewhere = tmp_path / "plugins", tmp_path / "more"
    wat.plugin(publisher, configured, "kept", wat.module(QUIET, overrides={"receive_event": ""}))
    extra = wat.plugin(publisher, elsewhere, "extra", wat.module(QUIET, overrides={"receive_event": ""}))
    bridge, host = _start(tmp_path, publisher, [configured])
    try:
        assert wait_until(lambda: "kept" in host.plugins, 10)
        _ok(bridge, "plugin/unload", domain="kept")
        assert _ok(bridge, "plugin/load", path=str(extra))["state"] == "running"
    finally:
        bridge.stop()
    bridge, host = _start(tmp_path, publisher, [configured])
    try:
        assert bridge.drain()
        assert wait_until(lambda: "extra" in host.plugins, 10), "loaded by request: loaded again"
        assert "kept" not in host.plugins, "unloaded by request: stays unloaded"
        assert "stays unloaded" in str(host.rejected), host.rejected
        assert _ok(bridge, "plugin/load", path=str(configured / "kept"))["state"] == "running"
    finally:
        bridge.stop()
    bridge, host = _start(tmp_path, publisher, [configured])
    try:
        assert wait_until(lambda: {"kept", "extra"} <= set(host.plugins), 10), host.plugins
    finally:
        bridge.stop()


ENTRY = {"sensor": "sensor.hall_temperature", "high": 26, "low": 24, "alert": "binary_sensor.hall_too_warm"}


def test_entry_data_given_over_the_api_is_checked_kept_and_reloads_the_plugin(tmp_path):
    publisher = Publisher(tmp_path)
    plugins = tmp_path / "plugins"
    publisher.install("threshold-alert", plugins)

    def start():
        bridge, _ = in_process({"plugins": {
            "enabled": True, "dirs": [str(plugins)], "trusted_keys": [publisher.public], "watch": False,
            "cache_dir": str(tmp_path / "cache"), "audit_log": str(tmp_path / "audit.jsonl"),
            "entries": {"threshold_alert": ENTRY}}}, [PluginsExtension()])
        return bridge, bridge.extension("plugins")

    bridge, host = start()
    try:
        assert wait_until(lambda: "threshold_alert" in host.plugins, 10)
        refused = bridge.api.handle("plugin/configure", {"domain": "threshold_alert",
                                                         "data": {**ENTRY, "high": "warm", "sensor": "hall"}})
        assert refused["status"] == "error" and ".high: expected a number" in refused["error"] \
            and ".sensor:" in refused["error"], refused
        assert host._entry_data("threshold_alert") == ENTRY, "a refused request changes nothing"
        answer = _ok(bridge, "plugin/configure", domain="threshold_alert", data={**ENTRY, "high": 30})
        assert answer["state"] == "running"
        assert host._config_entry(host.plugins["threshold_alert"].manifest)["data"]["high"] == 30
    finally:
        bridge.stop()
    bridge, host = start()
    try:
        assert wait_until(lambda: "threshold_alert" in host.plugins, 10)
        assert host._entry_data("threshold_alert")["high"] == 30, "kept over a restart"
    finally:
        bridge.stop()
