"""The bridge on RabbitMQ 3.10 with its MQTT plugin (issue 32), a private node started by the test
(its own node name, ports and directories; tests/brokers.py `RabbitMq`).

What the broker matrix in docs/scale.md says of RabbitMQ comes from here: MQTT 3.1.1 only, no
shared subscriptions (a share group is refused at start), requests answered, a persistent session
keeps a request sent while the link was cut.
"""

from __future__ import annotations

import pytest

from bridge.app import build_bridge
from tests.brokers import RabbitMq, rabbitmq_available
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
