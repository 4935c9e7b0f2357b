"""Simulated nodes through UDP into a bridge on a real broker: presence, events, requests."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from firmware_tools.simulate import generate, make_nodes, send_udp
from tests.conftest import settled
from tests.polling import wait_until


# a node's state on every beat it was heard on, as before the reporting policy: for the tests of
# the beat itself (the policy's defaults hold an unchanged state back for `refresh` seconds)
EVERY_CHANGE = {"refresh": 0}


def feed(port, nodes, duration, bridge, ext, *probes, seed=0):
    """Send the scenario, wait until the pipeline took every frame, the broker acknowledged what
    the bridge published, and each probe has received it."""
    stream = list(generate(nodes, duration, seed))
    sent = send_udp(iter(stream), "127.0.0.1", port, speed=0)
    assert wait_until(lambda: ext.udp.processed >= sent, 15), (ext.udp.processed, sent)
    settled(bridge)
    for probe in probes:
        probe.flush()
    return sent


def test_visit_scenario_gives_one_presence_edge_each_way(broker, node_bridge, make_probe):
    bridge, ext, port = node_bridge(broker)
    probe = make_probe(broker, "ruview/node/+/event")
    nodes = make_nodes(3, "visit", 60)
    feed(port, nodes, 60, bridge, ext, probe)
    for node in nodes:
        events = [m.json() for m in probe.on(f"ruview/node/node_{node.node_id}/event")]
        on = [e for e in events if e["event_type"] == "unknown_presence"]
        off = [e for e in events if e["event_type"] == "presence_cleared"]
        assert len(on) == 1 and len(off) == 1, events
        enter, leave = node.scenario.visits[0]
        assert enter <= on[0]["node_time"] <= enter + 2.0
        assert leave <= off[0]["node_time"] <= leave + 12.0
    state = bridge.states.get("binary_sensor.node_1_presence")
    assert state is not None and state.state == "off"


def test_requests_rename_calibrate_demote_remove(mosquitto, node_bridge, make_probe):
    bridge, ext, port = node_bridge(mosquitto)
    probe = make_probe(mosquitto, "ruview/#")
    feed(port, make_nodes(1, "breathing", 20, first_id=9), 20, bridge, ext, probe)
    state = probe.on("ruview/node/node_9")[-1].json()
    assert state["breathing_bpm"] > 10 and state["privacy_class"] == "anonymous"
    # someone was in the room from the start: the vitals keep warm-up from calling it empty
    assert state["persons"] == 1 and state["presence"] is True and state["occupancy"] is True

    def request(verb, body):
        probe.publish(f"ruview/bridge/request/{verb}", body)
        return probe.wait_topic(f"ruview/bridge/response/{verb}",
                                match=lambda m: m.json().get("transaction") == body["transaction"]).json()

    r = request("node/calibrate", {"node": "node_9", "transaction": 1})
    assert r["status"] == "ok" and r["data"]["seconds"] == 30
    r = request("node/privacy", {"node": "node_9", "class": "restricted", "transaction": 2})
    assert r["status"] == "ok"
    demoted = probe.wait_topic("ruview/node/node_9",
                               match=lambda m: m.json()["privacy_class"] == "restricted").json()
    assert "breathing_bpm" not in demoted
    r = request("node/privacy", {"node": "node_9", "class": "anonymous", "transaction": 3})
    assert r["status"] == "error" and "privacy rule 4" in r["error"]

    r = request("node/rename", {"from": "node_9", "to": "hall", "transaction": 4})
    assert r["status"] == "ok"
    probe.wait_topic("ruview/node/hall")
    assert probe.on("ruview/node/node_9")[-1].payload == b""  # old retained state cleared
    r = request("node/remove", {"node": "hall", "transaction": 5})
    assert r["status"] == "ok"
    settled(bridge)
    late = make_probe(mosquitto, "ruview/node/#")  # subscribed and flushed: retained copies are in
    assert not [m for m in late.messages if m.payload], "removed nodes leave nothing retained"
    r = request("node/remove", {"node": "nobody", "transaction": 6})
    assert r["status"] == "error" and "unknown node" in r["error"]


def test_silence_makes_a_node_unavailable_not_empty(mosquitto, node_bridge, make_probe):
    bridge, ext, port = node_bridge(mosquitto, offline_after=1)
    probe = make_probe(mosquitto, "ruview/node/#")
    feed(port, make_nodes(1, "empty", 15), 15, bridge, ext)
    probe.wait_topic("ruview/node/node_1/availability",
                     match=lambda m: m.json()["state"] == "offline", timeout=5)
    time.sleep(2 * bridge.config.nodes.max_delay)  # the scenario: silence outlasting every publish delay
    settled(bridge)
    probe.flush()
    topics = [m.topic for m in probe.messages]
    went_offline = max(i for i, m in enumerate(probe.messages)
                       if m.topic == "ruview/node/node_1/availability" and m.json()["state"] == "offline")
    assert "ruview/node/node_1" not in topics[went_offline:], "silence must not publish a new state"
    assert probe.on("ruview/node/node_1")[-1].json()["presence"] is False  # last decided, unchanged

    # home state says what HA would: the entities of a silent node are unavailable, not "off"
    home = make_probe(mosquitto, "ruview/state/#")
    for key in ("presence", "occupancy"):
        assert home.wait_topic(f"ruview/state/binary_sensor.node_1_{key}").json()["state"] == "unavailable"
    assert bridge.states.get("binary_sensor.node_1_presence").state == "unavailable"
    # and they come back with the next frames
    send_udp(generate(make_nodes(1, "empty", 3, seed=5), 3), "127.0.0.1", port, speed=0)
    home.wait_topic("ruview/state/binary_sensor.node_1_presence", 5, match=lambda m: m.json()["state"] == "off")
    probe.wait_topic("ruview/node/node_1/availability", 5, match=lambda m: m.json()["state"] == "online")


def _hhmm(when: datetime) -> str:
    return when.strftime("%H:%M")


def test_unexpected_occupancy_only_outside_expected_hours(mosquitto, node_bridge, make_probe):
    now = datetime.now()
    outside = f"{_hhmm(now + timedelta(hours=2))}-{_hhmm(now + timedelta(hours=3))}"
    inside = f"{_hhmm(now - timedelta(hours=1))}-{_hhmm(now + timedelta(hours=1))}"
    bridge, ext, port = node_bridge(mosquitto, devices={1: {"expected_hours": [outside]},
                                                        2: {"expected_hours": [inside]}})
    probe = make_probe(mosquitto, "ruview/node/+/event")
    feed(port, make_nodes(3, "visit", 60), 60, bridge, ext, probe)
    assert len([m for m in probe.messages if m.json()["event_type"] == "presence_cleared"]) == 3
    unexpected = [m for m in probe.messages if m.json()["event_type"] == "unexpected_occupancy"]
    assert [m.topic for m in unexpected] == ["ruview/node/node_1/event"]
    assert unexpected[0].json()["expected_hours"] == [outside]


def test_max_delay_caps_how_long_a_change_waits(mosquitto, node_bridge, make_probe):
    def state_times(**cfg):
        bridge, ext, port = node_bridge(mosquitto, publish_interval=30, reporting=EVERY_CHANGE, **cfg)
        probe = make_probe(mosquitto, "ruview/node/+")
        nodes = make_nodes(1, "empty", 3, first_id=len(cfg) + 20)
        send_udp(generate(nodes, 3), "127.0.0.1", port, speed=1)  # real time, scores changing
        assert wait_until(lambda: ext.udp.processed >= ext.udp.received > 0, 5)
        view = ext.pipeline.views[nodes[0].node_id]
        assert wait_until(lambda: view.dirty_since is None, 2 * bridge.config.nodes.max_delay + 1)
        settled(bridge)
        probe.flush()
        return [m.received for m in probe.messages if m.topic.endswith(f"node_{nodes[0].node_id}")]

    held = state_times()  # default cap 1 s
    assert 3 <= len(held) <= 5, held
    capped = state_times(max_delay=0.3)
    gaps = [b - a for a, b in zip(capped, capped[1:])]
    assert len(capped) >= 8 and max(gaps) <= 0.3 + 0.1 + 0.2, gaps


def test_node_state_and_availability_are_retained_for_late_subscribers(broker, node_bridge, make_probe):
    bridge, ext, port = node_bridge(broker)
    feed(port, make_nodes(1, "empty", 12, first_id=8), 12, bridge, ext)
    late = make_probe(broker, "ruview/node/#")  # HA or a dashboard that starts now
    availability = late.wait_topic("ruview/node/node_8/availability")
    state = late.wait_topic("ruview/node/node_8")
    assert availability.retain and availability.json() == {"state": "online"}
    assert state.retain and state.json()["node_id"] == 8
    assert not [m for m in late.messages if m.topic == "ruview/node/node_8/event" and m.retain]


def test_the_fall_bit_is_a_fall_for_both_classes_and_restricted_events_carry_no_scores(mosquitto, node_bridge,
                                                                                        make_probe):
    """Feature-state bit 3 is "anomaly triggered (fall)" (wire-format.md): fall_detected, as in the seed."""
    import socket

    from bridge.nodes import codec

    bridge, ext, port = node_bridge(mosquitto, devices={22: {"privacy_class": "restricted"}})
    probe = make_probe(mosquitto, "ruview/node/+/event", "ruview/node/+")

    def frame(node_id, seq, flags):
        return codec.encode_feature_state(codec.FeatureState(
            node_id, 0, seq, seq * 200_000, 0.5, 1.0, 0, 0, 0, 0, 0.7, 0, 1.0, flags, -50))

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for node_id in (21, 22):
            for seq in range(10):
                s.sendto(frame(node_id, seq, 0x01), ("127.0.0.1", port))
            for seq in range(10, 13):  # the fall bit, held for three frames: one event
                s.sendto(frame(node_id, seq, 0x01 | 0x08), ("127.0.0.1", port))
            s.sendto(frame(node_id, 13, 0x01), ("127.0.0.1", port))
            s.sendto(codec.encode_mesh_anomaly(codec.MeshAnomaly(node_id, 1, 2_800_000, 2, 1, 0.93, 0.4)),
                     ("127.0.0.1", port))  # reason 1, physics violation: an unrecognized pattern
    assert wait_until(lambda: ext.udp.processed >= 30, 5)
    settled(bridge)
    probe.flush()
    for node_id, restricted in ((21, False), (22, True)):
        events = [m.json() for m in probe.on(f"ruview/node/node_{node_id}/event")]
        kinds = [e["event_type"] for e in events]
        assert kinds.count("fall_detected") == 1, kinds
        assert kinds.count("unrecognized_activity_pattern") == 1, kinds
        pattern = next(e for e in events if e["event_type"] == "unrecognized_activity_pattern")
        assert ("anomaly_score" in pattern) is not restricted, pattern
        state = probe.on(f"ruview/node/node_{node_id}")[-1].json()
        assert ("anomaly_score" in state) is not restricted


def test_every_nodes_pending_state_goes_out_together_on_one_beat(mosquitto, node_bridge, make_probe):
    """Nodes that started 0.3 s apart still publish their scores on the same beat (one wakeup of
    the ticker and of the MQTT network thread per beat, not one per node), a beat a max_delay."""
    bridge, ext, port = node_bridge(mosquitto, publish_interval=1.0,  # max_delay 1 s: a 1 s beat
                                    reporting=EVERY_CHANGE)
    probe = make_probe(mosquitto, "ruview/node/+")
    nodes = make_nodes(5, "empty", 4, first_id=60)
    stream = sorted((t + 0.3 * i, data) for i, node in enumerate(nodes) for t, data in generate([node], 4))
    send_udp(iter(stream), "127.0.0.1", port, speed=1)
    assert wait_until(lambda: ext.udp.processed >= ext.udp.received > 0, 5)
    assert wait_until(lambda: all(v.dirty_since is None for v in ext.pipeline.views.values()), 3)
    settled(bridge)
    probe.flush()
    clusters: list[list] = []  # states received within 50 ms of the one before
    for m in sorted(probe.messages, key=lambda m: m.received):
        if clusters and m.received - clusters[-1][-1].received < 0.05:
            clusters[-1].append(m)
        else:
            clusters.append([m])
    beats = [c for c in clusters if len({m.topic for m in c}) == len(nodes)]
    assert len(beats) >= 3, [[m.topic[-7:] for m in c] for c in clusters]
    gaps = [b[0].received - a[0].received for a, b in zip(beats, beats[1:])]
    assert all(0.8 <= g <= 1.2 for g in gaps), gaps
