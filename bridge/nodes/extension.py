"""Nodes on MQTT: datagrams in, privacy-gated node state, availability and events out.

Pipeline per datagram (on the node-pipeline thread, never paho's):
decode (CRC) -> registry (loss, reboots, liveness) -> privacy gate -> node
fields -> publish. State goes out retained on `<base>/node/<name>` at once
when presence, motion or availability change and otherwise at most every
`nodes.publish_interval` seconds.

Presence comes from the per-node PresenceEngine (presence.py) fed with the
feature-state presence_score (or the vitals score for nodes that send no
feature state); the firmware's own presence flag is not trusted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, defaultdict
from datetime import datetime, timezone
from typing import Any

from bridge.core.api import ApiError
from bridge.core.payload import PayloadError, dumps, parse_json
from bridge.mqtt.router import Message
from bridge.nodes import codec
from bridge.nodes.codec import DecodeError, decode
from bridge.nodes.presence import PresenceEngine, PresenceSettings
from bridge.nodes.privacy import PrivacyError, PrivacyGate
from bridge.nodes.registry import Node, NodeRegistry
from bridge.nodes.serial_ingest import SerialIngest
from bridge.nodes.udp import Batch, UdpIngest
from bridge.topics import is_slug
from bridge.config import privacy_class

log = logging.getLogger(__name__)

IMMEDIATE = ("presence", "occupancy", "motion", "fall", "calibrating")  # published at once


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
        fields = {"motion": frame.motion, "fall": frame.fall,
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
        self._engines: dict[int, PresenceEngine] = {}
        self._has_feature_state: set[int] = set()
        self._clock: dict[int, tuple[float, float]] = {}
        self._lock = threading.Lock()
        self._pipeline = threading.Lock()
        self._stop = threading.Event()
        self.udp = UdpIngest(cfg["udp"]["bind"], cfg["udp"]["port"], self.handle,
                             cfg["udp"]["queue"]) if cfg["udp"]["enabled"] else None
        self.serial = [SerialIngest(label, link["url"], link["baudrate"], self._handle_serial,
                                    self._log_line if link["log"] else None)
                       for label, link in cfg["serial"].items()]
        self._serial_node: dict[str, int] = {}  # label -> node id last seen on that link
        bridge.health_providers["nodes"] = self.health
        bridge.info_providers["nodes"] = lambda: [n.summary() for n in self.registry.all()]
        bridge.info_providers["node_count"] = lambda: len(self.registry)
        for verb, handler in (("node/calibrate", self._req_calibrate), ("node/rename", self._req_rename),
                              ("node/remove", self._req_remove), ("node/privacy", self._req_privacy)):
            bridge.api.register(verb, handler)

    def start(self) -> None:
        self.bridge.mqtt.subscribe(self.bridge.topics.node_set_filter, self._on_set,
                                   accept_retained=False)
        if self.udp:
            self.udp.start()
        for link in self.serial:
            link.start()
        threading.Thread(target=self._tick, name="node-ticker", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        if self.udp:
            self.udp.stop()
        for link in self.serial:
            link.stop()

    # ------------------------------------------------------------ pipeline

    def handle(self, batch: Batch) -> None:
        """Run a batch through the pipeline; UDP and serial readers may call it concurrently."""
        with self._pipeline:
            now = time.time()
            for data, (host, port) in batch:
                try:
                    frame = decode(data)
                except DecodeError as exc:
                    self.errors[host][exc.reason] += 1
                    continue
                self._accept(frame, f"{host}:{port}", now)
            self._flush(now)

    def _handle_serial(self, batch: Batch) -> None:
        for data, (source, _) in batch:  # deframed, so decoding cannot fail here
            self._serial_node[source.split(":", 1)[1]] = decode(data).node_id
        self.handle(batch)

    def _log_line(self, label: str, text: str) -> None:
        node = self.registry.get(self._serial_node.get(label, -1))
        if node is not None:
            self.bridge.mqtt.publish(f"{self.bridge.topics.node(node.name)}/log", dumps(
                {"line": text, "level": text[:1] if text[:2] in ("E ", "W ", "I ", "D ", "V ") else None}),
                qos=0)

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
        fields = frame_fields(frame)
        fields.update(self._presence(node, frame, now))
        fields = self.gate.redact(node.node_id, fields)
        if not fields:
            return
        with self._lock:
            current = self._fields.setdefault(node.node_id, {})
            if fields.get("fall") and not current.get("fall"):
                self._event(node, "fall_detected", {})
            if fields.get("anomaly") and not current.get("anomaly"):
                self._event(node, "unrecognized_activity_pattern",
                            {"anomaly_score": fields.get("anomaly_score")})
            if "presence" in fields and fields["presence"] is not None and \
                    current.get("presence") is not None and fields["presence"] != current["presence"]:
                self._event(node, "unknown_presence" if fields["presence"] else "presence_cleared",
                            {"presence_score": fields.get("presence_score"),
                             "node_time": round(self._clock[node.node_id][0], 3)})
            current.update(fields)
            self._dirty.add(node.node_id)

    def engine(self, node_id: int) -> PresenceEngine:
        engine = self._engines.get(node_id)
        if engine is None:
            override = self.cfg["devices"].get(node_id, {})
            engine = self._engines[node_id] = PresenceEngine(
                PresenceSettings.merged(self.cfg["presence"], override))
        return engine

    def _presence(self, node: Node, frame: codec.Frame, now: float) -> dict[str, Any]:
        if isinstance(frame, codec.FeatureState):
            self._has_feature_state.add(node.node_id)
        elif not (isinstance(frame, (codec.EdgeVitals, codec.FusedVitals))
                  and node.node_id not in self._has_feature_state):
            return {}
        d = self.engine(node.node_id).update(self._node_time(node, frame), frame.presence_score)
        return {"presence": d.present, "occupancy": d.occupied, "presence_score": d.smoothed,
                "baseline": d.baseline, "calibrating": d.calibrating}

    def _node_time(self, node: Node, frame: codec.Frame) -> float:
        """The node's own clock in seconds, kept monotonic across reboots.

        Device time, not arrival time: network jitter and replay speed then cannot bend
        the engine's windows and hold times.
        """
        t = frame.ts_us / 1e6 if isinstance(frame, codec.FeatureState) else frame.timestamp_ms / 1e3
        last, offset = self._clock.get(node.node_id, (None, 0.0))
        if last is not None and t + offset < last:
            offset = last - t  # clock restarted (reboot): continue from where it was
        self._clock[node.node_id] = (t + offset, offset)
        return t + offset

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
        entity = node.name.replace("-", "_")
        for key in ("presence", "occupancy", "motion"):
            if fields.get(key) is not None:
                self.bridge.states.set(f"binary_sensor.{entity}_{key}", "on" if fields[key] else "off",
                                       {"node_id": node.node_id, "room": node.room})

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

    # ------------------------------------------------------------ commands

    def _node_from(self, request: dict[str, Any], key: str = "node") -> Node:
        ref = request.get(key, request.get("value"))
        node = self.registry.by_name(str(ref)) if ref is not None else None
        if node is None and isinstance(ref, int):
            node = self.registry.get(ref)
        if node is None:
            raise ApiError(f"unknown node {ref!r} (known: "
                           f"{', '.join(n.name for n in self.registry.all()) or 'none yet'})")
        return node

    def _req_calibrate(self, request: dict[str, Any]) -> dict[str, Any]:
        node = self._node_from(request)
        self.engine(node.node_id).calibrate(self._clock.get(node.node_id, (0.0, 0))[0])
        return {"node": node.name, "seconds": self.engine(node.node_id).settings.calibration}

    def _on_set(self, msg: Message) -> None:
        name = msg.topic.split("/")[-2]
        try:
            body = parse_json(msg.payload)
        except PayloadError as exc:
            log.warning("ignored %s: %s", msg.topic, exc)
            return
        node = self.registry.by_name(name)
        if node is None:
            log.warning("ignored %s: no node named %r", msg.topic, name)
        elif body.get("calibrate") is True:
            self.engine(node.node_id).calibrate(self._clock.get(node.node_id, (0.0, 0))[0])
            log.info("calibrating %s: keep the room empty for %.0f s", name,
                     self.engine(node.node_id).settings.calibration)

    def _clear(self, node: Node) -> None:
        topics = self.bridge.topics
        for topic in (topics.node(node.name), topics.node_availability(node.name)):
            self.bridge.mqtt.publish(topic, b"", qos=1, retain=True)
        for key in ("presence", "occupancy", "motion"):
            self.bridge.states.remove(f"binary_sensor.{node.name.replace('-', '_')}_{key}")

    def _req_rename(self, request: dict[str, Any]) -> dict[str, Any]:
        node = self._node_from(request, "from")
        new = request.get("to")
        if not isinstance(new, str) or not is_slug(new):
            raise ApiError('"to" must be a name of [a-z0-9_-]')
        if self.registry.by_name(new):
            raise ApiError(f"a node is already named {new!r}")
        old = node.name
        self._clear(node)
        self.registry.rename(node.node_id, new)
        self._availability(node)
        self._publish_state(node, time.time())
        return {"from": old, "to": new}

    def _req_remove(self, request: dict[str, Any]) -> dict[str, Any]:
        node = self._node_from(request)
        self._clear(node)
        self.registry.remove(node.node_id)
        self._engines.pop(node.node_id, None)
        self._fields.pop(node.node_id, None)
        return {"node": node.name}

    def _req_privacy(self, request: dict[str, Any]) -> dict[str, Any]:
        node = self._node_from(request)
        try:
            cls = self.gate.demote(node.node_id, privacy_class(request.get("class")))
        except (PrivacyError, ValueError) as exc:
            raise ApiError(str(exc)) from None
        with self._lock:
            self._fields[node.node_id] = self.gate.redact(node.node_id, self._fields.get(node.node_id, {}))
        self._publish_state(node, time.time())
        return {"node": node.name, "privacy_class": cls.label}

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
