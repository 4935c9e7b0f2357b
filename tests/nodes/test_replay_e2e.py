"""The real two-node recording, sent over UDP into a bridge on a real broker."""

from __future__ import annotations

import socket
import time

import pytest

from bridge.nodes import codec
from tests.nodes.test_recording import load_recording
from tests.polling import wait_until


@pytest.fixture(scope="module")
def recording():
    return load_recording()


def send_all(port: int, datagrams, pace_every: int = 200) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i, d in enumerate(datagrams):
            s.sendto(d.data, ("127.0.0.1", port))
            if i % pace_every == 0:
                time.sleep(0.002)  # stay within the receive buffer: this test is not about drops


def _iq_windows(recording) -> list[bytes]:
    """Distinctive 12-byte windows of the real I/Q payloads."""
    windows = []
    for d in recording:
        if codec.decode(d.data).kind == "raw_csi":
            iq = d.data[20:]
            for start in (0, len(iq) // 2, len(iq) - 12):
                w = iq[start:start + 12]
                if len(set(w)) >= 6:
                    windows.append(w)
    return windows


def test_replayed_recording_end_to_end(broker, node_bridge, make_probe, recording):
    everything = make_probe(broker, "#")
    bridge, nodes, port = node_bridge(
        broker, devices={2: {"name": "bedroom", "privacy_class": "restricted"}},
        reporting={"refresh": 1})  # the state after the last frame goes out within a second
    try:
        send_all(port, recording)
        assert wait_until(lambda: nodes.udp.processed >= len(recording), 20)
        assert nodes.udp.received == len(recording) and nodes.udp.dropped == 0
        everything.wait_topic("ruview/node/node_1", 5,  # the state after the last frame
                              match=lambda m: m.payload and m.json()["frames"].get("vitals") == 118)
        bridge.publish_health()
        everything.wait_topic("ruview/bridge/health",
                              match=lambda m: m.json().get("nodes", {}).get("count") == 2)
    finally:
        bridge.stop()

    # both nodes appear, online, with their vitals (node 1) or without (restricted node 2)
    n1 = [m.json() for m in everything.on("ruview/node/node_1")]
    n2 = [m.json() for m in everything.on("ruview/node/bedroom")]
    assert n1 and n2
    assert everything.on("ruview/node/node_1/availability")[0].json() == {"state": "online"}
    assert any("breathing_bpm" in s and "heart_bpm" in s for s in n1), "vitals never reached MQTT"
    assert all(s["privacy_class"] == "restricted" for s in n2)
    for s in n2:
        assert not {"breathing_bpm", "heart_bpm", "anomaly", "coherence", "env_shift"} & set(s)
    assert {"presence", "motion", "presence_score"} <= set(n1[-1])
    assert n1[-1]["frames"]["raw_csi"] > 2000 and n1[-1]["frames"]["vitals"] == 118

    health = everything.on("ruview/bridge/health")[-1].json()["nodes"]
    assert health["privacy"]["dropped"] == {"raw_csi": 5309, "compressed_csi": 2}
    assert health["per_node"]["node_1"]["lost"] == 0

    # no byte of raw CSI anywhere on MQTT: raw, hex or base64-looking, in any topic
    blob = b"\n".join(m.topic.encode() + b" " + m.payload for m in everything.messages)
    windows = _iq_windows(recording)
    assert len(windows) > 5000
    for w in windows:
        assert w not in blob and w.hex().encode() not in blob
    restricted = b"\n".join(m.payload for m in everything.messages if b"bedroom" in m.topic.encode())
    assert b"breathing" not in restricted and b"heart" not in restricted


def test_bad_datagrams_are_counted_per_source_and_never_published(mosquitto, node_bridge,
                                                                  make_probe):
    probe = make_probe(mosquitto, "ruview/node/#")
    bridge, nodes, port = node_bridge(mosquitto)
    try:
        good = codec.encode_edge_vitals(codec.EdgeVitals(5, 1, 12.0, 60.0, -40, 1, 0.1, 9.0, 10))
        fs = bytearray(codec.encode_feature_state(codec.FeatureState(
            6, 0, 1, 1, 1.0, 8.0, 0, 0, 0, 0, 0, 0, 1, 1)))
        fs[25] ^= 1  # CRC now fails
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for data in (b"\x01\x02", bytes(fs), b"\x08\x00\x11\xc5" + bytes(40), good[:-1], good):
                s.sendto(data, ("127.0.0.1", port))
        probe.wait_topic("ruview/node/node_5")
        assert wait_until(lambda: nodes.udp.processed >= 5, 5)
        errors = nodes.health()["decode_errors"]["127.0.0.1"]
        assert errors == {"length": 2, "crc": 1, "unknown_magic": 1}
        assert not [m for m in probe.messages if "node_6" in m.topic]
    finally:
        bridge.stop()
