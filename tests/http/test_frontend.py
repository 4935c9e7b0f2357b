"""The frontend (issue 36) in a real headless browser (Debian's chromium, driven by playwright-core by
the names a screen reader announces): each flow changes the bridge only through its request verbs,
and MQTT shows the change; nothing loads from elsewhere. The login beyond loopback runs in a private
network namespace."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest

from bridge.app import build_bridge
from bridge.catalog import validate_config
from bridge.homeassistant.extension import HomeAssistantExtension
from bridge.http.extension import HttpExtension
from bridge.nodes.extension import NodesExtension
from firmware_tools.simulate import generate, make_nodes, send_udp
from tests.brokers import Mosquitto, free_port, free_port_udp
from tests.polling import wait_until

JS = Path(__file__).resolve().parents[1] / "js"
SCRIPT = JS / "frontend.mjs"


def browse(url: str, scenario: str, timeout: float = 120, **spec) -> dict:
    """Run one scenario of tests/js/frontend.mjs against `url`; what the page saw."""
    out = subprocess.run(["node", str(SCRIPT), json.dumps({"url": url, "scenario": scenario, **spec})],
                         capture_output=True, text=True, timeout=timeout, cwd=JS)
    seen = json.loads(out.stdout.strip().splitlines()[-1]) if out.stdout.strip() else {}
    assert out.returncode == 0, (seen.get("failure"), seen.get("dom"), seen.get("console"), out.stderr[-2000:])
    assert seen["errors"] == [], seen["errors"]
    assert seen["requests_off_host"] == [], seen["requests_off_host"]  # nothing leaves the page's origin
    return seen


@pytest.fixture
def frontend(tmp_path):
    """A bridge with the frontend on loopback; `make(broker, **sections)` -> (bridge, url, udp port)."""
    made = []

    def make(broker, *, extensions=(), state_dir=None, udp=None, port=None, **sections):
        udp, port = udp or free_port_udp(), port or free_port()
        raw = {"mqtt": {"url": broker.url, "reconnect": {"min_delay": 0.2, "max_delay": 1.0}},
               "bridge": {"health_interval": 1, "shutdown_timeout": 3, "state_dir": str(state_dir or tmp_path / "state")},
               "nodes": {"publish_interval": 0.2, "udp": {"bind": "127.0.0.1", "port": udp}},
               "homeassistant": {"collect_seconds": 0.3},
               "http": {"enabled": True, "port": port}}
        for key, value in sections.items():
            raw.setdefault(key, {}).update(value)
        config = validate_config(raw, "test", env={})
        bridge = build_bridge(config, extensions=[NodesExtension(), HomeAssistantExtension(), HttpExtension(),
                                                  *extensions])
        bridge.start()
        made.append(bridge)
        assert bridge.mqtt.wait_connected(15)
        assert bridge.extension_state["http"]["state"] == "running", bridge.extension_state
        return bridge, f"http://127.0.0.1:{port}/", udp

    yield make
    for bridge in made:
        bridge.stop()


def feed(udp: int, nodes: int, seconds: float, scenario: str = "empty", speed: float = 0) -> None:
    send_udp(generate(make_nodes(nodes, scenario, seconds), seconds), "127.0.0.1", udp, speed=speed)


def listed(probe) -> list[dict]:
    """The newest `ruview/bridge/nodes` the probe has."""
    messages = [m for m in probe.messages if m.topic == "ruview/bridge/nodes" and m.payload]
    return messages[-1].json() if messages else []


def test_rename_a_node_and_set_its_room_in_the_page_and_mqtt_shows_it(mosquitto, frontend, make_probe):
    bridge, url, udp = frontend(mosquitto, nodes={"devices": {1: {"name": "node_1"}}})
    feed(udp, 1, 3)
    nodes = bridge.extension("nodes")
    assert wait_until(lambda: nodes.registry.by_name("node_1") is not None, 10)
    probe = make_probe(mosquitto, "ruview/bridge/nodes", "ruview/node/+")
    seen = browse(url, "rename", node="node_1", to="hall-sensor", room="Hall")
    assert seen["saved"] == "Saved." and seen["hash"] == "#/nodes/hall-sensor", seen
    assert "Hall" in seen["facts"] and "hall-sensor" in seen["table"] and "node_1" not in seen["table"]
    assert wait_until(lambda: any(n["name"] == "hall-sensor" and n["room"] == "Hall" for n in listed(probe)), 10), \
        listed(probe)
    assert wait_until(lambda: any(m.topic == "ruview/node/hall-sensor" and m.payload and m.json().get("room") == "Hall"
                                  for m in probe.messages), 10)


@pytest.mark.parametrize("broker_kept", [True, False], ids=["same-broker", "retained-state-gone"])
def test_a_renamed_node_keeps_its_name_and_room_through_a_bridge_restart(mosquitto, frontend, make_probe, tmp_path,
                                                                          fresh_broker,
                                                                          broker_kept):
    state = tmp_path / "kept"
    bridge, url, udp = frontend(mosquitto, state_dir=state)
    feed(udp, 1, 3)
    assert wait_until(lambda: bridge.extension("nodes").registry.by_name("node_1") is not None, 10)
    seen = browse(url, "rename", node="node_1", to="hall-sensor", room="Hall")
    assert seen["hash"] == "#/nodes/hall-sensor", seen
    bridge.stop()
    restarted = datetime.now(timezone.utc)
    broker = mosquitto if broker_kept else fresh_broker()  # a broker that lost its retained messages
    again, url, udp = frontend(broker, state_dir=state, udp=udp)
    probe = make_probe(broker, "ruview/bridge/nodes")
    feed(udp, 1, 3)  # the node speaks again after the restart
    nodes = again.extension("nodes")
    assert wait_until(lambda: nodes.udp.processed >= 10, 10)

    def heard_again_as_renamed() -> bool:  # in a list this run made (the old one is retained too)
        return any(n["node_id"] == 1 and n["name"] == "hall-sensor" and n["room"] == "Hall" and n["last_seen"]
                   and datetime.fromisoformat(n["last_seen"]) > restarted for n in listed(probe))

    assert wait_until(heard_again_as_renamed, 10), listed(probe)
    assert [(n.name, n.room) for n in again.extension("http").nodes()] == [("hall-sensor", "Hall")]


@pytest.fixture
def fresh_broker():
    brokers = []

    def start() -> Mosquitto:
        brokers.append(Mosquitto().start())
        return brokers[-1]

    yield start
    for broker in brokers:
        broker.cleanup()


@pytest.fixture
def frames():
    """Frames of one empty room, sent in real time until the test ends (a node that keeps talking)."""
    stop = threading.Event()
    threads = []

    def start(udp: int, nodes: int = 1) -> None:
        def run() -> None:
            from itertools import takewhile
            stream = generate(make_nodes(nodes, "empty", 600), 600)
            send_udp(takewhile(lambda _: not stop.is_set(), stream), "127.0.0.1", udp, speed=1)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        threads.append(thread)

    yield start
    stop.set()
    for thread in threads:
        thread.join(5)


@pytest.mark.slow
def test_calibrate_a_node_in_the_page_and_watch_it_progress_to_the_end(mosquitto, frontend, frames, make_probe):
    bridge, url, udp = frontend(mosquitto, nodes={"presence": {"calibration": 4}})
    frames(udp)
    nodes = bridge.extension("nodes")
    assert wait_until(lambda: (nodes.registry.by_name("node_1") is not None
                               and (bridge.extension("http").nodes()[0].state or {}).get("baseline")), 20)
    probe = make_probe(mosquitto, "ruview/node/node_1")
    seen = browse(url, "calibrate", node="node_1")
    assert seen["during"].startswith("Calibrating: ") and " of 4 s" in seen["during"], seen
    assert 0 < seen["progress_during"] < 100 and seen["progress_after"] == 100, seen
    assert seen["after"].startswith("Calibrated: baseline "), seen
    states = [m.json().get("calibrating") for m in probe.messages if m.payload]
    assert True in states and states[-1] is False, states  # MQTT saw the same calibration start and end
