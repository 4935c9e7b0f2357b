"""What a user set for a node survives a restart; a change that cannot be stored is refused (issue 33).

In process (tests/harness.py) with real UDP: a bridge is started, told things, stopped, and a
new bridge on the same state directory must know them, before and whatever the broker retained.
"""

from __future__ import annotations

import os
from pathlib import Path
import socket
import threading

import orjson
import pytest

from bridge.app import Bridge
from bridge.catalog import validate_config

from bridge.nodes import codec
from bridge.nodes.codec import EdgeVitals, FeatureState
from bridge.nodes import recovery
from bridge.nodes.extension import NodesExtension
from tests.brokers import free_port
from tests.harness import LoopbackMqtt, Published, in_process
from tests.polling import wait_until


def _feature_state(node_id: int, seq: int, score: float = 1.0) -> bytes:
    return codec.encode_feature_state(FeatureState(
        node_id=node_id, mode=0, seq=seq, ts_us=seq * 10_000, motion_score=0.1, presence_score=score,
        respiration_bpm=14.0, respiration_conf=0.9, heartbeat_bpm=62.0, heartbeat_conf=0.9, anomaly_score=0.0,
        env_shift_score=0.0, node_coherence=0.9, quality_flags=0x07, rssi=-50))


def _vitals(node_id: int, ms: int) -> bytes:
    return codec.encode_edge_vitals(EdgeVitals(
        node_id=node_id, flags=0b111, breathing_bpm=15.0, heart_bpm=63.0, rssi=-50, n_persons=1,
        motion_energy=0.2, presence_score=2.0, timestamp_ms=ms))


def _bridge(port: int, **nodes):
    sections = {"nodes": {"udp": {"bind": "127.0.0.1", "port": port}, **nodes}}
    bridge, mqtt = in_process(sections, [NodesExtension()])
    return bridge, mqtt, bridge.extension("nodes")


