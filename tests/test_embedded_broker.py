"""The embedded broker as a user meets it: one-shot mosquitto_pub/_sub processes, MQTT 3.1.1 and 5,
and the protocol behaviours clients rely on (retained, will, No Local, shared subscriptions ...)."""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import sys
import time

import paho.mqtt.client as paho
import pytest
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

from bridge.mqtt.embedded import EmbeddedBroker
from tests.brokers import free_port, free_port_udp, wait_port
from tests.mosquitto_sub import MosquittoSub
from tests.mqtt_probe import Probe
from tests.polling import wait_until

PUB = shutil.which("mosquitto_pub") or "/usr/bin/mosquitto_pub"
SUB = shutil.which("mosquitto_sub") or "/usr/bin/mosquitto_sub"
VERSIONS = ["mqttv311", "mqttv5"]


@pytest.fixture
def embedded():
    broker = EmbeddedBroker("127.0.0.1", free_port())
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def bridge_on_embedded(tmp_path):
    """`ruview-bridge run` with mqtt.url: auto on a free port: it starts the embedded broker."""
    port = free_port()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"mqtt:\n  embedded:\n    port: {port}\nnodes:\n  udp:\n    bind: 127.0.0.1\n"
                   f"    port: {free_port_udp()}\nhomeassistant:\n  collect_seconds: 0.3\n")
    proc = subprocess.Popen([sys.executable, "-m", "bridge", "run", "-c", str(cfg), "--no-status"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_port(port, 20)
    probe = Probe(port).subscribe("ruview/bridge/state", "ruview/bridge/health")
    probe.wait_topic("ruview/bridge/state", 15, match=lambda m: m.json()["state"] == "online")
    probe.wait_topic("ruview/bridge/health", 15)  # published on connecting, after state and info
    probe.close()
    yield port, proc
    proc.terminate()
    proc.wait(15)


def sub(port: int, *args: str, timeout: float = 5) -> list[str]:
    out = subprocess.run([SUB, "-p", str(port), *args], capture_output=True, text=True, timeout=timeout + 5)
    return out.stdout.splitlines()


@pytest.mark.parametrize("version", VERSIONS)
def test_the_readmes_one_shot_request_is_answered_every_time(bridge_on_embedded, version):
    port, proc = bridge_on_embedded
    with MosquittoSub([SUB, "-p", str(port), "-V", version, "-v", "-t", "ruview/bridge/response/#", "-C", "20"],
                      confirm=True) as answers:
        assert answers.subscribed(10)
        for i in range(20):
            subprocess.run([PUB, "-p", str(port), "-V", version, "-t", "ruview/bridge/request/health_check",
                            "-m", f'{{"transaction": {i}}}'], check=True, timeout=10)
        assert answers.wait_exit(25) == 0, answers.messages
        lines = answers.messages
    assert len(lines) == 20, lines
    assert all(line.startswith('ruview/bridge/response/health_check {"status":"ok","data":{"healthy":true}')
               for line in lines)


@pytest.mark.parametrize("version", VERSIONS)
def test_a_subscriber_gets_only_its_own_topics_each_once(bridge_on_embedded, version):
    port, _ = bridge_on_embedded
    with MosquittoSub([SUB, "-p", str(port), "-V", version, "-v", "--retained-only", "-t", "ruview/#"],
                      confirm=True) as retained:
        assert retained.subscribed(10)
        # a live (not retained) message ends --retained-only; the broker sent every retained one before it
        subprocess.run([PUB, "-p", str(port), "-t", "ruview/bridge/request/health_check", "-m", "{}"],
                       check=True, timeout=10)
        assert retained.wait_exit(15) is not None, retained.messages
        lines = retained.messages
    topics = [line.split(" ", 1)[0] for line in lines]
    assert topics and all(t.startswith("ruview/") for t in topics), topics[:5]
    assert len(topics) == len(set(topics)), "a retained message came more than once"
    assert {"ruview/bridge/state", "ruview/bridge/info", "ruview/bridge/health"} <= set(topics)
    [health] = sub(port, "-V", version, "-C", "1", "-t", "ruview/bridge/health")
    assert health.startswith('{"uptime_s":')


def test_no_traceback_reaches_the_console_whatever_a_client_sends(bridge_on_embedded):
    port, proc = bridge_on_embedded
    for junk in (b"\x10\xff\xff\xff\xff\x7f", b"\x10\x05\x00\x04MQTT", b"GET / HTTP/1.1\r\n\r\n",
                 b"\x10\x0c\x00\x04MQTT\x06\x02\x00\x3c\x00\x00", bytes(range(256))):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(junk)
            try:
                s.recv(64)
            except OSError:
                pass
    assert sub(port, "-C", "1", "-t", "ruview/bridge/state") == ['{"state":"online"}']  # still serving
    proc.terminate()
    out, _ = proc.communicate(timeout=15)
    assert "Traceback" not in out, out[-2000:]


def _connect_raw(port: int, level: int) -> bytes:
    name = b"MQTT"
    body = struct.pack(">H", len(name)) + name + bytes([level, 0x02]) + struct.pack(">H", 30)
    body += (b"\x00" if level == 5 else b"") + struct.pack(">H", 1) + b"x"
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(bytes([0x10, len(body)]) + body)
        return s.recv(16)


def test_an_unknown_protocol_version_is_refused_at_once_with_the_right_connack(embedded):
    assert _connect_raw(embedded.port, 6) == b"\x20\x02\x00\x01"  # unacceptable protocol version
    assert _connect_raw(embedded.port, 4)[:4] == b"\x20\x02\x00\x00"
    v5 = _connect_raw(embedded.port, 5)
    assert v5[0] == 0x20 and v5[2:4] == b"\x00\x00"  # accepted, with its properties after


def _client(port, v5=True, client_id="", will=None, **kw):
    """A paho client, connected (its CONNACK in): (client, the messages it receives)."""
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id,
                    protocol=paho.MQTTv5 if v5 else paho.MQTTv311, userdata=set())
    got = []
    c.on_message = lambda cl, ud, m: got.append(m)
    c.on_subscribe = lambda cl, acked, mid, codes, props: acked.add(mid)
    if will:
        c.will_set(*will)
    c.connect("127.0.0.1", port, **kw)
    c.loop_start()
    assert wait_until(c.is_connected, 5), f"no CONNACK for {client_id or 'a client'}"
    return c, got


def _subscribed(client: paho.Client, request: tuple[int, int | None]) -> None:
    """Wait for the SUBACK of client.subscribe(...)'s request, instead of sleeping."""
    rc, mid = request
    assert rc == paho.MQTT_ERR_SUCCESS and wait_until(lambda: mid in client.user_data_get(), 5), (rc, mid)


def test_retained_wildcards_will_and_unsubscribe(embedded):
    port = embedded.port
    pub, _ = _client(port, v5=False)
    pub.publish("home/a/temp", b"21", 1, retain=True).wait_for_publish(5)
    pub.publish("home/b/temp", b"19", 1, retain=True).wait_for_publish(5)
    pub.publish("$SYS/x", b"sys", 1, retain=True).wait_for_publish(5)
    probe = Probe(port).subscribe("home/+/temp", "#")
    assert sorted((m.topic, m.payload, m.retain) for m in probe.messages) == [
        ("home/a/temp", b"21", True), ("home/a/temp", b"21", True),  # once per matching filter
        ("home/b/temp", b"19", True), ("home/b/temp", b"19", True)], "# must not match $SYS"
    probe.clear()
    pub.publish("home/b/temp", b"", 1, retain=True).wait_for_publish(5)  # clears it
    late = Probe(port).subscribe("home/#")
    assert [(m.topic, m.payload) for m in late.messages] == [("home/a/temp", b"21")]

    dying, _ = _client(port, v5=False, client_id="dying", will=("home/dying/status", b"gone", 1, True))
    dying._sock.close()  # no DISCONNECT: the broker publishes the will
    late.wait_topic("home/dying/status", 5)
    polite, _ = _client(port, client_id="polite", will=("home/polite/status", b"gone", 1))
    polite.disconnect()
    polite.loop_stop()
    late.client.unsubscribe("home/#")
    late.flush()  # the broker takes a client's packets in order: the UNSUBSCRIBE is done
    late.clear()
    pub.publish("home/a/temp", b"22", 1).wait_for_publish(5)
    probe.wait_topic("home/a/temp", 5)
    late.flush()
    assert not late.on("home/a/temp") and not late.on("home/polite/status"), "a clean goodbye has no will"
    for c in (pub,):
        c.disconnect()
        c.loop_stop()
    probe.close(), late.close()


def test_no_local_retain_as_published_and_shared_subscriptions(embedded):
    port = embedded.port
    me, mine = _client(port, client_id="me")
    from paho.mqtt.subscribeoptions import SubscribeOptions
    _subscribed(me, me.subscribe([("loop/#", SubscribeOptions(qos=1, noLocal=True)),
                                  ("rap/#", SubscribeOptions(qos=1, retainAsPublished=True))]))
    a, got_a = _client(port, client_id="a")
    b, got_b = _client(port, client_id="b")
    for c in (a, b):
        _subscribed(c, c.subscribe("$share/g/work/+", 1))
    me.publish("loop/x", b"own", 1).wait_for_publish(5)
    a.publish("loop/x", b"theirs", 1).wait_for_publish(5)
    a.publish("rap/x", b"kept", 1, retain=True).wait_for_publish(5)
    for i in range(10):
        me.publish("work/job", str(i).encode(), 1).wait_for_publish(5)
    assert wait_until(lambda: len(got_a) + len(got_b) == 10 and len(mine) == 2, 5), (len(got_a), len(got_b))
    assert [(m.topic, m.payload) for m in mine if m.topic.startswith("loop")] == [("loop/x", b"theirs")]
    assert [m.retain for m in mine if m.topic == "rap/x"] == [True]
    assert len(got_a) == len(got_b) == 5, "a share group spreads the work"
    assert sorted(int(m.payload) for m in got_a + got_b) == list(range(10))
    a.publish("rap/x", b"", 1, retain=True).wait_for_publish(5)
    for c in (me, a, b):
        c.disconnect()
        c.loop_stop()


def test_mqtt5_properties_pass_through_and_retained_messages_expire(embedded):
    port = embedded.port
    listener, got = _client(port)
    _subscribed(listener, listener.subscribe("rpc/#", 1))
    sender, _ = _client(port)
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic, props.CorrelationData = "rpc/reply", b"c-1"
    props.UserProperty = ("k", "v")
    sender.publish("rpc/call", b"x", 1, properties=props).wait_for_publish(5)
    assert wait_until(lambda: got, 5)
    assert got[0].properties.ResponseTopic == "rpc/reply" and got[0].properties.CorrelationData == b"c-1"
    assert got[0].properties.UserProperty == [("k", "v")]
    short = Properties(PacketTypes.PUBLISH)
    short.MessageExpiryInterval = 1
    sender.publish("rpc/stale", b"soon gone", 1, retain=True, properties=short).wait_for_publish(5)
    time.sleep(1.5)  # the scenario: the retained message outlives its expiry
    late = Probe(port).subscribe("rpc/stale")
    assert late.on("rpc/stale") == []
    for c in (listener, sender):
        c.disconnect()
        c.loop_stop()
    late.close()


def test_qos2_in_takeover_keepalive_and_credentials(embedded):
    port = embedded.port
    probe = Probe(port).subscribe("q2/#")
    c, _ = _client(port, v5=False)
    c.publish("q2/x", b"exactly", 2).wait_for_publish(5)
    probe.wait_topic("q2/x", 5)
    assert [m.qos for m in probe.on("q2/x")] == [1]  # delivered at the broker's maximum, QoS 1
    first, _ = _client(port, client_id="same")
    first.reconnect_delay_set(30, 30)  # paho would come back and take the id over again
    reasons = []
    first.on_disconnect = lambda cl, ud, flags, reason, props: reasons.append(str(reason))
    second, _ = _client(port, client_id="same")
    assert wait_until(lambda: reasons == ["Session taken over"], 5), reasons
    first.loop_stop()
    assert wait_until(second.is_connected, 5) and "same" in embedded.broker.sessions
    assert reasons == ["Session taken over"], "the newer connection was kept"
    for cl in (c, first, second):
        cl.disconnect()
        cl.loop_stop()
    probe.close()

    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:  # keepalive 1 s, then silence
        body = b"\x00\x04MQTT\x04\x02\x00\x01" + struct.pack(">H", 2) + b"ka"
        s.sendall(bytes([0x10, len(body)]) + body)
        assert s.recv(4) == b"\x20\x02\x00\x00"
        began = time.monotonic()
        assert s.recv(4) == b""  # closed by the broker
        assert 1.0 <= time.monotonic() - began < 5

    guarded = EmbeddedBroker("127.0.0.1", free_port(), username="bridge", password="s3cret-pw")
    guarded.start()
    try:
        with pytest.raises(TimeoutError):
            Probe(guarded.port, connect_timeout=2)
        with pytest.raises(TimeoutError):
            Probe(guarded.port, username="bridge", password="nope", connect_timeout=2)
        Probe(guarded.port, username="bridge", password="s3cret-pw").close()
    finally:
        guarded.stop()
