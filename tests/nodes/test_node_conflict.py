"""Two boards with one node id: one `node_conflict` event and one warning, not a reboot flood.

Over real UDP: the simulator's frames for node 1, twice over (two boards, booted at different
times), interleaved as they would arrive, from two sockets (two addresses) or from one (a relay:
only the counters and clocks tell). A board that really reboots, or changes address once (DHCP),
still behaves as it did.
"""

from __future__ import annotations

import logging
import socket

from bridge.nodes import codec
from bridge.nodes.codec import EdgeVitals, FeatureState
from bridge.nodes.registry import RETURN_WINDOW, NodeRegistry
from firmware_tools.simulate import generate, make_nodes
from tests.conftest import served, settled
from tests.polling import wait_until

SECONDS = 10


def _board(seconds: float, *, booted_ago: float = 0.0, seq_from: int = 0, seed: int = 0,
           node_id: int = 1) -> list[tuple[float, bytes]]:
    """One board's frames: the simulator's, with its clocks as if it had booted `booted_ago`
    seconds before the stream starts, and its counter starting at `seq_from`."""
    out = []
    for t, data in generate(make_nodes(1, "empty", seconds, first_id=node_id, seed=seed), seconds, seed):
        frame = codec.decode(data)
        if isinstance(frame, FeatureState):
            data = codec.encode_feature_state(frame._replace(
                seq=(frame.seq + seq_from) % 65536, ts_us=frame.ts_us + int(booted_ago * 1e6)))
        elif isinstance(frame, EdgeVitals):
            data = codec.encode_edge_vitals(frame._replace(
                timestamp_ms=frame.timestamp_ms + int(booted_ago * 1000)))
        out.append((t, data))
    return out


def _send(port: int, streams: list[tuple[socket.socket, list[tuple[float, bytes]]]]) -> int:
    """Every stream's datagrams in time order, each from its own socket, as fast as possible."""
    merged = sorted(((t, i, data) for i, (_, stream) in enumerate(streams) for t, data in stream))
    for _, i, data in merged:
        streams[i][0].sendto(data, ("127.0.0.1", port))
    return len(merged)


def _sockets(n: int) -> list[socket.socket]:
    return [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(n)]


def _events(probe, kind: str) -> list[dict]:
    return [m.json() for m in probe.on("ruview/node/node_1/event") if m.json()["event_type"] == kind]


def _fed(bridge, ext, probe, sent: int) -> None:
    assert wait_until(lambda: ext.udp.processed >= sent, 15), (ext.udp.processed, sent)
    settled(bridge)
    served(probe, bridge)
    probe.flush()


def test_two_boards_with_one_id_from_two_addresses_are_one_conflict_not_a_reboot_flood(
        mosquitto, node_bridge, make_probe, caplog):
    bridge, ext, port = node_bridge(mosquitto)
    probe = make_probe(mosquitto, "ruview/node/node_1/event")
    first, second = _sockets(2)
    try:
        sent = _send(port, [(first, _board(SECONDS, booted_ago=300, seq_from=4000)),
                            (second, _board(SECONDS, booted_ago=20, seq_from=100, seed=1))])
        _fed(bridge, ext, probe, sent)
        addresses = sorted(f"127.0.0.1:{s.getsockname()[1]}" for s in (first, second))
    finally:
        first.close()
        second.close()
    conflicts = _events(probe, "node_conflict")
    assert len(conflicts) == 1, conflicts
    assert conflicts[0]["addresses"] == addresses and conflicts[0]["node_id"] == 1
    # before: 51 node_rebooted in 10 s; now at most the second board's first frame, which is
    # a reboot to all appearances until the first board is heard again
    assert len(_events(probe, "node_rebooted")) <= 1, _events(probe, "node_rebooted")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
                and "two boards send as node id 1" in r.getMessage()]
    assert len(warnings) == 1 and all(a in warnings[0] for a in addresses), warnings
    per_node = ext.health()["per_node"]["node_1"]
    assert per_node["conflicts"] == 1 and per_node["conflict"] is True and per_node["reboots"] <= 1


def test_two_boards_behind_one_address_show_in_counters_and_clocks_that_jump_back_and_forth(
        mosquitto, node_bridge, make_probe):
    bridge, ext, port = node_bridge(mosquitto)
    probe = make_probe(mosquitto, "ruview/node/node_1/event")
    (relay,) = _sockets(1)  # both boards' frames relayed from one address
    try:
        sent = _send(port, [(relay, _board(SECONDS, booted_ago=300, seq_from=4000)
                             + _board(SECONDS, booted_ago=20, seq_from=100, seed=1))])
        _fed(bridge, ext, probe, sent)
        address = f"127.0.0.1:{relay.getsockname()[1]}"
    finally:
        relay.close()
    conflicts = _events(probe, "node_conflict")
    assert len(conflicts) == 1 and conflicts[0]["addresses"] == [address], conflicts
    assert "jump back and forth" in conflicts[0]["reason"]
    assert len(_events(probe, "node_rebooted")) <= 1
    assert ext.health()["per_node"]["node_1"]["conflicts"] == 1


