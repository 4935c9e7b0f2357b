"""The bridge on RabbitMQ 3.10 with its MQTT plugin (issue 32), a private node started by the test
(its own node name, ports and directories; tests/brokers.py `RabbitMq`).

What the broker matrix in docs/scale.md says of RabbitMQ comes from here: MQTT 3.1.1 only, no
shared subscriptions (a share group is refused at start), requests answered, a persistent session
keeps a request sent while the link was cut.
"""

from __future__ import annotations

import threading
import time

import pytest

from bridge.app import build_bridge
from tests.brokers import RabbitMq, RabbitMqCluster, rabbitmq_available
from tests.conftest import served
from tests.mqtt_probe import Probe
from tests.polling import wait_until
from tests.tcp_gate import TcpGate

pytestmark = [pytest.mark.skipif(not rabbitmq_available(), reason="rabbitmq-server is not installed"),
              pytest.mark.slow]

RESPONSE = "ruview/bridge/response/health_check"


@pytest.fixture(scope="module")
def rabbit():
    broker = RabbitMq().start()
    yield broker
    broker.cleanup()


def test_requests_are_answered_and_a_persistent_session_keeps_one_sent_while_cut(rabbit, make_config):
    gate = TcpGate(rabbit.port)
    via_gate = type("Via", (), {"url": f"mqtt://127.0.0.1:{gate.port}", "supports_v5": False})()
    bridge = build_bridge(make_config(via_gate, mqtt={"session_expiry": 300}), extensions=[])
    probe = Probe(rabbit.port, client_id="rabbit-probe").subscribe(RESPONSE)
    try:
        bridge.start()
        assert bridge.mqtt.wait_connected(15) and not bridge.mqtt.is_v5
        served(probe, bridge)
        gate.shut()
        assert wait_until(lambda: not bridge.mqtt.connected, 5)
        probe.publish("ruview/bridge/request/health_check", {"transaction": "while-away"})
        gate.open()
        assert bridge.mqtt.wait_connected(15)
        probe.wait_for(lambda ms: any(m.topic == RESPONSE and m.json().get("transaction") == "while-away"
                                      for m in ms), 10, "the answer to the request sent while away")
    finally:
        bridge.stop()
        probe.close()
        gate.close()


def test_a_share_group_on_rabbitmq_is_refused_at_start(rabbit, make_config):
    bridge = build_bridge(make_config(rabbit, bridge={"share_group": "house", "instance": "a"}), extensions=[])
    try:
        bridge.start()
        assert wait_until(lambda: bridge.mqtt.fatal is not None, 15), "the share group was taken in silence"
        assert "does not deliver shared subscriptions" in bridge.mqtt.fatal and rabbit.url in bridge.mqtt.fatal
    finally:
        bridge.stop()


@pytest.fixture(scope="module")
def rabbit_cluster():
    nodes = RabbitMqCluster().start()
    yield nodes
    nodes.cleanup()


@pytest.mark.xfail(reason="open (issue 32): on this RabbitMQ 3.10 cluster, killing the node in use lost 5-6 QoS 1 "
                          "events sent just before the kill in some runs, and in others the bridge was not served "
                          "within 30 s (sessions closed right after CONNACK, reconnecting in a loop); docs/scale.md",
                   strict=False)
def test_failover_on_a_rabbitmq_cluster_loses_no_qos1_event(rabbit_cluster, make_config):
    """Three RabbitMQ nodes; the one the bridge uses is killed while it fires a QoS 1 event every
    20 ms: it is served again from the next node of mqtt.url, and every event arrives."""
    cluster = rabbit_cluster
    # a clean session: a persistent one lives in a queue on one node, and the others refuse to resume
    # it while that node is dead (docs/scale.md)
    config = make_config(cluster.nodes[0], mqtt={"url": cluster.urls, "protocol": "3.1.1",
                                                 "reconnect": {"min_delay": 0.5, "max_delay": 5}})
    bridge = build_bridge(config, extensions=[])
    probe = Probe(cluster.nodes[2].port, client_id="rabbit-watcher").subscribe("ruview/event/#", RESPONSE)
    fired: list[int] = []
    firing = threading.Event()
    firing.set()

    def fire() -> None:
        n = 0
        while firing.is_set():
            bridge.events.fire("tick", {"n": n})
            fired.append(n)
            n += 1
            time.sleep(0.02)

    try:
        bridge.start()
        assert bridge.mqtt.wait_connected(15)
        in_use = bridge.mqtt.broker_url
        assert in_use != cluster.urls[2], "the watcher's node must outlive the kill"
        firer = threading.Thread(target=fire, daemon=True)
        firer.start()
        assert wait_until(lambda: len(probe.messages) > 20, 10), "events flow before the kill"
        cluster.kill(in_use)
        killed = time.monotonic()
        served_after = None
        for attempt in range(400):
            tx = f"after-kill-{attempt}"
            probe.publish("ruview/bridge/request/health_check", {"transaction": tx})
            if wait_until(lambda: any(m.json().get("transaction") == tx for m in probe.on(RESPONSE)), 0.5):
                served_after = time.monotonic() - killed
                break
            if time.monotonic() - killed > 30:
                break
        assert served_after is not None and served_after < 30, (served_after, bridge.mqtt.stats())
        time.sleep(1)  # the scenario: events go on after the failover
        firing.clear()
        firer.join(5)
        expected = set(fired)

        def got() -> set[int]:
            return {m.json()["data"]["n"] for m in probe.messages if m.topic == "ruview/event/tick"}

        stats = bridge.mqtt.stats()
        assert wait_until(lambda: got() >= expected, 30), (sorted(expected - got())[:20], stats)
        assert bridge.mqtt.broker_url != in_use
        print(f"RabbitMQ 3.10 cluster failover: served again {served_after:.1f} s after the kill, "
              f"{len(expected)} QoS 1 events, 0 lost, now on {bridge.mqtt.broker_url}")
    finally:
        firing.clear()
        bridge.stop()
        probe.close()
