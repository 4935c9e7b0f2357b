"""The bridge on a real broker: birth/LWT, info, health, secrets."""

from __future__ import annotations



def test_online_state_and_info_are_retained(broker, make_bridge, make_probe):
    make_bridge(broker)
    make_probe(broker, "ruview/bridge/#").wait_topic("ruview/bridge/info")  # now on the broker
    probe = make_probe(broker, "ruview/bridge/#")  # a late subscriber sees retained copies
    state = probe.wait_topic("ruview/bridge/state")
    assert state.retain and state.json() == {"state": "online"}
    info = probe.wait_topic("ruview/bridge/info").json()
    assert info["base_topic"] == "ruview"
    assert set(info["requests"]) >= {"health_check", "info", "restart"}
    assert info["broker"]["url"] == broker.url


def test_clean_stop_publishes_offline(broker, make_bridge, make_probe):
    bridge = make_bridge(broker)
    probe = make_probe(broker, "ruview/bridge/state")
    probe.wait_topic("ruview/bridge/state", match=lambda m: m.json()["state"] == "online")
    bridge.stop()
    probe.wait_topic("ruview/bridge/state", match=lambda m: m.json()["state"] == "offline")
    late = make_probe(broker, "ruview/bridge/state")
    assert late.wait_topic("ruview/bridge/state").json() == {"state": "offline"}
    probe.flush()  # a Last Will would have been published when the bridge's connection closed
    offline = [m for m in probe.on("ruview/bridge/state") if m.json()["state"] == "offline"]
    assert len(offline) == 1, "a clean stop must not also trigger the Last Will"


def test_what_was_published_just_before_a_stop_reaches_the_broker_before_offline(broker, make_bridge, make_probe):
    """Publishing hands messages to the network thread; a stop must not overtake them."""
    bridge = make_bridge(broker)
    probe = make_probe(broker, "ruview/bridge/state", "ruview/last/#")
    probe.wait_topic("ruview/bridge/state", match=lambda m: m.json()["state"] == "online")
    for i in range(200):
        bridge.mqtt.publish(f"ruview/last/{i}", b"%d" % i, qos=1)
    bridge.stop()
    messages = probe.wait_for(lambda ms: any(m.topic == "ruview/bridge/state" and m.json()["state"] == "offline"
                                             for m in ms), what="offline")
    topics = [m.topic for m in messages if m.topic != "ruview/bridge/state" or m.json()["state"] == "offline"]
    assert topics == [f"ruview/last/{i}" for i in range(200)] + ["ruview/bridge/state"]


def test_health_is_published_periodically(broker, make_bridge, make_probe):
    make_bridge(broker)
    probe = make_probe(broker, "ruview/bridge/health")
    probe.wait_for(lambda ms: len([m for m in ms if m.topic == "ruview/bridge/health"]) >= 2,
                   timeout=5, what="two health reports")
    health = probe.on("ruview/bridge/health")[-1].json()
    assert health["mqtt"]["connected"] is True
    assert {"outbox", "outbox_dropped", "published", "received"} <= set(health["mqtt"])


def test_secrets_never_reach_mqtt(mosquitto, make_bridge, make_probe, tmp_path):
    # Mosquitto ignores credentials when anonymous access is allowed, so any password works.
    secret = "s3cr3t-Pa55word-xyz"
    probe = make_probe(mosquitto, "#")
    bridge = make_bridge(mosquitto, mqtt={"username": "bridge", "password": secret})
    probe.wait_topic("ruview/bridge/info")
    bridge.api.handle("info", {})
    probe.publish("ruview/bridge/request/info", {})
    probe.wait_topic("ruview/bridge/response/info")
    info = probe.on("ruview/bridge/info")[-1].json()
    assert info["config"]["mqtt"]["password"] == "***"
    for m in probe.messages:
        assert secret.encode() not in m.payload, f"password leaked on {m.topic}"
        assert secret not in m.topic


def test_the_bridge_connection_sends_each_packet_at_once(broker, make_bridge):
    """Nagle off: an answer written right after a PUBACK must not wait ~40 ms for a delayed ACK."""
    import socket
    bridge = make_bridge(broker)
    sock = bridge.mqtt._paho.socket()
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1


def test_a_burst_reaches_the_network_thread_with_one_wakeup_at_its_end(broker, make_bridge, make_probe):
    """A beat's node states are published as a burst: the network thread must not be woken by its
    first message (it would then compete with the rest for the GIL and take them piecemeal)."""
    bridge = make_bridge(broker)
    probe = make_probe(broker, "ruview/burst/#")
    client, wakes, queued = bridge.mqtt, [], {"n": 0}
    wake = client._wake_network_thread

    def counted_wake():
        wakes.append(queued["n"])
        wake()

    client._wake_network_thread = counted_wake
    with client.burst():
        for i in range(50):
            client.publish(f"ruview/burst/{i}", str(i), qos=1)
            queued["n"] += 1
    assert wakes and all(n == 50 for n in wakes), wakes  # woken only once the burst was complete
    probe.wait_for(lambda ms: len(ms) >= 50, 5, "the burst")
    assert [m.payload for m in probe.messages] == [str(i).encode() for i in range(50)]
    client.publish("ruview/burst/after", "x", qos=1)  # outside a burst the first message wakes it at once
    assert wakes[-1] == 50 and len(wakes) >= 2
