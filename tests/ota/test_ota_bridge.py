"""The ota feature in a bridge: staged rollouts over mock nodes (written from the firmware) that
stream real UDP frames to the bridge, halting at the first failure and carrying on after a
restart; the pull endpoints in the firmware's format with per-node pins and counted downloads;
Home Assistant's update and button entities; node/recalibrate and node/set-target."""

from __future__ import annotations

import http.client
import json
import os
from pathlib import Path

import pytest

from bridge.core.store import StateStore
from bridge.nodes.extension import NodesExtension
from bridge.ota import releases
from bridge.ota.extension import OtaExtension
from firmware_tools.mock_ota import MockOtaNode
from firmware_tools.node_secrets import PskStore
from tests.brokers import free_port, free_port_udp
from tests.harness import in_process
from tests.polling import wait_until
from tests.tools.images import app_image

PSK = "ab12" * 16


@pytest.fixture
def fleet(tmp_path):
    """make(n, **ota) -> (bridge, mqtt, nodes): n mock nodes at 127.0.0.2.. streaming to a bridge."""
    made: list = []

    def make(count, *, behaviours=None, http=False, seed=None, open_nodes=False, **ota):
        udp = free_port_udp()
        node_port = free_port()
        nodes = []
        for i in range(1, count + 1):
            PskStore(tmp_path).put(i, PSK)
            node = MockOtaNode(node_id=i, version="1.0.0", psk=None if open_nodes else PSK,
                               open_without_psk=open_nodes, host=f"127.0.0.{i + 1}", port=node_port,
                               udp_target=("127.0.0.1", udp), reboot_delay=0.2, reboot_gap=0.6,
                               on_update=(behaviours or {}).get(i, "confirm"), pending_for=0.5).start()
            nodes.append(node)
            made.append(node)
        if seed is not None:
            store = StateStore.in_dir(tmp_path)
            store.scope("ota").put("rollout", seed)
            store.close()
        sections = {"bridge": {"health_interval": 60, "state_dir": str(tmp_path)},
                    "nodes": {"udp": {"bind": "127.0.0.1", "port": udp}, "publish_interval": 0.2},
                    "ota": {"enabled": True, "node_port": node_port, "timeout": 10, "settle": 0.4, **ota}}
        extensions = [NodesExtension(), OtaExtension()]
        if http:
            from bridge.http.extension import HttpExtension
            sections["http"] = {"enabled": True, "bind": "127.0.0.1", "port": free_port()}
            extensions.append(HttpExtension())
        # every node heard, and running long enough that a reboot shows (its clock goes back > 1 s)
        assert wait_until(lambda: all(n.frames_sent >= 25 for n in nodes), 10)
        bridge, mqtt = in_process(sections, extensions)
        made.append(bridge)
        assert wait_until(lambda: len(bridge.health().get("nodes", {}).get("per_node", {})) == count, 10)
        return bridge, mqtt, nodes

    yield make
    for thing in reversed(made):
        thing.stop()


def _last(mqtt, topic):
    sent = mqtt.on(topic)
    return json.loads(sent[-1].payload) if sent and sent[-1].payload else None


def _release(tmp_path, version):
    image = tmp_path / f"in-{version}.bin"
    image.write_bytes(app_image(version))
    return releases.add(tmp_path, image)


@pytest.mark.slow
def test_rollout_canary_then_batches_halts_at_the_first_failure(fleet, tmp_path):
    _release(tmp_path, "1.1.0")
    bridge, mqtt, nodes = fleet(4, behaviours={2: "rollback"}, batch_size=2, settle=1.5)
    answer = bridge.api.handle("node/ota", {"nodes": "all"})
    assert answer["status"] == "ok", answer
    assert answer["data"]["version"] == "1.1.0"
    assert wait_until(lambda: (_last(mqtt, "ruview/bridge/ota") or {}).get("state") == "halted", 40)
    halted = _last(mqtt, "ruview/bridge/ota")
    assert "node_2 rolled back: 1.0.0 -> 1.1.0" in halted["why"]
    assert nodes[0].version == "1.1.0"                                  # the canary
    assert nodes[1].version == "1.0.0" and nodes[1].uploads == 1        # rolled back
    assert nodes[3].uploads == 0 and nodes[3].version == "1.0.0"        # never reached
    per_node = halted["per_node"]
    assert per_node["node_1"]["state"] == "verified" and per_node["node_2"]["state"] == "rolled_back"
    assert per_node["node_4"]["state"] == "queued"
    states = [json.loads(m.payload)["ota"]["state"] for m in mqtt.on("ruview/node/node_1/ota")
              if "ota" in json.loads(m.payload)]
    assert states[0] == "queued" and "uploading" in states and "rebooting" in states and states[-1] == "verified"
    assert _last(mqtt, "ruview/node/node_1/ota")["installed_version"] == "1.1.0"


