"""Known nodes: identity (id, name, room), liveness and link quality.

A node exists from its first valid frame. Sequence numbers give packet loss
(gaps, with wrap-around) and reboots (a counter or device clock going
backwards). Silence makes a node unavailable; it never means "room empty".

Two boards with one node id (a copied config, a spare flashed alike) interleave
their frames: each frame of one looks like a reboot or a gap of the other. Such a
second sender shows as *returns*: frames from a source address the node left a
moment ago, or counters and clocks that jump back to where the node was before
its last "reboot" (the other board's timeline). One board never does that — a
reboot starts a new timeline, and a new address (DHCP, a reboot's new port) is
not left and returned to — so RETURNS_FOR_CONFLICT returns within RETURN_WINDOW
make a conflict: said once (`conflicts`, `changed`), with no reboot counted and no
loss while it lasts, until RETURN_WINDOW passes without a return (`end_conflicts`).
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from bridge import names
from bridge.nodes import codec
from bridge.nodes.codec import Frame


class _Tracked(NamedTuple):
    """Where a frame kind keeps what liveness tracking reads (tuple indexes: the hot path)."""

    clock: int | None  # device clock field
    clock_us: int  # its unit in microseconds
    seq: int | None
    modulo: int  # seq wraps here
    mode: int | None
    rssi: int | None


def _tracked(cls, clock: str | None = None, clock_us: int = 1, seq: str | None = None,
             modulo: int = 0) -> _Tracked:
    at = {name: i for i, name in enumerate(cls._fields)}
    return _Tracked(at.get(clock), clock_us, at.get(seq), modulo, at.get("mode"), at.get("rssi"))


_TRACKED: dict[str, _Tracked] = {cls.kind: _tracked(cls, *where) for cls, *where in (
    (codec.FeatureState, "ts_us", 1, "seq", 1 << 16),
    (codec.FeatureVector, "timestamp_us", 1, "seq", 1 << 16),
    (codec.RawCsi, None, 1, "seq", 1 << 32),
    (codec.EdgeVitals, "timestamp_ms", 1000),
    (codec.FusedVitals, "timestamp_ms", 1000),
    (codec.MeshAnomaly, "ts_us", 1),
)}
_UNTRACKED = _Tracked(None, 1, None, 0, None, None)
_SEQ_KINDS = tuple(kind for kind, spec in _TRACKED.items() if spec.seq is not None)

_REORDER_WINDOW = 8  # a few late datagrams are reordering, not a reboot
_JUMP_US = 2_000_000  # a device clock jumping forward this far may be another board's
_RETURN_US = 5_000_000  # a clock within this much of the timeline left at a "reboot" returns to it
_RETURN_SEQ = 64  # a counter within this many of the timeline left returns to it
RETURN_WINDOW = 30.0  # seconds: returns this close together are one board's traffic interleaving another's
RETURNS_FOR_CONFLICT = 3  # returns within RETURN_WINDOW that make a conflict (two are a late datagram at most)
_SOURCES = 8  # source addresses a node remembers having left

NOTHING, REBOOTED, RETURNED = 0, 1, 2  # what a frame says of its node's timeline (_track)


@dataclass(slots=True)
class Node:
    node_id: int
    name: str
    room: str | None
    host: str = ""
    port: int = 0
    first_seen: float = 0.0
    last_seen: float = 0.0
    online: bool | None = False  # None: remembered from config or an earlier run, not heard yet
    heard: bool = True  # False until its first frame in this run
    remembered: bool = False  # known before it was heard (config, or retained state)
    mode: int | None = None
    rssi: int | None = None
    frames: dict[str, int] = field(default_factory=dict)  # a plain dict: the per-frame path is faster on one
    lost: int = 0
    reboots: int = 0
    firmware: str | None = None  # from its boot log on a serial link, when there is one
    conflict: bool = False  # two boards send with this id now
    conflicts: int = 0  # times that started, in this run
    conflict_addresses: tuple[str, str] = ("", "")  # the two senders' addresses (alike when one address)
    _last_seq: dict[str, int] = field(default_factory=dict)
    _last_clock: dict[str, int] = field(default_factory=dict)
    _prev_seq: dict[str, int] = field(default_factory=dict)  # the timeline left at the last reboot
    _prev_clock: dict[str, int] = field(default_factory=dict)
    _left: dict[str, float] = field(default_factory=dict)  # source address -> when the node last sent from it
    _other: str = ""  # the address before the current one
    _returns: int = 0  # returns since _returns_since
    _returns_since: float = 0.0
    _last_return: float = 0.0

    @property
    def packet_loss(self) -> float:
        counted = sum(self.frames.get(k, 0) for k in _SEQ_KINDS)
        return round(self.lost / (counted + self.lost), 4) if counted + self.lost else 0.0

    def summary(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "name": self.name, "room": self.room,
                "online": bool(self.online), "address": self.address if self.heard else None}

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


class NodeRegistry:
    def __init__(self, devices: dict[int, dict[str, Any]]) -> None:
        self._devices = devices
        self._nodes: dict[int, Node] = {}
        self._lock = threading.Lock()
        self.changed: list[Node] = []  # nodes whose conflict started since the caller last emptied it

    def __len__(self) -> int:
        return len(self._nodes)

    def get(self, node_id: int) -> Node | None:
        return self._nodes.get(node_id)

    def all(self) -> list[Node]:
        return list(self._nodes.values())

    def remember(self, node_id: int, now: float, *, name: str | None = None, room: str | None = None
                 ) -> Node:
        """A node known before it is heard (configured, or in the broker's retained state):
        it keeps its identity, and its Home Assistant entities, until it speaks or is removed."""
        with self._lock:
            node = self._nodes.get(node_id)
            if node is None:
                dev = self._devices.get(node_id, {})
                node = Node(node_id, dev.get("name") or name or f"node_{node_id}",
                            dev.get("room") if dev.get("room") is not None else room,
                            first_seen=now, last_seen=now, online=None, heard=False, remembered=True)
                self._nodes[node_id] = node
            return node

    def observe(self, frame: Frame, host: str, port: int, now: float | None = None
                ) -> tuple[Node, bool, bool]:
        """Record a valid frame; returns (node, first frame in this run, rebooted)."""
        now = time.time() if now is None else now
        node = self._nodes.get(frame.node_id)
        is_new = node is None or not node.heard
        if node is None:
            with self._lock:
                dev = self._devices.get(frame.node_id, {})
                node = Node(frame.node_id, dev.get("name") or f"node_{frame.node_id}",
                            dev.get("room"), first_seen=now)
                self._nodes[frame.node_id] = node
        node.heard = True
        returned = False
        if host != node.host or port != node.port:
            returned = self._moved(node, host, port, now)
        node.last_seen = now
        kind = frame.kind
        frames = node.frames
        frames[kind] = frames.get(kind, 0) + 1
        spec = _TRACKED.get(kind, _UNTRACKED)
        row: tuple[Any, ...] = frame  # fields read by the indexes in spec: their types vary by kind
        if spec.mode is not None:
            node.mode = row[spec.mode]
        if spec.rssi is not None:
            rssi = row[spec.rssi]
            if rssi is not None and rssi < 0:
                node.rssi = rssi
        event = self._track(node, kind, frame, spec)
        if event or returned:  # rare: a reboot, or a second sender
            if returned or event == RETURNED:
                self._returned(node, now, returned)
            elif not node.conflict:
                node.reboots += 1
                return node, is_new, True
        return node, is_new, False

    @staticmethod
    def _track(node: Node, kind: str, frame: Frame, spec: _Tracked) -> int:
        """NOTHING, REBOOTED (the frame starts a new timeline), or RETURNED (it continues the
        timeline the node left at its last reboot: another board's)."""
        event = NOTHING
        row: tuple[Any, ...] = frame  # fields read by the indexes in spec: their types vary by kind
        clock = before = None
        if spec.clock is not None:
            clock = row[spec.clock] * spec.clock_us
            before = node._last_clock.get(kind)
            if before is not None and (clock + 1_000_000 < before or clock > before + _JUMP_US):
                # back more than 1 s (a reboot?) or far forward (a gap?): or the other timeline
                prev = node._prev_clock.get(kind)
                if prev is not None and prev - 1_000_000 <= clock <= prev + _RETURN_US:
                    _swap(node)
                    event = RETURNED
                elif clock < before:
                    event = REBOOTED
            node._last_clock[kind] = clock
        seq = None
        if spec.seq is not None:
            seq, modulo = row[spec.seq], spec.modulo
            last = node._last_seq.get(kind)
            if last is not None and event != REBOOTED:
                step = (seq - last) % modulo
                if step > modulo - _REORDER_WINDOW or step == 0:
                    return event  # duplicate or slightly late: neither loss nor reboot, nor the newest
                if step > 1 and event == NOTHING:  # a gap or a restart: or the other timeline
                    prev_seq = node._prev_seq.get(kind)
                    if prev_seq is not None and (seq - prev_seq) % modulo <= _RETURN_SEQ:
                        _swap(node)
                        node._last_seq[kind] = seq
                        if clock is not None:
                            node._last_clock[kind] = clock
                        return RETURNED
                if step > modulo // 2:
                    event = REBOOTED  # far backwards: the counter restarted
                elif not node.conflict:
                    node.lost += step - 1
            node._last_seq[kind] = seq
        if event == REBOOTED:
            # one reboot, one event: every kind restarts with it, so start each kind afresh
            # (else vitals arriving just after feature state would report the same reboot);
            # the timeline left behind is kept, to know it if frames continue it (a second board)
            left_clock, left_seq = node._last_clock, node._last_seq
            if before is not None:
                left_clock[kind] = before
            if seq is not None and last is not None:
                left_seq[kind] = last
            node._prev_clock, node._prev_seq = left_clock, left_seq
            node._last_clock = {kind: clock} if clock is not None else {}
            node._last_seq = {kind: seq} if seq is not None else {}
        return event

    @staticmethod
    def _moved(node: Node, host: str, port: int, now: float) -> bool:
        """The node sends from another address: True when it is one it left within RETURN_WINDOW."""
        if node.host:
            left = node._left
            left[node.address] = node.last_seen
            if len(left) > _SOURCES:
                del left[min(left, key=left.__getitem__)]
            node._other = node.address
        node.host, node.port = host, port
        since = node._left.get(node.address)
        return since is not None and now - since <= RETURN_WINDOW

    def _returned(self, node: Node, now: float, by_address: bool) -> None:
        """A frame from the address or timeline the node left: another board, if it goes on."""
        if now - node._returns_since > RETURN_WINDOW:
            node._returns, node._returns_since = 0, now
        node._returns += 1
        node._last_return = now
        if not node.conflict and node._returns >= RETURNS_FOR_CONFLICT:
            node.conflict = True
            node.conflicts += 1
            node.conflict_addresses = (node._other if by_address else node.address, node.address)
            self.changed.append(node)

    def end_conflicts(self, now: float) -> list[Node]:
        """Nodes whose conflict is over: no return for RETURN_WINDOW. The one board left starts
        afresh (its next frame is neither a reboot nor loss)."""
        ended = []
        for node in list(self._nodes.values()):
            if node.conflict and now - node._last_return > RETURN_WINDOW:
                node.conflict = False
                node._returns = 0
                node._last_clock, node._last_seq, node._prev_clock, node._prev_seq = {}, {}, {}, {}
                node._left.clear()
                ended.append(node)
        return ended

    def set_firmware(self, node_id: int, version: str) -> Node | None:
        """A node's firmware version (from its boot log); the node if that changed what is known."""
        node = self._nodes.get(node_id)
        if node is None or node.firmware == version:
            return None
        node.firmware = version
        return node

    def rename(self, node_id: int, name: str) -> Node:
        with self._lock:
            node = self._nodes[node_id]
            node.name = name
            return node

    def configure(self, node_id: int, *, name: str | None, room: str | None, clear_room: bool = False
                  ) -> Node | None:
        """Set name and room for a node id (clear_room: no room, whatever config said); applied at
        once to a known node's room, and when the node first appears otherwise. Returns the node if
        already seen."""
        with self._lock:
            device = self._devices.setdefault(node_id, {})
            if name:
                device["name"] = name
            if room is not None or clear_room:
                device["room"] = room
            node = self._nodes.get(node_id)
            if node is not None and (room is not None or clear_room):
                node.room = room
            return node

    def name_holder(self, name: str) -> int | None:
        """The node id that has, or will have, a name whose entity ids `name` would share: a node
        heard or remembered, a configured or registered one, or another id's default name."""
        wanted = names.object_id(name)
        for node in self._nodes.values():
            if names.object_id(node.name) == wanted:
                return node.node_id
        for node_id, device in self._devices.items():
            if device.get("name") and names.object_id(device["name"]) == wanted:
                return node_id
        match = re.fullmatch(r"node_(\d+)", wanted)
        if match and names.is_node_id(int(match[1])) and not self._devices.get(int(match[1]), {}).get("name"):
            held = self._nodes.get(int(match[1]))
            if held is None or held.name == names.default_node_name(held.node_id):
                return int(match[1])
        return None

    def remove(self, node_id: int) -> Node | None:
        with self._lock:
            return self._nodes.pop(node_id, None)

    def by_name(self, name: str) -> Node | None:
        return next((n for n in self._nodes.values() if n.name == name), None)


def _swap(node: Node) -> None:
    """The node's frames continue the other timeline: it becomes the current one, and this the other."""
    node._last_clock, node._prev_clock = node._prev_clock, node._last_clock
    node._last_seq, node._prev_seq = node._prev_seq, node._last_seq