def _send(port: int, datagrams: list[bytes]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for data in datagrams:
            sock.sendto(data, ("127.0.0.1", port))


def _ok(bridge, verb: str, **request) -> dict:
    answer = bridge.api.handle(verb, request)
    assert answer["status"] == "ok", answer
    return answer["data"]


def _heard(ext, node_id: int) -> bool:
    node = ext.registry.get(node_id)
    return node is not None and node.heard


def test_name_room_class_hours_and_thresholds_survive_a_restart():
    port = free_port()
    bridge, _, ext = _bridge(port)
    try:
        _send(port, [_feature_state(7, 1)])
        assert wait_until(lambda: _heard(ext, 7), 5), "node 7 heard"
        _ok(bridge, "node/rename", **{"from": "node_7", "to": "kitchen"})
        _ok(bridge, "node/privacy", node="kitchen", **{"class": "restricted"})
        _ok(bridge, "node/set", node="kitchen", room="Küche", expected_hours=["07:00-22:00"],
            enter_ratio=4.0, exit_ratio=2.0, hold=9)
    finally:
        bridge.stop()
    bridge, mqtt, ext = _bridge(port)  # no retained state reaches it: the store alone must say
    try:
        node = ext.registry.get(7)
        assert node is not None and node.name == "kitchen" and node.room == "Küche"
        assert ext.pipeline.gate.class_of(7).label == "restricted"
        settings = ext.pipeline.engine(7).settings
        assert (settings.enter_ratio, settings.exit_ratio, settings.hold) == (4.0, 2.0, 9.0)
        info = bridge.directory.get(7)
        assert info is not None and info.expected_hours == ("07:00-22:00",)
        listed = _ok(bridge, "info")["nodes"]
        assert {"node_id": 7, "name": "kitchen", "room": "Küche"}.items() <= listed[0].items()
    finally:
        bridge.stop()


def test_removed_node_forgets_what_was_set_and_register_is_kept():
    port = free_port()
    bridge, _, ext = _bridge(port)
    try:
        _send(port, [_feature_state(3, 1)])
        assert wait_until(lambda: _heard(ext, 3), 5)
        _ok(bridge, "node/rename", **{"from": "node_3", "to": "hall"})
        _ok(bridge, "node/remove", node="hall")
        _ok(bridge, "node/register", node_id=9, name="attic", room="Attic", privacy_class="restricted")
    finally:
        bridge.stop()
    bridge, _, ext = _bridge(port)
    try:
        assert ext.registry.get(3) is None, "a removed node is not remembered"
        attic = ext.registry.get(9)
        assert attic is not None and attic.name == "attic" and attic.room == "Attic"
        assert ext.pipeline.gate.class_of(9).label == "restricted"
        _send(port, [_feature_state(3, 1)])
        assert wait_until(lambda: _heard(ext, 3), 5)
        assert ext.registry.get(3).name == "node_3"
    finally:
        bridge.stop()


@pytest.mark.parametrize("room", ["x" * 65, "bad\x00room", "esc\x1b[31m", "evil\u202egnp", " padded",
                                  "zero\u200bwidth", ""])
def test_rooms_are_checked_like_names(room):
    port = free_port()
    bridge, _, ext = _bridge(port)
    try:
        _send(port, [_feature_state(4, 1)])
        assert wait_until(lambda: _heard(ext, 4), 5)
        for verb, request in (("node/set", {"node": 4, "room": room}),
                              ("node/register", {"node_id": 4, "room": room})):
            answer = bridge.api.handle(verb, request)
            assert answer["status"] == "error" and "room" in answer["error"], answer
        assert ext.registry.get(4).room is None
    finally:
        bridge.stop()


def test_a_refused_threshold_change_changes_nothing_and_says_every_problem():
    port = free_port()
    bridge, _, ext = _bridge(port)
    try:
        _send(port, [_feature_state(4, 1)])
        assert wait_until(lambda: _heard(ext, 4), 5)
        answer = bridge.api.handle("node/set", {"node": 4, "enter_ratio": 0.5, "hold": -1, "room": "Hall"})
        assert answer["status"] == "error" and "enter_ratio" in answer["error"] and "hold" in answer["error"]
        assert ext.registry.get(4).room is None, "nothing applied when anything is refused"
        answer = bridge.api.handle("node/set", {"node": 4, "enter_ratio": 2.0, "exit_ratio": 3.0})
        assert answer["status"] == "error" and "exit_ratio" in answer["error"]
        assert ext.pipeline.engine(4).settings.enter_ratio == 3.0
    finally:
        bridge.stop()


def test_a_change_the_store_cannot_keep_is_refused_and_not_applied():
    port = free_port()
    bridge, _, ext = _bridge(port)
    try:
        _send(port, [_feature_state(6, 1)])
        assert wait_until(lambda: _heard(ext, 6), 5)
        bridge.store.problem = f"{bridge.store.path}: cannot be written (the disk is full: free space there)"
        for verb, request in (("node/rename", {"from": "node_6", "to": "porch"}),
                              ("node/privacy", {"node": 6, "class": "restricted"}),
                              ("node/set", {"node": 6, "room": "Porch"})):
            answer = bridge.api.handle(verb, request)
            assert answer["status"] == "error" and "disk is full" in answer["error"], answer
        node = ext.registry.get(6)
        assert (node.name, node.room, ext.pipeline.gate.class_of(6).label) == ("node_6", None, "anonymous")
        assert bridge.health()["store"]["failed_writes"] == 3
    finally:
        bridge.stop()


def test_calibration_survives_a_restart_in_an_occupied_room():
    """Calibrated in an empty room (score ~1), restarted with someone there (score ~20): the stored
    baseline says "present" at once, where relearning would have called the person the empty room."""
    port = free_port()
    bridge, _, ext = _bridge(port, presence={"calibration": 2, "warmup": 2, "window": 0.5})
    try:
        _send(port, [_feature_state(2, 1)])
        assert wait_until(lambda: _heard(ext, 2), 5)
        _ok(bridge, "node/calibrate", node=2)
        _send(port, [_feature_state(2, seq, 1.0) for seq in range(2, 400)])  # 4 s of node time, empty
        assert wait_until(lambda: ext.settings.load().get(2, {}).get("baseline"), 5), "the calibration is stored"
        stored = ext.settings.load()[2]["baseline"]
        assert stored["how"] == "calibration" and 0.9 < stored["score"] < 1.1 and stored["taken_at"] > 0
    finally:
        bridge.stop()
    bridge, _, ext = _bridge(port, presence={"calibration": 2, "warmup": 2, "window": 0.5})
    try:
        _send(port, [_feature_state(2, seq, 20.0) for seq in range(1, 120)])
        assert wait_until(lambda: ext.pipeline.engine(2).present is True, 5), "present, from the stored baseline"
        assert abs(ext.pipeline.engine(2).baseline - stored["score"]) < 0.01
    finally:
        bridge.stop()


def test_config_edited_after_a_rename_wins():
    port = free_port()
    bridge, _, ext = _bridge(port, devices={5: {"name": "study"}})
    try:
        _ok(bridge, "node/rename", **{"from": "study", "to": "office"})
    finally:
        bridge.stop()
    bridge, _, ext = _bridge(port, devices={5: {"name": "study"}})
    try:
        assert ext.registry.get(5).name == "office", "the config still says what it said: the rename stands"
    finally:
        bridge.stop()
    bridge, _, ext = _bridge(port, devices={5: {"name": "library"}})
    try:
        assert ext.registry.get(5).name == "library", "config.yaml edited since: it wins"
    finally:
        bridge.stop()


def test_garbage_retained_after_migration_never_becomes_a_node(monkeypatch):
    monkeypatch.setattr(recovery, "RETAINED_READ_SECONDS", 0.2)
    port = free_port()
    bridge, mqtt, ext = _bridge(port)
    try:
        assert bridge.drain()
        assert wait_until(lambda: ext.ctx.store.get("retained-state-migrated") is not None, 10), "migration ran"
    finally:
        bridge.stop()
    bridge, mqtt, ext = _bridge(port)
    try:
        mqtt.inject("ruview/node/ghost", {"node_id": 200, "name": "ghost", "room": "x" * 100_000}, retain=True)
        assert bridge.drain()
        assert ext.registry.get(200) is None
    finally:
        bridge.stop()


VITAL_KEYS = (b"breathing", b"heart")


def test_a_demoted_node_restarted_20_times_under_100_hz_traffic_never_shows_vitals():
    """Finding 1: the stored class is applied before the first frame is admitted."""
    port = free_port()
    bridge, _, ext = _bridge(port)
    try:
        _send(port, [_feature_state(8, 1)])
        assert wait_until(lambda: _heard(ext, 8), 5)
        _ok(bridge, "node/privacy", node=8, **{"class": "restricted"})
    finally:
        bridge.stop()
    stop = threading.Event()

    def traffic() -> None:  # 100 frames/s: feature state and vitals, both carrying vitals
        seq = 2
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            while not stop.wait(0.01):
                sock.sendto(_feature_state(8, seq), ("127.0.0.1", port))
                sock.sendto(_vitals(8, seq * 10), ("127.0.0.1", port))
                seq += 1

    sender = threading.Thread(target=traffic, daemon=True)
    sender.start()
    leaked, published = [], 0
    try:
        for _ in range(20):
            bridge, mqtt, ext = _bridge(port)
            try:
                heard_at = ext.udp.received if ext.udp else 0
                assert wait_until(lambda: ext.udp.received > heard_at + 5, 5), "traffic reached the bridge"
                assert bridge.drain()
            finally:
                bridge.stop()
            node_messages = [p for p in mqtt.sent if "node_8" in p.topic or p.topic.startswith("ruview/node/")]
            published += len(node_messages)
            leaked += [p for p in node_messages if any(k in p.payload for k in VITAL_KEYS)]
    finally:
        stop.set()
        sender.join(5)
    assert published > 20, "the node's state was published in every run"
    assert leaked == [], leaked[:3]


def test_a_damaged_store_is_said_and_changes_are_refused_while_nodes_run():
    port = free_port()
    store = Path(os.environ["XDG_STATE_HOME"]) / "ruview-bridge" / "state.db"
    store.parent.mkdir(parents=True)
    store.write_bytes(b"this is not a database" * 100)
    bridge, _, ext = _bridge(port)
    try:
        health = bridge.health()["store"]
        assert health["writable"] is False and "damaged" in health["problem"] and str(store) in health["problem"]
        _send(port, [_feature_state(2, 1)])
        assert wait_until(lambda: _heard(ext, 2), 5), "nodes run on"
        answer = bridge.api.handle("node/rename", {"from": "node_2", "to": "shed"})
        assert answer["status"] == "error" and "damaged" in answer["error"]
        assert ext.registry.get(2).name == "node_2"
    finally:
        bridge.stop()
    assert store.read_bytes().startswith(b"this is not a database"), "the damaged file is left for the user"


def test_a_cleared_room_and_hours_stay_cleared_over_config_that_gives_them():
    port = free_port()
    devices = {5: {"room": "Kitchen", "expected_hours": ["08:00-20:00"]}}
    bridge, _, ext = _bridge(port, devices=devices)
    try:
        _ok(bridge, "node/set", node=5, room=None, expected_hours=None)
        assert ext.registry.get(5).room is None
    finally:
        bridge.stop()
    bridge, _, ext = _bridge(port, devices=devices)
    try:
        assert ext.registry.get(5).room is None and bridge.directory.get(5).expected_hours == ()
    finally:
        bridge.stop()


@pytest.mark.parametrize("taken_by", ["register", "default", "dash"])
def test_a_name_another_node_has_or_will_have_is_refused(taken_by):
    port = free_port()
    bridge, _, ext = _bridge(port)
    try:
        _send(port, [_feature_state(3, 1)])
        assert wait_until(lambda: _heard(ext, 3), 5)
        wanted = {"register": "attic", "default": "node_5", "dash": "living_room"}[taken_by]
        if taken_by == "register":
            _ok(bridge, "node/register", node_id=9, name="attic")  # not heard yet
            assert bridge.api.handle("node/register", {"node_id": 10, "name": "attic"})["status"] == "error"
        if taken_by == "dash":
            _ok(bridge, "node/register", node_id=9, name="living-room")  # the same entity ids as living_room
        answer = bridge.api.handle("node/rename", {"from": "node_3", "to": wanted})
        assert answer["status"] == "error" and "has or will have the name" in answer["error"], answer
        assert ext.registry.get(3).name == "node_3"
    finally:
        bridge.stop()


def test_stored_thresholds_that_cross_after_a_config_edit_are_made_consistent():
    port = free_port()
    bridge, _, ext = _bridge(port)
    try:
        _send(port, [_feature_state(4, 1)])
        assert wait_until(lambda: _heard(ext, 4), 5)
        _ok(bridge, "node/set", node=4, exit_ratio=2.9)
    finally:
        bridge.stop()
    bridge, _, ext = _bridge(port, presence={"enter_ratio": 2.0, "exit_ratio": 1.5})
    try:
        settings = ext.pipeline.engine(4).settings
        assert settings.exit_ratio <= settings.enter_ratio == 2.0
    finally:
        bridge.stop()


def test_retained_state_at_the_first_start_never_overrides_config_or_takes_a_name(monkeypatch):
    monkeypatch.setattr(recovery, "RETAINED_READ_SECONDS", 0.3)
    port = free_port()
    sections = {"nodes": {"udp": {"bind": "127.0.0.1", "port": port},
                          "devices": {3: {"name": "kitchen", "room": "Kitchen"}}}}
    made = []

    def loopback(router, state_topic, supervisor):
        mqtt = LoopbackMqtt(router, state_topic, supervisor)
        for name, state in (("hacked", {"node_id": 3, "name": "hacked", "room": "Evil room"}),
                            ("node_5", {"node_id": 200, "name": "node_5"})):
            mqtt.retained[f"ruview/node/{name}"] = Published(f"ruview/node/{name}", orjson.dumps(state), 1, True)
        made.append(mqtt)
        return mqtt

    config = validate_config({"mqtt": {"url": "mqtt://127.0.0.1:1"}, **sections}, "test", env={})
    bridge = Bridge(config, mqtt=loopback)
    bridge.add(NodesExtension())
    bridge.start()
    try:
        ext = bridge.extension("nodes")
        assert wait_until(lambda: ext.ctx.store.get("retained-state-migrated") is not None, 5)
        kitchen = ext.registry.get(3)
        assert (kitchen.name, kitchen.room) == ("kitchen", "Kitchen")
        squatter = ext.registry.get(200)
        assert squatter is None or squatter.name != "node_5", "another id's default name is not taken"
    finally:
        bridge.stop()


def test_a_stored_value_that_is_not_json_is_skipped_not_fatal():
    port = free_port()
    bridge, _, ext = _bridge(port)
    try:
        _ok(bridge, "node/register", node_id=9, name="attic")
        with bridge.store._lock:
            bridge.store._db.execute("INSERT OR REPLACE INTO settings VALUES ('nodes', 'node/11', x'ff00', 0)")
            bridge.store._db.execute("INSERT OR REPLACE INTO settings VALUES ('bridge', 'log_level', 'nope{', 0)")
    finally:
        bridge.stop()
    bridge, _, ext = _bridge(port)
    try:
        assert bridge.extension_state["nodes"]["state"] == "running"
        assert ext.registry.get(9).name == "attic" and ext.registry.get(11) is None
    finally:
        bridge.stop()