@pytest.mark.slow
def test_a_rollout_carries_on_after_a_restart(fleet, tmp_path):
    _release(tmp_path, "1.1.0")
    seed = {"id": "r1", "version": "1.1.0", "nodes": ["node_1", "node_2"], "batch": 1, "state": "running",
            "per_node": {"node_1": {"state": "verified", "percent": 100}, "node_2": {"state": "uploading",
                                                                                    "percent": 40}}}
    bridge, mqtt, nodes = fleet(2, seed=seed)
    assert wait_until(lambda: (_last(mqtt, "ruview/bridge/ota") or {}).get("state") == "done", 30)
    assert nodes[0].uploads == 0 and nodes[1].version == "1.1.0"
    assert bridge.api.handle("node/ota_status", {})["data"]["rollout"]["per_node"]["node_2"]["state"] == "verified"


def _get(port, path, source):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    conn.request("GET", path)
    r = conn.getresponse()
    return r.status, dict(r.headers), r.read()


def test_pull_in_the_firmwares_format_with_pins_and_counted_downloads(fleet, tmp_path):
    new = _release(tmp_path, "1.1.0")
    held = _release(tmp_path, "1.0.5")
    bridge, mqtt, nodes = fleet(2, http=True, pins={"node_2": "1.0.5"})
    port = bridge.config.http.port
    status, headers, body = _get(port, "/api/v1/firmware/latest", "127.0.0.2")
    assert status == 200 and "Transfer-Encoding" not in headers and int(headers["Content-Length"]) == len(body)
    assert body == (b'{"available":true,"version":"1.1.0","sha256":"%s","size":%d}'
                    % (new.sha256.encode(), new.size))
    assert _get(port, "/api/v1/firmware/latest", "127.0.0.3")[2].startswith(b'{"available":true,"version":"1.0.5"')
    server = f"127.0.0.1:{port}"
    assert nodes[0].pull_once(server) == "updating" and nodes[1].pull_once(server) == "updating"
    assert wait_until(lambda: nodes[0].up and nodes[0].version == "1.1.0", 10)
    assert wait_until(lambda: nodes[1].up and nodes[1].version == "1.0.5", 10)
    assert nodes[1].pull_once(server) == "up to date"
    assert bridge.health()["ota"]["downloads"] == {"1.1.0": 1, "1.0.5": 1}
    assert held.size > 0


def test_home_assistant_update_entity_and_recalibrate_button(fleet, tmp_path):
    _release(tmp_path, "1.1.0")
    bridge, mqtt, nodes = fleet(1, release_notes_url="https://github.com/ruvnet/RuView/releases")
    config = _last(mqtt, "homeassistant/update/ruview_ruview_node_1/firmware/config")
    assert config["release_url"] == "https://github.com/ruvnet/RuView/releases"
    assert config["device_class"] == "firmware" and config["payload_install"] == "install"
    assert config["state_topic"] == "ruview/node/node_1/ota"
    assert config["device"]["identifiers"] == ["ruview_ruview_node_1"]
    button = _last(mqtt, "homeassistant/button/ruview_ruview_node_1/recalibrate/config")
    assert button["command_topic"] == "ruview/node/node_1/ota/set" and button["payload_press"] == "recalibrate"
    assert wait_until(lambda: (_last(mqtt, "ruview/node/node_1/ota") or {}).get("installed_version") == "1.0.0", 10)
    assert _last(mqtt, "ruview/node/node_1/ota")["latest_version"] == "1.1.0"
    assert _last(mqtt, "ruview/node/node_1/ota")["ota_psk"] == "required"
    mqtt.inject("ruview/node/node_1/ota/set", "install")
    assert wait_until(lambda: (_last(mqtt, "ruview/node/node_1/ota") or {}).get("installed_version") == "1.1.0", 20)
    final = _last(mqtt, "ruview/node/node_1/ota")
    assert final["in_progress"] is False and final["ota"]["state"] == "verified"
    mqtt.inject("ruview/node/node_1/ota/set", "recalibrate")
    assert wait_until(lambda: "gl_agc" not in nodes[0].nvs, 10)


