"""Known nodes: identity (id, name, room), liveness and link quality.

A node exists from its first valid frame. Sequence numbers give packet loss
(gaps, with wrap-around) and reboots (a counter or device clock going
backwards). Silence makes a node unavailable; it never means "room empty".
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

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
    _last_seq: dict[str, int] = field(default_factory=dict)
    _last_clock: dict[str, int] = field(default_factory=dict)

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
        node.host, node.port, node.last_seen = host, port, now
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
        rebooted = self._track(node, kind, frame, spec)
        return node, is_new, rebooted

    @staticmethod
    def _track(node: Node, kind: str, frame: Frame, spec: _Tracked) -> bool:
        rebooted = False
        row: tuple[Any, ...] = frame  # fields read by the indexes in spec: their types vary by kind
        if spec.clock is not None:
            clock = row[spec.clock] * spec.clock_us
            last = node._last_clock.get(kind)
            if last is not None and clock + 1_000_000 < last:  # device clock went back > 1 s
                rebooted = True
            node._last_clock[kind] = clock
        if spec.seq is not None:
            seq, modulo = row[spec.seq], spec.modulo
            last = node._last_seq.get(kind)
            if last is not None and not rebooted:
                step = (seq - last) % modulo
                if step > modulo - _REORDER_WINDOW or step == 0:
                    return False  # duplicate or slightly late: neither loss nor reboot, nor the newest
                if step > modulo // 2:
                    rebooted = True  # far backwards: the counter restarted
                else:
                    node.lost += step - 1
            node._last_seq[kind] = seq
        if rebooted:
            # one reboot, one event: every kind restarts with it, so start each kind afresh
            # (else vitals arriving just after feature state would report the same reboot)
            node.reboots += 1
            keep_clock, keep_seq = node._last_clock.get(kind), node._last_seq.get(kind)
            node._last_clock.clear()
            node._last_seq.clear()
            if keep_clock is not None:
                node._last_clock[kind] = keep_clock
            if keep_seq is not None:
                node._last_seq[kind] = keep_seq
        return rebooted

    def rename(self, node_id: int, name: str) -> Node:
        with self._lock:
            node = self._nodes[node_id]
            node.name = name
            return node

    def configure(self, node_id: int, *, name: str | None, room: str | None) -> Node | None:
        """Set name and room for a node id; applied at once to a known node's room,
        and when the node first appears otherwise. Returns the node if already seen."""
        with self._lock:
            device = self._devices.setdefault(node_id, {})
            if name:
                device["name"] = name
            if room is not None:
                device["room"] = room
            node = self._nodes.get(node_id)
            if node is not None and room is not None:
                node.room = room
            return node

    def remove(self, node_id: int) -> Node | None:
        with self._lock:
            return self._nodes.pop(node_id, None)

    def by_name(self, name: str) -> Node | None:
        return next((n for n in self._nodes.values() if n.name == name), None)
