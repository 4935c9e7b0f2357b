"""Nodes on MQTT: datagrams in, privacy-gated node state, availability and events out.

Pipeline per datagram (on the node-pipeline thread, never paho's):
decode (CRC) -> registry (loss, reboots, liveness) -> privacy gate -> node
fields -> publish. State goes out retained on `<base>/node/<name>` at once
when presence, motion or availability change and otherwise at most every
`nodes.publish_interval` seconds.

Presence here is the node firmware's own presence flag (edge vitals). The
calibrated per-node presence engine of issue 3 is not built yet.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, defaultdict
from datetime import datetime, timezone
from typing import Any

from bridge.core.payload import dumps
from bridge.nodes import codec
from bridge.nodes.codec import DecodeError, decode
from bridge.nodes.privacy import PrivacyGate
from bridge.nodes.registry import Node, NodeRegistry
from bridge.nodes.udp import Batch, UdpIngest

log = logging.getLogger(__name__)

IMMEDIATE = ("presence", "motion", "fall")  # changes published without waiting


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat()


def frame_fields(frame: codec.Frame) -> dict[str, Any]:
    """The node-state fields a frame contributes (before the privacy gate)."""
    if isinstance(frame, codec.FeatureState):
        fields: dict[str, Any] = {
            "presence_score": round(frame.presence_score, 3),
            "motion_score": round(frame.motion_score, 3),
            "mode": frame.mode, "calibrating": frame.calibrating,
            "anomaly": frame.anomaly, "anomaly_score": frame.anomaly_score,
            "env_shift": frame.env_shift, "env_shift_score": frame.env_shift_score,
            "coherence": frame.node_coherence,
        }
        if frame.respiration_valid:
            fields["breathing_bpm"] = round(frame.respiration_bpm, 1)
        if frame.heartbeat_valid:
            fields["heart_bpm"] = round(frame.heartbeat_bpm, 1)
        return fields
    if isinstance(frame, (codec.EdgeVitals, codec.FusedVitals)):
        fields = {"presence": frame.presence, "motion": frame.motion, "fall": frame.fall,
                  "presence_score": round(frame.presence_score, 3),
                  "motion_energy": round(frame.motion_energy, 3), "persons": frame.n_persons}
        if frame.breathing_bpm > 0:
            fields["breathing_bpm"] = round(frame.breathing_bpm, 1)
        if frame.heart_bpm > 0:
            fields["heart_bpm"] = round(frame.heart_bpm, 1)
        return fields
    if isinstance(frame, codec.MeshHealth):
        return {"mesh_role": frame.role, "packet_yield": frame.pkt_yield,
                "noise_floor_dbm": frame.noise_floor_dbm}
    if isinstance(frame, codec.MeshAnomaly):
        return {"anomaly": frame.reason != 0, "anomaly_score": round(frame.anomaly_score, 3)}
    return {}


class NodesExtension:
    def __init__(self, bridge) -> None:
        self.bridge = bridge
        cfg = bridge.config["nodes"]
        self.cfg = cfg
        devices = cfg["devices"]
        self.gate = PrivacyGate(cfg["privacy_class"], {n: d["privacy_class"] for n, d in devices.items()
                                                       if d["privacy_class"] is not None})
        self.registry = NodeRegistry(devices)
        self.errors: dict[str, Counter] = defaultdict(Counter)  # source ip -> reason -> count
        self._fields: dict[int, dict[str, Any]] = {}
        self._published: dict[int, tuple[float, dict[str, Any]]] = {}
        self._dirty: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.udp = UdpIngest(cfg["udp"]["bind"], cfg["udp"]["port"], self.handle,
                             cfg["udp"]["queue"]) if cfg["udp"]["enabled"] else None
        bridge.health_providers["nodes"] = self.health
        bridge.info_providers["nodes"] = lambda: [n.summary() for n in self.registry.all()]
        bridge.info_providers["node_count"] = lambda: len(self.registry)

    def start(self) -> None:
        if self.udp:
            self.udp.start()
        threading.Thread(target=self._tick, name="node-ticker", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        if self.udp:
            self.udp.stop()

    # ------------------------------------------------------------ pipeline

    def handle(self, batch: Batch) -> None:
        now = time.time()
        for data, (host, port) in batch:
            try:
                frame = decode(data)
            except DecodeError as exc:
                self.errors[host][exc.reason] += 1
                continue
            self._accept(frame, f"{host}:{port}", now)
        self._flush(now)

    def _accept(self, frame: codec.Frame, address: str, now: float) -> None:
        node, is_new, rebooted = self.registry.observe(frame, address, now)
        if is_new or not node.online:
            node.online = True
            self._availability(node)
            if is_new:
                self.bridge.mqtt.publish(self.bridge.topics.bridge_event, dumps(
                    {"type": "node_joined", "data": node.summary()}), qos=0)
        if rebooted:
            self._event(node, "node_rebooted", {"reboots": node.reboots})
        if not self.gate.admit(frame):
            return
        fields = self.gate.redact(node.node_id, frame_fields(frame))
        if not fields:
            return
        with self._lock:
            current = self._fields.setdefault(node.node_id, {})
            if fields.get("fall") and not current.get("fall"):
                self._event(node, "fall_detected", {})
            current.update(fields)
            self._dirty.add(node.node_id)

    def _flush(self, now: float) -> None:
        interval = self.cfg["publish_interval"]
        with self._lock:
            dirty = list(self._dirty)
        for node_id in dirty:
            node = self.registry.get(node_id)
            if node is None:
                continue
            last_at, last = self._published.get(node_id, (0.0, {}))
            fields = self._fields.get(node_id, {})
            urgent = any(fields.get(k) != last.get(k) for k in IMMEDIATE)
            if urgent or now - last_at >= interval:
                self._publish_state(node, now)

    def _publish_state(self, node: Node, now: float) -> None:
        with self._lock:
            fields = dict(self._fields.get(node.node_id, {}))
            self._dirty.discard(node.node_id)
        self._published[node.node_id] = (now, fields)
        state = {"node_id": node.node_id, "name": node.name, "room": node.room,
                 "privacy_class": self.gate.class_of(node.node_id).label, **fields,
                 "rssi": node.rssi, "last_seen": _iso(node.last_seen),
                 "frames": dict(node.frames), "packet_loss": node.packet_loss}
        topics = self.bridge.topics
        self.bridge.mqtt.publish(topics.node(node.name), dumps(state), qos=1, retain=True)
        if "presence" in fields:
            self.bridge.states.set(f"binary_sensor.{node.name.replace('-', '_')}_presence",
                                   "on" if fields["presence"] else "off", {"node_id": node.node_id})

    def _availability(self, node: Node) -> None:
        self.bridge.mqtt.publish(self.bridge.topics.node_availability(node.name), dumps(
            {"state": "online" if node.online else "offline"}), qos=1, retain=True)

    def _event(self, node: Node, event_type: str, data: dict[str, Any]) -> None:
        self.bridge.mqtt.publish(self.bridge.topics.node_event(node.name), dumps(
            {"event_type": event_type, "node": node.name, "time": _iso(time.time()), **data}), qos=1)

    def _tick(self) -> None:
        while not self._stop.wait(0.2):
            now = time.time()
            for node in self.registry.all():
                if node.online and now - node.last_seen > self.cfg["offline_after"]:
                    node.online = False
                    self._availability(node)
            self._flush(now)

    # ------------------------------------------------------------ reporting

    def health(self) -> dict[str, Any]:
        return {
            "count": len(self.registry),
            "udp": {"received": self.udp.received, "dropped": self.udp.dropped,
                    "backlog": self.udp.backlog} if self.udp else None,
            "decode_errors": {src: dict(c) for src, c in self.errors.items()},
            "privacy": self.gate.stats(),
            "per_node": {n.name: {"frames": dict(n.frames), "lost": n.lost, "reboots": n.reboots,
                                  "online": n.online} for n in self.registry.all()},
        }
