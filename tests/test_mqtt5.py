"""MQTT 5 features, used only when the connection is MQTT 5 (Mosquitto here)."""

from __future__ import annotations

import time

from tests.conftest import settled
from tests.mqtt_probe import Probe
from tests.polling import wait_until


def test_auto_negotiates_v5_with_either_broker(broker, make_bridge):
    bridge = make_bridge(broker, mqtt={"protocol": "auto"})
    assert bridge.mqtt.is_v5 and bridge.info()["broker"]["protocol"] == "5"


def test_auto_falls_back_to_3_1_1_on_a_broker_that_refuses_mqtt5(make_bridge):
    from tests.brokers import Embedded
    old = Embedded(mqtt3_only=True).start()
    try:
        bridge = make_bridge(old, mqtt={"protocol": "auto"})
        assert not bridge.mqtt.is_v5 and bridge.info()["broker"]["protocol"] == "3.1.1"
        bridge.states.set("sensor.fallback", 1)  # and it works on 3.1.1
        probe = Probe(old.port).subscribe("ruview/state/sensor.fallback")
        assert probe.wait_topic("ruview/state/sensor.fallback").json()["state"] == "1"
        probe.close()
    finally:
        old.cleanup()


def test_response_topic_and_correlation_data(mosquitto, make_bridge, make_probe):
    bridge = make_bridge(mosquitto)
    assert bridge.mqtt.is_v5
    bridge.services.register("echo", "say", lambda call: call.data)
    probe = make_probe(mosquitto, "inbox/#", "ruview/service/+/+/response", v5=True)
    probe.publish("ruview/service/echo/say", {"id": "x", "data": {"w": 1}},
                  response_topic="inbox/svc", correlation=b"corr-1")
    reply = probe.wait_topic("inbox/svc")
    assert reply.correlation_data == b"corr-1" and reply.json()["result"] == {"w": 1}
    assert not probe.on("ruview/service/echo/say/response")

    # bridge API answers on its fixed topic and on the response topic
    probe.subscribe("ruview/bridge/response/#")
    probe.publish("ruview/bridge/request/health_check", {}, response_topic="inbox/api",
                  correlation=b"corr-2")
    direct = probe.wait_topic("inbox/api")
    assert direct.correlation_data == b"corr-2" and direct.json()["status"] == "ok"
    probe.wait_topic("ruview/bridge/response/health_check")


def test_no_local_spares_our_own_echoes(mosquitto, make_bridge):
    bridge = make_bridge(mosquitto)
    received = []
    bridge.router.add("ruview/state/#", received.append)  # a spy beside the state mirror
    bridge.states.set("sensor.echo", 1)
    other = Probe(mosquitto.port)
    other.publish("ruview/state/sensor.other", {"state": "1"})  # after our write, from someone else
    try:
        assert wait_until(lambda: any(m.topic == "ruview/state/sensor.other" for m in received), 5)
        assert [m.topic for m in received] == ["ruview/state/sensor.other"], "our own echo came back"
    finally:
        other.publish("ruview/state/sensor.other", b"", retain=False)
        other.close()


def test_message_expiry_only_with_mqtt5(broker, make_bridge, make_probe):
    bridge = make_bridge(broker, mqtt={"protocol": "auto"})
    bridge.mqtt.publish("ruview/expiring", b"soon stale", qos=1, retain=True, expiry=1)
    settled(bridge)
    time.sleep(2.5)  # the scenario: the message outlives its 1 s expiry
    late = make_probe(broker, "ruview/expiring")  # subscribed and flushed: retained copies are in
    if broker.supports_v5:
        assert late.on("ruview/expiring") == [], "the broker should have expired the message"
    else:
        assert late.on("ruview/expiring")[0].payload == b"soon stale"  # 3.1.1: no expiry
    late.publish("ruview/expiring", b"", retain=True)
