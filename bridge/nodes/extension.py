"""Nodes on MQTT: datagrams in, privacy-gated node state, availability and events out.

Pipeline per datagram (on the udp-ingest or serial thread, never paho's):
decode (CRC) -> registry (loss, reboots, liveness) -> privacy gate -> the
node's view (nodestate.py: latest frames, presence engine) -> events.
State goes out retained on `<base>/node/<name>` at once when presence,
occupancy, motion, fall or calibrating change; every node's other changes go out
together on one beat, every min(`nodes.publish_interval`, `nodes.max_delay`) seconds.

Presence comes from the per-node PresenceEngine (presence.py) fed with the
feature-state presence_score (or the vitals score for nodes that send no
feature state); the firmware's own presence flag is not trusted.

What other features may know of the nodes goes into the node directory
(core/directory.py), already gated; they never reach into this module.

A node the bridge knows — configured in `nodes.devices`, or with retained state
under `<base>/node/+` from an earlier run — exists from the start (offline until
it speaks), so a restart while it is quiet keeps its Home Assistant entities;
only `node/remove`, a rename or the privacy class clears them. A node that goes
offline has its home-state entities read `unavailable`, as HA's do.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, defaultdict
from datetime import datetime, timezone
from typing import Any

from bridge import names
from bridge.core.api import ApiError
from bridge.core.directory import NodeInfo
from bridge.core.payload import PayloadError, dumps, parse_json
from bridge.core.rate import RateMeter
from bridge.extension import Extension, ExtensionContext
from bridge.mqtt.router import Message
from bridge.nodes.codec import DecodeError, decode
from bridge.nodes.config import NodesConfig
from bridge.nodes.nodestate import URGENT, Flags, NodeView
from bridge.nodes.presence import THRESHOLD_RANGES, PresenceEngine, PresenceSettings
from bridge.nodes.registry import Node, NodeRegistry
from bridge.nodes.schedule import ExpectedHours
from bridge.nodes.serial_ingest import SerialIngest
from bridge.nodes.udp import Batch, UdpIngest
from bridge.privacy import PrivacyClass, PrivacyError, PrivacyGate

log = logging.getLogger(__name__)

HOME_STATE_KEYS = ("presence", "occupancy", "motion")  # binary_sensor.<name>_<key> in home state
RETAINED_READ_SECONDS = 5.0  # how long after the first session retained node states are read
OFFLINE_CHECK = 1.0  # seconds between looks for nodes gone silent (at most a quarter of offline_after)
SAY_EVERY = 10.0  # at most one console line per node per this many seconds about its presence


def _next(due: float, period: float, clock: float) -> float:
    """The next time on a fixed-rate schedule; after a stall, one period from now (no catch-up burst)."""
    due += period
    return due if due > clock else clock + period


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat()


class NodesExtension(Extension):
    name = "nodes"
    Config = NodesConfig

    def start(self, ctx: ExtensionContext) -> None:
        self.ctx = ctx
        self.cfg = cfg = ctx.config
        self.topics = ctx.topics
        devices = cfg.devices
        self.gate = PrivacyGate(cfg.privacy_class, {n: d.privacy_class for n, d in devices.items()
                                                    if d.privacy_class is not None})
        self.registry = NodeRegistry({n: {"name": d.name, "room": d.room} for n, d in devices.items()})
        self.directory = ctx.node_directory()
        self.errors: dict[str, Counter] = defaultdict(Counter)  # source ip -> reason -> count
        self._views: dict[int, NodeView] = {}
        self._urgent: set[int] = set()
        self._expected = {n: ExpectedHours(d.expected_hours) for n, d in devices.items() if d.expected_hours}
        self._pipeline = threading.RLock()
        spawn = lambda name, target, stop: ctx.spawn(name, target, stop)  # noqa: E731
        self.udp = UdpIngest(cfg.udp.bind, cfg.udp.port, self.handle, cfg.udp.queue,
                             spawn=spawn) if cfg.udp.enabled else None
        self.serial = [SerialIngest(label, link.url, link.baudrate, self._handle_serial,
                                    self._log_line if link.log else None, spawn=spawn)
                       for label, link in cfg.serial.items()]
        self._serial_node: dict[str, int] = {}  # label -> node id last seen on that link
        self._fps = RateMeter(lambda: self.frames_received)
        self._said: dict[int, tuple[float, int]] = {}  # node id -> (last presence line, lines held back)
        ctx.add_health("nodes", self.health)
        ctx.add_info("nodes", lambda: [n.summary() for n in self.registry.all()])
        ctx.add_info("node_count", lambda: len(self.registry))
        for verb, handler in (("node/calibrate", self._req_calibrate), ("node/rename", self._req_rename),
                              ("node/remove", self._req_remove), ("node/privacy", self._req_privacy),
                              ("node/register", self._req_register)):
            ctx.register_request(verb, handler)
        ctx.mqtt.subscribe(self.topics.node_set_filter, self._on_set, accept_retained=False)
        started = time.time()
        for node_id in devices:
            self._changed(self.registry.remember(node_id, started))
        self._retained_route = None
        self._retained_done = False
        ctx.mqtt.on_session(self._read_retained_nodes)
        if self.udp:
            self.udp.start()
        for link in self.serial:
            link.start()
        ctx.spawn("ticker", self._tick)

    def stop(self) -> None:
        if self.udp:
            self.udp.stop()
        for link in self.serial:
            link.stop()

    # ------------------------------------------------------------ pipeline

    def handle(self, batch: Batch) -> None:
        """Run a batch through the pipeline; UDP and serial readers may call it concurrently.

        The loop is the per-frame path (100,000 frames/s and more), so what it calls on every frame
        is bound once per batch and what happens rarely (a node joining, coming back, rebooting)
        is in `_heard`."""
        with self._pipeline:
            now = time.time()
            errors, views, observe, admit = self.errors, self._views, self.registry.observe, self.gate.admit
            for data, (host, port) in batch:
                try:
                    frame = decode(data)
                except DecodeError as exc:
                    errors[host][exc.reason] += 1
                    continue
                node, is_new, rebooted = observe(frame, host, port, now)
                if is_new or rebooted or not node.online:
                    self._heard(node, is_new, rebooted)
                if not admit(frame.kind):
                    continue
                view = views.get(node.node_id) or self._view(node.node_id)
                before = view.flags
                after = view.flags = view.add(frame, now)
                if after != before:
                    self._edges(node, view, before, after, now)
            for node_id in self._urgent:
                self._publish_state(node_id, now)
            self._urgent.clear()

    def _handle_serial(self, batch: Batch) -> None:
        for data, (source, _) in batch:  # deframed, so decoding cannot fail here
            self._serial_node[source.split(":", 1)[1]] = decode(data).node_id
        self.handle(batch)

    def _log_line(self, label: str, text: str) -> None:
        node = self.registry.get(self._serial_node.get(label, -1))
        if node is not None:
            self.ctx.mqtt.publish(self.topics.node_log(node.name), dumps(
                {"line": text, "level": text[:1] if text[:2] in ("E ", "W ", "I ", "D ", "V ") else None}),
                qos=0)

    def _heard(self, node: Node, is_new: bool, rebooted: bool) -> None:
        """A node heard for the first time in this run, again after silence, or after a reboot."""
        if is_new or not node.online:
            node.online = True
            self._availability(node)
            if is_new:
                if not node.remembered:
                    self.ctx.mqtt.publish(self.topics.bridge_event, dumps(
                        {"type": "node_joined", "data": node.summary()}), qos=0)
                    log.info("node %s (%d) joined from %s", node.name, node.node_id, node.address)
                self._changed(node)
        if rebooted:
            self._event(node, "node_rebooted", {"reboots": node.reboots})

    def _edges(self, node: Node, view: NodeView, before: Flags, after: Flags, now: float) -> None:
        """Events and immediate publishing when a flag changes."""
        if any(getattr(before, k) != getattr(after, k) for k in URGENT):
            self._urgent.add(node.node_id)
        if after.fall and not before.fall:
            self._event(node, "fall_detected", {})
        if after.anomaly and not before.anomaly:
            self._event(node, "unrecognized_activity_pattern",
                        {"anomaly_score": view.fields().get("anomaly_score")})
        if before.presence is not None and after.presence != before.presence:
            score = view.engine.decision(view.clock or 0.0).smoothed
            self._event(node, "unknown_presence" if after.presence else "presence_cleared",
                        {"presence_score": score, "node_time": round(view.clock or 0.0, 3)})
            self._say_presence(node, after.presence, now)
        if after.occupancy and not before.occupancy:
            hours = self._expected.get(node.node_id)
            if hours is not None and not hours.expects(datetime.fromtimestamp(now)):
                self._event(node, "unexpected_occupancy",
                            {"expected_hours": hours.text, "room": node.room})

    def _say_presence(self, node: Node, present: bool, now: float) -> None:
        """One console line per change, at most one per node every SAY_EVERY seconds."""
        last, held = self._said.get(node.node_id, (0.0, 0))
        if now - last < SAY_EVERY:
            self._said[node.node_id] = (last, held + 1)
            return
        more = f" ({held} more change{'s' if held != 1 else ''} in the last {SAY_EVERY:.0f} s)" if held else ""
        log.info("%s: %s%s", node.name, "presence" if present else "presence cleared", more)
        self._said[node.node_id] = (now, 0)

    @property
    def frames_received(self) -> int:
        """Frames taken from UDP and serial so far (the console's frames/s)."""
        return (self.udp.received if self.udp else 0) + sum(link.frames for link in self.serial)

    def _view(self, node_id: int) -> NodeView:
        settings = PresenceSettings.merged(self.cfg.presence.model_dump(), self.cfg.device(node_id).overrides())
        view = self._views[node_id] = NodeView(PresenceEngine(settings))
        return view

    def engine(self, node_id: int) -> PresenceEngine:
        return (self._views.get(node_id) or self._view(node_id)).engine

    def _flush_due(self, now: float) -> None:
        """Publish every node with a pending change; called on the beat (`_tick`)."""
        for node_id, view in list(self._views.items()):
            if view.dirty_since is not None:
                self._publish_state(node_id, now)

    def _publish_state(self, node_id: int, now: float) -> None:
        node, view = self.registry.get(node_id), self._views.get(node_id)
        if node is None or view is None:
            return
        view.dirty_since = None
        fields = self.gate.redact(node_id, view.fields())
        state = {"node_id": node_id, "name": node.name, "room": node.room,
                 "privacy_class": self.gate.class_of(node_id).label, **fields,
                 **({"bridge": self.topics.instance} if self.topics.share_group else {}),
                 "thresholds": {k: getattr(view.engine.settings, k) for k in THRESHOLD_RANGES},
                 "rssi": node.rssi, "last_seen": _iso(node.last_seen),
                 "frames": dict(node.frames), "packet_loss": node.packet_loss}
        self.ctx.mqtt.publish(self.topics.node(node.name), dumps(state), qos=1, retain=True)
        for key in HOME_STATE_KEYS:
            if fields.get(key) is not None:
                self.ctx.states.set(names.node_entity_id("binary_sensor", node.name, key),
                                    "on" if fields[key] else "off", {"node_id": node_id, "room": node.room})
        self.directory.update(node_id, state=state)

    def _availability(self, node: Node) -> None:
        self.ctx.mqtt.publish(self.topics.node_availability(node.name), dumps(
            {"state": "online" if node.online else "offline"}), qos=1, retain=True)
        self.directory.update(node.node_id, online=bool(node.online))
        if not node.online:  # as in HA: a silent node's entities are unavailable, not their last value
            for key in HOME_STATE_KEYS:
                entity = names.node_entity_id("binary_sensor", node.name, key)
                if self.ctx.states.get(entity) is not None:
                    self.ctx.states.set(entity, "unavailable", {"node_id": node.node_id, "room": node.room})

    def _event(self, node: Node, event_type: str, data: dict[str, Any]) -> None:
        data = self.gate.redact(node.node_id, data)  # Restricted events cross without their scores
        event = {"event_type": event_type, "node": node.name, "time": _iso(time.time()), **data}
        self.ctx.mqtt.publish(self.topics.node_event(node.name), dumps(event), qos=1)
        self.directory.event(node.node_id, event)

    def _tick(self) -> None:
        """Mark silent nodes offline, and publish pending state on one beat for every node.

        The beat is min(publish_interval, max_delay) seconds, so a node publishes a non-urgent
        change at most once a beat and no change waits longer than max_delay. One beat for all
        nodes, not a schedule per node: each beat costs this thread and the MQTT network thread
        a wakeup or two however many nodes publish on it, where the per-node schedules on a
        0.2 s tick woke this thread 5 times a second and the network thread for each node.
        """
        beat = min(self.cfg.publish_interval, self.cfg.max_delay)
        check = min(OFFLINE_CHECK, self.cfg.offline_after / 4)  # offline within a quarter of offline_after
        next_beat = next_check = time.monotonic()
        while not self.ctx.stopping.wait(max(0.0, min(next_beat, next_check) - time.monotonic())):
            clock, now = time.monotonic(), time.time()
            if clock >= next_check:
                next_check = _next(next_check, check, clock)
                self._mark_silent_offline(now)
            if clock >= next_beat:
                next_beat = _next(next_beat, beat, clock)
                with self._pipeline, self.ctx.mqtt.burst():
                    self._flush_due(now)

    def _mark_silent_offline(self, now: float) -> None:
        for node in self.registry.all():
            if node.online is not False and now - node.last_seen > self.cfg.offline_after:
                node.online = False
                self._availability(node)
                if node.heard:
                    log.info("node %s (%d) went offline: nothing heard for %.0f s", node.name,
                             node.node_id, now - node.last_seen)

    # ------------------------------------------------------------ nodes from an earlier run

    def _read_retained_nodes(self) -> None:
        """On the first session, learn the nodes an earlier run left retained (then stop listening)."""
        if self._retained_route is not None or self._retained_done:
            return
        self._retained_route = self.ctx.mqtt.subscribe(self.topics.node_state_filter, self._on_retained_state,
                                                       no_local=True)
        self.ctx.call_later(RETAINED_READ_SECONDS, self._stop_reading_retained)

    def _stop_reading_retained(self) -> None:
        if self._retained_route is not None:
            self.ctx.mqtt.unsubscribe(self._retained_route)
            self._retained_route = None
            self._retained_done = True

    def _on_retained_state(self, msg: Message) -> None:
        if not msg.retain or not msg.payload:
            return  # a live publish (ours, or an empty one clearing a topic)
        name = msg.topic.rsplit("/", 1)[1]
        try:
            state = parse_json(msg.payload)
        except PayloadError:
            return
        node_id = state.get("node_id")
        if not (isinstance(node_id, int) and not isinstance(node_id, bool) and 1 <= node_id <= 255) \
                or state.get("name") != name or not names.is_node_name(name):
            return
        owner = state.get("bridge")
        if self.topics.share_group and owner != self.topics.instance:
            return  # another instance's node
        with self._pipeline:
            if self.registry.get(node_id) is not None and self.registry.get(node_id).heard:
                return  # it spoke already in this run
            taken = self.registry.by_name(name)
            node = self.registry.remember(node_id, time.time(),
                                          name=name if taken is None or taken.node_id == node_id else None,
                                          room=state.get("room") if isinstance(state.get("room"), str) else None)
            if state.get("privacy_class") == "restricted" and self.gate.class_of(node_id) < PrivacyClass.RESTRICTED:
                self.gate.demote(node_id, PrivacyClass.RESTRICTED)  # a demotion outlives the restart (privacy rule 4)
            if node.name != name:  # renamed in config while the bridge was down: clear the old topics
                for topic in (self.topics.node(name), self.topics.node_availability(name)):
                    self.ctx.mqtt.publish(topic, b"", qos=1, retain=True)
            self._changed(node)

    # ------------------------------------------------------------ commands

    def _node_from(self, request: dict[str, Any], key: str = "node") -> Node:
        ref = request.get(key, request.get("value"))
        node = self.registry.by_name(ref) if isinstance(ref, str) else None
        if node is None and isinstance(ref, int) and not isinstance(ref, bool):
            node = self.registry.get(ref)
        if node is None:
            shown = ref if not isinstance(ref, str) or len(ref) <= 64 else ref[:61] + "..."
            raise ApiError(f"unknown node {shown!r} (a node's name, or its id as a number; known: "
                           f"{', '.join(n.name for n in self.registry.all()) or 'none yet'})")
        return node

    def _req_calibrate(self, request: dict[str, Any]) -> dict[str, Any]:
        node = self._node_from(request)
        with self._pipeline:
            self._calibrate(node)
        return {"node": node.name, "seconds": self.engine(node.node_id).settings.calibration}

    def _calibrate(self, node: Node) -> None:
        view = self._views.get(node.node_id) or self._view(node.node_id)
        view.engine.calibrate(view.clock or 0.0)
        view.flags = view.flags._replace(calibrating=True)
        self._publish_state(node.node_id, time.time())

    def _on_set(self, msg: Message) -> None:
        name = msg.topic.split("/")[-2]
        try:
            body = parse_json(msg.payload)
        except PayloadError as exc:
            log.warning("ignored %s: %s", msg.topic[:200], exc)
            return
        node = self.registry.by_name(name)
        if node is None:
            log.warning("ignored %s: no node named %r", msg.topic[:200], name[:64])
        elif body.get("calibrate") is True:
            with self._pipeline:
                self._calibrate(node)
            log.info("calibrating %s: keep the room empty for %.0f s", name,
                     self.engine(node.node_id).settings.calibration)
        elif any(key in body for key in THRESHOLD_RANGES):
            self._set_thresholds(node, body)

    def _set_thresholds(self, node: Node, body: dict[str, Any]) -> None:
        """Thresholds from `/set` (HA number entities): checked like config, kept until restart."""
        with self._pipeline:
            settings = self.engine(node.node_id).settings
            for key, (lo, hi) in THRESHOLD_RANGES.items():
                if key not in body:
                    continue
                value = body[key]
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
                    log.warning("ignored %s for %s: %r is not a number %g..%g", key, node.name, value, lo, hi)
                    continue
                setattr(settings, key, float(value))
            if settings.exit_ratio > settings.enter_ratio:
                log.warning("%s: exit_ratio %.2f above enter_ratio %.2f; using enter_ratio for both",
                            node.name, settings.exit_ratio, settings.enter_ratio)
                settings.exit_ratio = settings.enter_ratio
            self._publish_state(node.node_id, time.time())

    def _clear(self, node: Node) -> None:
        for topic in (self.topics.node(node.name), self.topics.node_availability(node.name)):
            self.ctx.mqtt.publish(topic, b"", qos=1, retain=True)
        for key in HOME_STATE_KEYS:
            self.ctx.states.remove(names.node_entity_id("binary_sensor", node.name, key))

    def _new_name(self, name: Any, node_id: int | None) -> str:
        """A name a node may take: valid everywhere it is used, and not another node's."""
        try:
            names.check_node_name(name)
        except names.InvalidName as exc:
            raise ApiError(f"the new name must be {exc}") from None
        holder = self.registry.by_name(name)
        if holder is not None and holder.node_id != node_id:
            raise ApiError(f"a node is already named {name!r}")
        return name

    def _req_rename(self, request: dict[str, Any]) -> dict[str, Any]:
        node = self._node_from(request, "from")
        new = self._new_name(request.get("to"), node.node_id)
        old = node.name
        if new != old:
            self._rename(node, new)
        return {"from": old, "to": new}

    def _rename(self, node: Node, new: str) -> None:
        with self._pipeline:
            self._clear(node)
            self.registry.rename(node.node_id, new)
            self._availability(node)
            self._changed(node)
            self._publish_state(node.node_id, time.time())

    def _req_remove(self, request: dict[str, Any]) -> dict[str, Any]:
        node = self._node_from(request)
        with self._pipeline:
            self._clear(node)
            self.registry.remove(node.node_id)
            self._views.pop(node.node_id, None)
            self.directory.remove(node.node_id)
        return {"node": node.name}

    def _req_privacy(self, request: dict[str, Any]) -> dict[str, Any]:
        node = self._node_from(request)
        try:
            cls = self.gate.demote(node.node_id, request.get("class"))
        except PrivacyError as exc:
            raise ApiError(str(exc)) from None
        with self._pipeline:  # the state is redacted as it is built: publish it at the new class
            self._changed(node)
            self._publish_state(node.node_id, time.time())
        return {"node": node.name, "privacy_class": cls.label}

    def _req_register(self, request: dict[str, Any]) -> dict[str, Any]:
        """Name, room and class for a node id, seen yet or not (`ruview-node provision --register`).

        Applies until the bridge restarts; the tool also writes config.yaml to keep it.
        Everything is checked before anything changes: a refused request changes nothing.
        """
        node_id, name, room = request.get("node_id"), request.get("name"), request.get("room")
        if not isinstance(node_id, int) or isinstance(node_id, bool) or not 1 <= node_id <= 255:
            raise ApiError('"node_id" must be a number 1..255')
        if name is not None:
            name = self._new_name(name, node_id)
        if room is not None and (not isinstance(room, str) or len(room) > 64):
            raise ApiError('"room" must be text of at most 64 characters')
        cls = None
        if request.get("privacy_class") is not None:
            try:
                cls = self.gate.check_demotion(node_id, request["privacy_class"])
            except PrivacyError as exc:
                raise ApiError(str(exc)) from None
            self.gate.demote(node_id, cls)
        node = self.registry.configure(node_id, name=name, room=room)
        if node is not None:
            if name and name != node.name:
                self._rename(node, name)
            else:
                with self._pipeline:
                    self._changed(node)
                    self._publish_state(node_id, time.time())
        return {"node_id": node_id, "name": (node.name if node else name) or names.default_node_name(node_id),
                "room": room, "privacy_class": (cls or self.gate.class_of(node_id)).label,
                "seen": node is not None}

    # ------------------------------------------------------------ reporting

    def _changed(self, node: Node) -> None:
        """Tell other features (through the node directory) what a node is now."""
        current = self.directory.get(node.node_id)
        self.directory.put(NodeInfo(node.node_id, node.name, node.room, self.gate.class_of(node.node_id),
                                    node.mode, bool(node.online), known_only=not node.heard,
                                    state=current.state if current else None,
                                    state_version=current.state_version if current else 0))

    def health(self) -> dict[str, Any]:
        # the counters are written by the UDP and serial readers under the pipeline lock: copied under
        # it too, or a source or node first heard meanwhile changes a dict while it is iterated
        with self._pipeline:
            errors = {src: dict(c) for src, c in self.errors.items()}
            per_node = {n.name: {"frames": dict(n.frames), "lost": n.lost, "reboots": n.reboots,
                                 "online": n.online} for n in self.registry.all()}
            count = len(self.registry)
        return {
            "count": count,
            "frames_per_second": round(self._fps.rate(), 1),
            "crc_errors": sum(c.get("crc", 0) for c in errors.values()),
            "udp": self.udp.stats() if self.udp else None,
            "decode_errors": errors,
            "privacy": self.gate.stats(),
            "per_node": per_node,
        }
