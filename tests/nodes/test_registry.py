"""Node registry on its own: identity, packet loss, reboots, link quality."""

from __future__ import annotations

from bridge.nodes.codec import EdgeVitals, FeatureState
from bridge.nodes.registry import NodeRegistry


def fs(node_id=1, seq=0, ts_us=0, rssi=None, mode=0):
    return FeatureState(node_id, mode, seq, ts_us, 0.0, 1.0, 0, 0, 0, 0, 0, 0, 1.0, 1, rssi)


def vitals(node_id=1, ts_ms=0, rssi=-50):
    return EdgeVitals(node_id, 1, 12.0, 60.0, rssi, 1, 0.1, 1.0, ts_ms)


def test_a_node_exists_from_its_first_frame_with_its_configured_name():
    registry = NodeRegistry({3: {"name": "kitchen", "room": "Kitchen"}})
    node, new, rebooted = registry.observe(fs(3), "10.0.0.3", 5005, now=100.0)
    assert new and not rebooted and (node.name, node.room, node.address) == ("kitchen", "Kitchen", "10.0.0.3:5005")
    other, new, _ = registry.observe(fs(4), "10.0.0.4", 5005, now=100.0)
    assert new and other.name == "node_4" and other.room is None
    again, new, _ = registry.observe(fs(3, seq=1), "10.0.0.9", 6000, now=101.0)
    assert again is node and not new and node.address == "10.0.0.9:6000" and node.last_seen == 101.0
    assert len(registry) == 2 and registry.by_name("kitchen") is node and registry.get(9) is None


def test_gaps_are_loss_and_a_few_late_datagrams_are_neither_loss_nor_reboot():
    registry = NodeRegistry({})
    for seq in (0, 1, 2, 5, 6, 4, 6, 7):  # 3 and 4 missing at first; 4 then arrives late; 6 twice
        node, _, rebooted = registry.observe(fs(seq=seq, ts_us=seq * 100_000), "h", 1)
        assert not rebooted
    assert node.lost == 2 and node.reboots == 0
    assert node.frames["feature_state"] == 8 and node.packet_loss == round(2 / 10, 4)


def test_the_counter_wraps_without_loss():
    registry = NodeRegistry({})
    for seq in (65534, 65535, 0, 1):
        node, _, rebooted = registry.observe(fs(seq=seq), "h", 1)
        assert not rebooted
    assert node.lost == 0


def test_a_clock_or_counter_going_back_is_a_reboot():
    registry = NodeRegistry({})
    registry.observe(fs(seq=500, ts_us=60_000_000), "h", 1)
    node, _, rebooted = registry.observe(fs(seq=501, ts_us=1_000_000), "h", 1)  # clock back 59 s
    assert rebooted and node.reboots == 1 and node.lost == 0
    node, _, rebooted = registry.observe(fs(seq=10, ts_us=2_000_000), "h", 1)  # counter far back
    assert rebooted and node.reboots == 2


def test_rssi_and_mode_come_from_the_frames_that_carry_them():
    registry = NodeRegistry({})
    node, _, _ = registry.observe(fs(rssi=None, mode=1), "h", 1)
    assert node.rssi is None and node.mode == 1
    registry.observe(vitals(rssi=-61), "h", 1)
    assert node.rssi == -61
    registry.observe(vitals(ts_ms=100, rssi=0), "h", 1)  # 0 = not measured
    assert node.rssi == -61


def test_rename_configure_and_remove():
    registry = NodeRegistry({})
    node, _, _ = registry.observe(fs(5), "h", 1)
    registry.rename(5, "attic")
    assert registry.by_name("attic") is node and registry.by_name("node_5") is None
    assert registry.configure(5, name=None, room="Attic") is node and node.room == "Attic"
    assert registry.configure(6, name="cellar", room=None) is None  # not seen yet: applied when it is
    six, _, _ = registry.observe(fs(6), "h", 1)
    assert six.name == "cellar"
    assert registry.remove(5) is node and registry.get(5) is None and registry.remove(5) is None
    assert node.summary() == {"node_id": 5, "name": "attic", "room": "Attic", "online": False, "address": "h:1"}


def test_one_reboot_seen_by_two_frame_kinds_is_one_reboot():
    registry = NodeRegistry({})
    for i in range(10):  # feature state and vitals, as a C6 sends them
        registry.observe(fs(seq=100 + i, ts_us=60_000_000 + i * 100_000), "h", 1)
        registry.observe(vitals(ts_ms=60_000 + i * 100), "h", 1)
    reported = []
    for i in range(10):  # after the reboot both clocks start again near zero
        _, _, a = registry.observe(fs(seq=i, ts_us=i * 100_000), "h", 1)
        _, _, b = registry.observe(vitals(ts_ms=i * 100), "h", 1)
        reported += [a, b]
    node = registry.get(1)
    assert reported.count(True) == 1 and node.reboots == 1 and node.lost == 0