def test_recalibrate_and_set_target_verbs(fleet, tmp_path):
    bridge, mqtt, nodes = fleet(1)
    answer = bridge.api.handle("node/recalibrate", {"node": "node_1"})
    assert answer["status"] == "ok" and answer["data"]["status"] == "ok"
    bad = bridge.api.handle("node/set-target", {"node": "node_1", "target": "bridge.local:5005"})
    assert bad["status"] == "error" and "IPv4:PORT" in bad["error"]
    assert wait_until(lambda: nodes[0].up, 5)
    ok = bridge.api.handle("node/set-target", {"node": "node_1", "target": "127.0.0.1:5999"})
    assert ok["status"] == "ok" and ok["data"]["target_port"] == 5999 and nodes[0].nvs["target_port"] == 5999
    unknown = bridge.api.handle("node/recalibrate", {"node": "nope"})
    assert unknown["status"] == "error" and "unknown node" in unknown["error"]


def test_a_node_that_takes_updates_without_a_psk_is_reported(fleet, tmp_path, caplog):
    bridge, mqtt, nodes = fleet(1, open_nodes=True)
    assert wait_until(lambda: (_last(mqtt, "ruview/node/node_1/ota") or {}).get("ota_psk")
                      == "missing: anyone can update it", 10)
    assert bridge.health()["ota"]["open_nodes"] == ["node_1"]
    assert "node node_1 takes a firmware update without any PSK" in caplog.text


def test_a_removed_node_loses_its_entities(fleet, tmp_path):
    bridge, mqtt, nodes = fleet(1)
    topic = "homeassistant/update/ruview_ruview_node_1/firmware/config"
    assert _last(mqtt, topic) is not None
    nodes[0].stop()                                   # else its next frame brings it back
    assert bridge.api.handle("node/remove", {"node": "node_1"})["status"] == "ok"
    assert wait_until(lambda: mqtt.on(topic)[-1].payload == b"", 5)
    assert mqtt.on("homeassistant/button/ruview_ruview_node_1/recalibrate/config")[-1].payload == b""
    assert mqtt.on("ruview/node/node_1/ota")[-1].payload == b""


@pytest.mark.slow
def test_a_rollout_started_in_the_frontend_is_followed_to_its_end(fleet, tmp_path):
    """The frontend's Updates page (issue 36): releases, each node's version, a rollout started with
    "Update all nodes" (the node/ota verb) and its progress until every node is verified."""
    from tests.http.test_frontend import browse
    _release(tmp_path, "1.1.0")
    bridge, mqtt, nodes = fleet(2, http=True)
    url = f"http://127.0.0.1:{bridge.config.http.port}/"
    assert wait_until(lambda: len(bridge.api.handle("node/ota_status", {})["data"]["installed"]) == 2, 15)
    shots = os.environ.get("RUVIEW_SCREENSHOTS")  # RUVIEW_SCREENSHOTS=docs: the picture in docs/http.md
    seen = browse(url, "updates", version="1.1.0", shots=str(Path(shots).resolve()) if shots else None)
    assert "1.1.0" in seen["releases"] and "1.0.0" in seen["before"], seen
    assert "to 1.1.0: done" in seen["state"], seen["state"]
    assert all(n.version == "1.1.0" for n in nodes)
    assert seen["after"].count("1.1.0") >= 2 and "verified" in seen["after"], seen["after"]
