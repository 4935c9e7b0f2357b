"""Hostile input, sent the way a user's script sends it (one-shot mosquitto_pub): a refused
request changes nothing, a bad topic a caller names is never used, and the bridge stays on MQTT."""

from __future__ import annotations

import logging
import shutil
import subprocess

import orjson

from firmware_tools.simulate import generate, make_nodes, send_udp
from tests.conftest import served, settled
from tests.polling import wait_until


def pub(broker, topic: str, payload: str | bytes | dict, *, retain: bool = False) -> None:
    body = orjson.dumps(payload) if isinstance(payload, dict) else payload
    command = [shutil.which("mosquitto_pub") or "/usr/bin/mosquitto_pub", "-p", str(broker.port), "-t", topic,
               "-s" if body else "-n"] + (["-r"] if retain else [])
    subprocess.run(command, input=body if isinstance(body, bytes) else body.encode(), check=True, timeout=10)


def request(broker, probe, verb: str, body: dict, tx: int) -> dict:
    pub(broker, f"ruview/bridge/request/{verb}", {**body, "transaction": tx})
    return probe.wait_topic(f"ruview/bridge/response/{verb}", 5,
                            match=lambda m: m.json().get("transaction") == tx).json()


def test_a_response_topic_a_broker_would_refuse_gets_an_error_answer_and_the_bridge_stays_connected(
        mosquitto, make_bridge, make_probe):
    bridge = make_bridge(mosquitto)
    bridge.services.register("light", "turn_on", lambda call: "on")
    probe = make_probe(mosquitto, "ruview/service/+/+/response", "ruview/bridge/response/#")
    # the JSON escape \u0000 puts a NUL into the topic the caller asks to be answered on
    pub(mosquitto, "ruview/service/light/turn_on", '{"id":"n1","data":{},"response_topic":"me/a\\u0000b"}')
    answer = probe.wait_topic("ruview/service/light/turn_on/response", 5).json()
    assert answer["id"] == "n1" and not answer["success"] and "NUL" in answer["error"]
    pub(mosquitto, "ruview/service/light/turn_on", {"id": "n2", "data": {}, "response_topic": "r/" + "x" * 70_000})
    answer = probe.wait_topic("ruview/service/light/turn_on/response", 5, match=lambda m: m.json()["id"] == "n2")
    assert "65535" in answer.json()["error"]
    mosquitto.kill()
    mosquitto.start()
    assert bridge.mqtt.wait_connected(20)
    served(make_probe(mosquitto), bridge)
    stats = bridge.mqtt.stats()
    assert stats["connects"] == 2 and stats["network_errors"] == 0, "nothing was re-sent that drops the link"


def test_refused_node_requests_change_nothing(mosquitto, node_bridge, make_probe):
    bridge, ext, port = node_bridge(mosquitto, offline_after=1)
    send_udp(generate(make_nodes(2, "empty", 12), 12), "127.0.0.1", port, speed=0)
    assert wait_until(lambda: len(ext.registry) == 2, 5)
    probe = make_probe(mosquitto, "ruview/bridge/response/#")

    for tx, name in enumerate(["x" * 70_000, "x-", "Kitchen", "a--b", "", 7, None], start=1):
        answer = request(mosquitto, probe, "node/rename", {"from": "node_1", "to": name}, tx)
        assert answer["status"] == "error" and "lower-case letters" in answer["error"], answer
    assert ext.registry.get(1).name == "node_1"

    answer = request(mosquitto, probe, "node/register", {"node_id": 9, "name": "y-"}, 20)
    assert answer["status"] == "error" and 9 not in ext.registry._devices
    answer = request(mosquitto, probe, "node/register", {"node_id": True, "name": "ok"}, 21)
    assert answer["status"] == "error"

    # a JSON boolean is never a node id: {"node": true} must not remove node 1
    for tx, ref in ((30, True), (31, False), (32, 1.0), (33, [1])):
        answer = request(mosquitto, probe, "node/remove", {"node": ref}, tx)
        assert answer["status"] == "error" and "unknown node" in answer["error"], answer
    assert ext.registry.get(1) is not None

    # nothing broke on the way: the beat still marks silent nodes offline, a broker restart is survived
    assert wait_until(lambda: all(n.online is False for n in ext.registry.all()), 5)
    assert ext.ctx.inbox.errors == 0
    mosquitto.kill()
    mosquitto.start()
    assert bridge.mqtt.wait_connected(20)
    served(make_probe(mosquitto), bridge)
    send_udp(generate(make_nodes(1, "empty", 3, first_id=9), 3), "127.0.0.1", port, speed=0)
    assert wait_until(lambda: ext.registry.get(9) is not None and ext.registry.get(9).name == "node_9", 5)
    # node 9 exists from its first frame on, while the rest of its batch may still be in the pipeline
    assert wait_until(lambda: ext.udp.processed == ext.udp.received, 5), (ext.udp.processed, ext.udp.received)
    assert sum(sum(c.values()) for c in ext.pipeline.errors.values()) == 0


def test_a_retained_request_is_ignored_and_said_once_at_debug_level(mosquitto, make_bridge, make_probe, caplog):
    caplog.set_level(logging.DEBUG, logger="bridge.mqtt.router")
    bridge = make_bridge(mosquitto)  # MQTT 5: subscribed with Retain As Published
    probe = make_probe(mosquitto, "ruview/bridge/response/#")
    for _ in range(2):
        pub(mosquitto, "ruview/bridge/request/restart", {"transaction": "stale"}, retain=True)
    try:
        served(probe, bridge)
        assert not probe.on("ruview/bridge/response/restart") and not bridge.restart_requested.is_set()
        assert bridge.router.ignored_retained == 2
        said = [r for r in caplog.records if "ignored a retained message" in r.getMessage()]
        assert len(said) == 1 and said[0].levelno == logging.DEBUG
    finally:
        pub(mosquitto, "ruview/bridge/request/restart", b"", retain=True)
    settled(bridge)
