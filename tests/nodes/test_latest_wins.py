"""Node state is latest-wins: retained at QoS 0, the newest sent again after a reconnect.

A node's state is superseded by the next one within a beat or a refresh, so acknowledging each
(QoS 1: a PUBACK per state, and an outbox of stale states after an outage) buys nothing; the
MQTT client keeps the newest retained state per topic and publishes it after every reconnect.
Events and requests' answers stay QoS 1 through the outbox: each one matters."""

from __future__ import annotations

from firmware_tools.simulate import generate, make_nodes, send_udp
from tests.brokers import Mosquitto
from tests.polling import wait_until


def test_after_an_outage_the_broker_gets_the_newest_state_and_events_keep_qos_1(node_bridge, make_probe):
    broker = Mosquitto().start()  # its own: killed mid-test (no persistence: retained state is lost)
    try:
        bridge, ext, port = node_bridge(broker, reporting={"refresh": 0})
        probe = make_probe(broker, "ruview/node/#")
        sent = send_udp(generate(make_nodes(1, "visit", 60, first_id=7), 60), "127.0.0.1", port, speed=0)
        assert wait_until(lambda: ext.udp.processed >= sent, 10)
        state = probe.wait_topic("ruview/node/node_7", match=lambda m: m.json()["frames"]["feature_state"] >= 300)
        assert state.qos == 0  # (a live subscriber sees the retain flag cleared; the late one below sees it)
        events = probe.wait_topic("ruview/node/node_7/event")
        assert events.qos == 1 and not events.retain

        broker.kill()
        assert wait_until(lambda: not bridge.mqtt.connected, 10)
        more = send_udp(generate(make_nodes(1, "empty", 10, first_id=7, seed=3), 10), "127.0.0.1", port, speed=0)
        assert wait_until(lambda: ext.udp.processed >= sent + more, 10)
        node, view = ext.registry.get(7), ext.pipeline.views[7]
        assert node is not None
        assert wait_until(lambda: view.dirty_since is None, 5)  # the newest state went out, into the outage
        newest = sum(node.frames.values())
        # the states of the outage were not queued to be sent stale (events and home state were)
        assert wait_until(lambda: bridge.mqtt.stats()["dropped_offline_qos0"] > 0, 5)

        broker.start()
        assert bridge.mqtt.wait_connected(30)
        late = make_probe(broker, "ruview/node/node_7")  # a subscriber after the outage
        got = late.wait_topic("ruview/node/node_7", timeout=10)
        assert got.retain and sum(got.json()["frames"].values()) == newest
    finally:
        broker.cleanup()
