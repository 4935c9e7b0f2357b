"""Plugins managed over the sensing HTTP API (/api/homecore/plugins): list with the config form,
load by directory or cog_id, unload, reload, the audit log paged with its chain verdict, entry data
checked against the schema — behind the API token, through the same request verbs as MQTT."""

from __future__ import annotations

import orjson
import pytest

from bridge.app import build_bridge
from bridge.catalog import validate_config
from bridge.http.extension import HttpExtension
from bridge.plugins.extension import PluginsExtension
from tests.brokers import free_port
from tests.http.test_http_api import get
from tests.plugins.helpers import Publisher
from tests.plugins.test_lifecycle import ENTRY
from tests.plugins.test_registry import COG, pki, site  # noqa: F401 (fixtures)

TOKEN = "plugins-http-test-token"


@pytest.fixture
def managed(mosquitto, tmp_path):
    made = []

    def make(plugins: dict) -> tuple[object, str]:
        port = free_port()
        raw = {"mqtt": {"url": mosquitto.url, "reconnect": {"min_delay": 0.2, "max_delay": 1.0}},
               "http": {"enabled": True, "port": port},
               "plugins": {"enabled": True, "cache_dir": str(tmp_path / "cache"), "entries": ENTRY,
                           "audit_log": str(tmp_path / "audit.jsonl"), "watch": False, **plugins}}
        bridge = build_bridge(validate_config(raw, "test", env={"RUVIEW_API_TOKEN": TOKEN}),
                              extensions=[PluginsExtension(), HttpExtension()])
        bridge.start()
        made.append(bridge)
        assert bridge.mqtt.wait_connected(15)
        return bridge, f"http://127.0.0.1:{port}/api/homecore/plugins"

    yield make
    for bridge in made:
        bridge.stop()


def call(url: str, method: str = "GET", body: dict | None = None, token: str | None = TOKEN):
    return get(url, token, method, orjson.dumps(body) if body is not None else None)[:2]


def test_list_unload_load_reload_and_the_audit_log_over_http(managed, tmp_path):
    publisher = Publisher(tmp_path)
    plugins = tmp_path / "plugins"
    publisher.install("threshold-alert", plugins)
    bridge, base = managed({"dirs": [str(plugins)], "trusted_keys": [publisher.public]})
    assert call(base, token=None)[0] == 401
    assert call(base, "DELETE", token="wrong")[0] in (401, 405)
    assert call(f"{base}/threshold_alert", "DELETE", token=None)[0] == 401
    code, listed = call(base)
    assert code == 200 and [p["domain"] for p in listed["plugins"]] == ["threshold_alert"]
    plugin = listed["plugins"][0]
    assert plugin["state"] == "running" and plugin["trust"] == "signed"
    form = {f["path"]: f for f in plugin["config_form"]["fields"]}
    assert form["sensor"]["widget"] == "entity" and form["sensor"]["domain"] == "sensor"

    code, checked = call(f"{base}/threshold_alert/validate", "POST", {"sensor": "hall", "high": 1, "low": 0})
    assert code == 200 and not checked["valid"]
    assert checked["problems"] == ["plugins.entries.threshold_alert.alert: required, and missing",
                                   'plugins.entries.threshold_alert.sensor: "hall" is not an entity id like '
                                   "sensor.hall"]
    assert call(f"{base}/threshold_alert/validate", "POST", ENTRY["threshold_alert"])[1] == \
        {"valid": True, "problems": []}

    code, gone = call(f"{base}/threshold_alert", "DELETE")
    assert code == 200 and gone == {"domain": "threshold_alert", "state": "stopped"}
    assert call(base)[1]["plugins"] == []
    code, missing = call(f"{base}/threshold_alert", "DELETE")
    assert code == 404 and "no plugin 'threshold_alert' is loaded" in missing["error"]
    code, nowhere = call(base, "POST", {"path": str(tmp_path / "nowhere")})
    assert code == 400 and "no manifest.json there" in nowhere["error"]
    code, loaded = call(base, "POST", {"path": str(plugins / "threshold-alert")})
    assert code == 200 and loaded["state"] == "running", loaded
    code, again = call(f"{base}/threshold_alert/reload", "POST")
    assert code == 200 and again["state"] == "running"
    assert bridge.extension("plugins").plugins["threshold_alert"].compiled == "cache"

    code, page = call(f"{base}/threshold_alert/audit?limit=2")
    assert code == 200 and page["chain"] == {"intact": True, "records": page["chain"]["records"], "problem": None}
    assert page["total"] >= 3 and len(page["records"]) == 2
    assert [r["action"] for r in page["records"]] == ["load", "unload"]
    rest = call(f"{base}/threshold_alert/audit?offset=2&limit=500")[1]
    assert [r["action"] for r in rest["records"]][:1] == ["load"] and rest["total"] == page["total"]
    assert call(f"{base}/threshold_alert/audit?limit=0")[0] == 400
    # a record changed by hand: the chain's verdict says where
    audit_log = tmp_path / "audit.jsonl"
    lines = audit_log.read_bytes().splitlines()
    lines[0] = lines[0].replace(b'"load"', b'"lode"')
    audit_log.write_bytes(b"\n".join(lines) + b"\n")
    chain = call(f"{base}/threshold_alert/audit")[1]["chain"]
    assert chain["intact"] is False and ":2: the chain breaks here" in chain["problem"]


def test_load_by_cog_id_installs_from_the_registry_with_its_checks_then_loads(managed, site, pki, tmp_path):  # noqa: F811
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    site.publish()
    site.publish("ruview.stranger", index={"publisher_key": "ed25519:" + "B" * 43 + "="})
    bridge, base = managed({"dirs": [str(plugins)], "trusted_keys": [site.publisher.public],
                            "registry": site.url, "registry_ca": str(pki / "ca.pem")})
    code, refused = call(base, "POST", {"cog_id": "ruview.stranger"})
    assert code == 400 and "is not in plugins.trusted_keys" in refused["error"] and list(plugins.iterdir()) == []
    code, loaded = call(base, "POST", {"cog_id": COG})
    assert code == 200 and loaded["state"] == "running" and loaded["cog_id"] == COG, loaded
    assert (plugins / COG / "plugin.wasm").is_file()
    assert call(base, "POST", {"cog_id": 7})[0] == 400