def test_a_board_that_changes_address_once_and_reboots_is_no_conflict(mosquitto, node_bridge, make_probe):
    """DHCP gives the board a new address mid-stream (its timeline goes on); later it reboots
    (clocks and counter from zero) on yet another port, as a rebooted board's socket has: one
    node_rebooted, as before, and no node_conflict."""
    bridge, ext, port = node_bridge(mosquitto)
    probe = make_probe(mosquitto, "ruview/node/node_1/event")
    before, after, rebooted = _sockets(3)
    stream = _board(2 * SECONDS, booted_ago=100)
    half = len(stream) // 2
    try:
        sent = _send(port, [(before, stream[:half]), (after, stream[half:])])
        _fed(bridge, ext, probe, sent)
        assert ext.registry.get(1).address == f"127.0.0.1:{after.getsockname()[1]}"
        sent += _send(port, [(rebooted, _board(SECONDS, seed=2))])
        _fed(bridge, ext, probe, sent)
    finally:
        for s in (before, after, rebooted):
            s.close()
    assert _events(probe, "node_conflict") == []
    assert len(_events(probe, "node_rebooted")) == 1
    node = ext.health()["per_node"]["node_1"]
    assert node["reboots"] == 1 and node["conflicts"] == 0 and node["lost"] == 0


# ------------------------------------------------------------ the registry on its own


def fs(seq: int, ts_us: int, node_id: int = 1) -> FeatureState:
    return FeatureState(node_id, 0, seq, ts_us, 0.0, 1.0, 0, 0, 0, 0, 0, 0, 1.0, 1, None)


def test_a_late_datagram_across_a_reboot_is_no_conflict_and_a_conflict_ends_when_one_board_is_left():
    registry = NodeRegistry({})
    now = 1000.0
    for i in range(10):
        registry.observe(fs(500 + i, 60_000_000 + i * 200_000), "10.0.0.5", 4000, now + i * 0.2)
    node, _, rebooted = registry.observe(fs(0, 100_000), "10.0.0.5", 4000, now + 2.0)
    assert rebooted and node.reboots == 1
    registry.observe(fs(510, 62_000_000), "10.0.0.5", 4000, now + 2.1)  # sent before the reboot, late
    for i in range(1, 10):
        _, _, rebooted = registry.observe(fs(i, 100_000 + i * 200_000), "10.0.0.5", 4000, now + 2.2 + i * 0.2)
        assert not rebooted
    assert not node.conflict and registry.changed == [] and node.reboots == 1

    # two boards from two addresses: a conflict after a few frames, and no reboots while it lasts
    t = now + 10
    for i in range(20):
        registry.observe(fs(3000 + i, 500_000_000 + i * 200_000), "10.0.0.5", 4000, t + i * 0.2)
        _, _, rebooted = registry.observe(fs(20 + i, 4_000_000 + i * 200_000), "10.0.0.9", 4000, t + i * 0.2)
    assert node.conflict and registry.changed == [node] and node.conflicts == 1
    assert sorted(node.conflict_addresses) == ["10.0.0.5:4000", "10.0.0.9:4000"]
    assert node.reboots <= 2
    reboots, lost = node.reboots, node.lost
    # one board left: its frames say nothing more (no reboot, no loss) ...
    for i in range(20, 30):
        _, _, rebooted = registry.observe(fs(3000 + i, 500_000_000 + i * 200_000), "10.0.0.5", 4000, t + i * 0.2)
        assert not rebooted
    assert (node.reboots, node.lost) == (reboots, lost)
    last = t + 29 * 0.2
    assert registry.end_conflicts(last + RETURN_WINDOW / 2) == [] and node.conflict  # still recent
    # ... and once no frame returned to the other board's address or timeline for RETURN_WINDOW,
    # the conflict is over; the board starts afresh, counted as before
    assert registry.end_conflicts(last + RETURN_WINDOW + 1) == [node] and not node.conflict
    for i in range(30, 40):
        _, _, rebooted = registry.observe(fs(3000 + i, 500_000_000 + i * 200_000), "10.0.0.5", 4000,
                                          last + RETURN_WINDOW + i * 0.2)
        assert not rebooted
    registry.observe(fs(3045, 500_000_000 + 45 * 200_000), "10.0.0.5", 4000, last + RETURN_WINDOW + 9)
    assert (node.reboots, node.lost) == (reboots, lost + 5)  # 40..44 lost: counted again
    _, _, rebooted = registry.observe(fs(1, 300_000), "10.0.0.5", 4001, last + RETURN_WINDOW + 12)
    assert rebooted and node.reboots == reboots + 1  # and a reboot is one again
