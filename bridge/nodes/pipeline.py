"""The node pipeline: datagrams in, privacy-gated node state, availability and events out.

Per datagram (on the udp-ingest or serial thread, never paho's): decode (CRC) -> registry
(loss, reboots, liveness, two boards with one id) -> privacy gate -> the node's state
(nodestate.py: latest frames, presence engine) -> events. State goes out retained on
`<base>/node/<name>` at once when presence, occupancy, motion, fall or calibrating change;
every node's other changes go out together on the beat (`flush_due`), which the extension runs
on its inbox. The node list (`<base>/bridge/nodes`, retained) goes out on the beat too, when a
node came, went, or changed its identity or availability; never for a state alone. At a clean
stop every node's availability goes `offline` (`all_offline`), before the bridge's own.

Lock ownership: `lock` is this pipeline's, and guards everything it holds (registry, views,
counters). The ingest threads take it per batch; the nodes inbox takes it for the beat, the
offline check, and each change a request or a retained state asks for (every public method
below takes it). Nothing else reads the pipeline's state: other features see the node
directory (core/directory.py), already gated.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import Counter, defaultdict
from datetime import datetime, timezone
from typing import Any, Callable

from bridge import names
from bridge.core.directory import NodeDirectory, NodeInfo
from bridge.core.payload import dumps
from bridge.extension import ExtensionContext
from bridge.nodes.codec import DecodeError, decode
from bridge.nodes.config import NodesConfig
from bridge.nodes.nodestate import URGENT, Flags, NodeState
from bridge.nodes.presence import THRESHOLD_RANGES, PresenceEngine, PresenceSettings
from bridge.nodes.registry import RETURN_WINDOW, Node, NodeRegistry
from bridge.nodes.reporting import ReportingPolicy
from bridge.nodes.schedule import ExpectedHours
from bridge.nodes.udp import Batch
from bridge.privacy import PrivacyGate

log = logging.getLogger("bridge.nodes")

HOME_STATE_KEYS = ("presence", "occupancy", "motion")  # binary_sensor.<name>_<key> in home state
APP_VERSION = re.compile(r"App version:\s+(\S{1,64})")  # ESP-IDF's boot log: "I (31) app_init: App version:  v1.2"
CLOCK_FIELDS = ("last_seen", "frames")  # change with every frame: published, but not a reason to publish
SAY_EVERY = 10.0  # at most one console line per node per this many seconds about its presence


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat()


class NodePipeline:
    def __init__(self, ctx: ExtensionContext[NodesConfig], gate: PrivacyGate, registry: NodeRegistry,
                 directory: NodeDirectory) -> None:
        self.ctx, self.cfg, self.topics = ctx, ctx.config, ctx.topics
        self.gate, self.registry, self.directory = gate, registry, directory
        self.lock = threading.RLock()
        self.errors: dict[str, Counter[str]] = defaultdict(Counter)  # source ip -> reason -> count
        self.views: dict[int, NodeState] = {}
        self._urgent: set[int] = set()
        self._expected = {n: ExpectedHours(d.expected_hours) for n, d in self.cfg.devices.items()
                          if d.expected_hours}
        self._serial_node: dict[str, int] = {}  # serial link label -> node id last seen on it
        self._serial_firmware: dict[str, str] = {}  # serial link label -> version its boot log said
        self._serial_log = {label: link.log for label, link in self.cfg.serial.items()}  # publish its lines?
        self._said: dict[int, tuple[float, int]] = {}  # node id -> (last presence line, lines held back)
        self._list_dirty = True  # <base>/bridge/nodes is due (the first beat publishes the list, [] too)
        # Nothing wakes when nothing is due: a beat or offline check that found nothing to do leaves
        # here what starts it again (flush_due, mark_silent_offline), and the first frame or change
        # after that calls it, once.
        self._beat_waker: Callable[[], object] | None = None
        self._check_waker: Callable[[], object] | None = None

    # ------------------------------------------------------------ the hot path (ingest threads)

    def handle(self, batch: Batch, now: float | None = None) -> None:
        """Run a batch through the pipeline; UDP and serial readers may call it concurrently.

        The loop is the per-frame path (100,000 frames/s and more), so what it calls on every frame
        is bound once per batch and what happens rarely (a node joining, coming back, rebooting)
        is in `_heard`."""
        with self.lock:
            now = time.time() if now is None else now
            errors, views, observe, admit = self.errors, self.views, self.registry.observe, self.gate.admit
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
            if self.registry.changed:
                self._conflicts()
            if self._beat_waker is not None and batch:
                self._wake_beat()

    def handle_serial(self, batch: Batch) -> None:
        with self.lock:
            for data, (source, _) in batch:  # deframed, so decoding cannot fail here
                self._serial_node[source.split(":", 1)[1]] = decode(data).node_id
        self.handle(batch)
        if self._serial_firmware:
            with self.lock:
                for label, version in list(self._serial_firmware.items()):
                    if label in self._serial_node:
                        del self._serial_firmware[label]
                        self._firmware(self._serial_node[label], version)

    def log_line(self, label: str, text: str) -> None:
        """A node's console line from its serial link: its firmware version from the boot log, and
        the line on `<base>/node/<name>/log` when the link says `log: true`."""
        found = APP_VERSION.search(text) if "App version" in text else None
        with self.lock:
            node_id = self._serial_node.get(label)
            if found:
                if node_id is None:
                    self._serial_firmware[label] = found.group(1)  # said once its first frame names it
                else:
                    self._firmware(node_id, found.group(1))
            node = self.registry.get(node_id if node_id is not None else -1)
        if node is not None and self._serial_log.get(label, True):
            self.ctx.mqtt.publish(self.topics.node_log(node.name), dumps(
                {"line": text, "level": text[:1] if text[:2] in ("E ", "W ", "I ", "D ", "V ") else None}),
                qos=0)

    def _firmware(self, node_id: int, version: str) -> None:
        node = self.registry.set_firmware(node_id, version)
        if node is not None:
            log.info("node %s (%d) runs firmware %s", node.name, node_id, version)
            self._list_changed()

    def _conflicts(self) -> None:
        """Say once that two boards send with one node id: the event, a warning naming both."""
        changed, self.registry.changed = self.registry.changed, []
        for node in changed:
            first, second = node.conflict_addresses
            where = f"from {first} and {second}" if first != second else f"both from {first}"
            how = ("their frames interleave" if first != second
                   else "their counters and clocks jump back and forth")
            log.warning("node %s (%d): two boards send as node id %d, %s (%s); its presence, reboots and "
                        "loss are unreliable until one stops. Give one board another id: "
                        "ruview-node provision --node-id <1..255>", node.name, node.node_id, node.node_id,
                        where, how)
            self._event(node, "node_conflict", {"node_id": node.node_id, "addresses": sorted({first, second}),
                                                "reason": how})
            if self._check_waker is not None:  # its end is something to look for
                waker, self._check_waker = self._check_waker, None
                waker()
            self._list_changed()

    def _heard(self, node: Node, is_new: bool, rebooted: bool) -> None:
        """A node heard for the first time in this run, again after silence, or after a reboot."""
        if is_new or not node.online:
            node.online = True
            if self._check_waker is not None:  # a node online: its silence is something to look for
                waker, self._check_waker = self._check_waker, None
                waker()
            self._availability(node)
            if is_new:
                if not node.remembered:
                    self.ctx.mqtt.publish(self.topics.bridge_event, dumps(
                        {"type": "node_joined", "data": node.summary()}), qos=0)
                    log.info("node %s (%d) joined from %s", node.name, node.node_id, node.address)
                self._changed(node)
        if rebooted:
            self._event(node, "node_rebooted", {"reboots": node.reboots})

    def _edges(self, node: Node, view: NodeState, before: Flags, after: Flags, now: float) -> None:
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
            self._say_presence(node, bool(after.presence), now)
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

    def _view(self, node_id: int) -> NodeState:
        device = self.cfg.device(node_id)
        settings = PresenceSettings.merged(self.cfg.presence.model_dump(), device.overrides())
        policy = ReportingPolicy.merged(self.cfg.reporting.model_dump(), device.reporting.model_dump())
        view = self.views[node_id] = NodeState(PresenceEngine(settings), policy)
        return view

    def engine(self, node_id: int) -> PresenceEngine:
        with self.lock:
            return (self.views.get(node_id) or self._view(node_id)).engine

    # ------------------------------------------------------------ the beat and the offline check (inbox)

    def flush_due(self, now: float, idle: Callable[[], object] | None = None) -> bool:
        """The beat: every node heard since the last one publishes its state if what it reports
        changed (reporting.py) or its refresh is due; the node list if it changed.

        True if a node's state is still pending (a next beat is due). Otherwise `idle`, if given, is
        kept and called once by the first frame or change to come: no beat until then."""
        with self.lock, self.ctx.mqtt.burst():
            pending = False
            for node_id, view in list(self.views.items()):
                if view.dirty_since is not None:
                    self._publish_state(node_id, now, force=False)
                    pending = pending or view.dirty_since is not None
            if self._list_dirty:
                self._publish_list()
            if not pending and idle is not None:
                self._beat_waker = idle
            return pending

    def _list_changed(self) -> None:
        self._list_dirty = True
        self._wake_beat()

    def _wake_beat(self) -> None:
        waker, self._beat_waker = self._beat_waker, None
        if waker is not None:
            waker()

    def mark_silent_offline(self, now: float, idle: Callable[[], object] | None = None) -> float | None:
        """Nodes silent for offline_after go offline; two-board conflicts without a return end.

        Returns the seconds until the next node could go silent or conflict end; None when no node
        is online or in conflict, and then `idle`, if given, is kept and called once when a node
        comes online or a conflict starts: no check until then."""
        with self.lock:
            self._mark_silent_offline(now)
            due = [node.last_seen + self.cfg.offline_after for node in self.registry.all() if node.online is not False]
            due += [node._last_return + RETURN_WINDOW for node in self.registry.all() if node.conflict]
            if not due:
                if idle is not None:
                    self._check_waker = idle
                return None
            return max(0.01, min(due) - now + 0.001)  # (offline once silent for *more* than offline_after)

    def _mark_silent_offline(self, now: float) -> None:
        for node in self.registry.all():
            if node.online is not False and now - node.last_seen > self.cfg.offline_after:
                view = self.views.get(node.node_id)
                if view is not None and view.dirty_since is not None:
                    self._publish_state(node.node_id, now)  # its last frames' state, before it goes
                node.online = False
                self._availability(node)
                if node.heard:
                    log.info("node %s (%d) went offline: nothing heard for %.0f s", node.name,
                             node.node_id, now - node.last_seen)
        for node in self.registry.end_conflicts(now):
            log.info("node %s (%d): one board again (from %s); its reboots and loss count again",
                     node.name, node.node_id, node.address)
            self._list_changed()
        self._wake_beat()

    def all_offline(self) -> None:
        """At a clean stop: every node's availability `offline`, and the list saying so."""
        with self.lock, self.ctx.mqtt.burst():
            for node in self.registry.all():
                if node.online is not False:  # online, or remembered (an earlier run may have left it online)
                    node.online = False
                    self._availability(node)
            self._publish_list()

    # ------------------------------------------------------------ changes asked for (inbox)

    def calibrate(self, node: Node) -> float:
        """Start calibrating; the seconds it takes."""
        with self.lock:
            view = self.views.get(node.node_id) or self._view(node.node_id)
            view.engine.calibrate(view.clock or 0.0)
            view.flags = view.flags._replace(calibrating=True)
            self._publish_state(node.node_id, time.time())
            return view.engine.settings.calibration

    def set_thresholds(self, node: Node, body: dict[str, Any]) -> None:
        """Thresholds from `/set` (HA number entities): checked like config, kept until restart."""
        with self.lock:
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

    def rename(self, node: Node, new: str) -> None:
        with self.lock:
            self._clear(node)
            self.registry.rename(node.node_id, new)
            self._availability(node)
            self._changed(node)
            self._publish_state(node.node_id, time.time())

    def remove(self, node: Node) -> None:
        with self.lock:
            self._clear(node)
            self.registry.remove(node.node_id)
            self.views.pop(node.node_id, None)
            self.directory.remove(node.node_id)
            self._list_changed()

    def set_expected_hours(self, node_id: int, hours: list[str] | None) -> None:
        """When occupancy is expected for a node (None: always); said to other features at once."""
        with self.lock:
            if hours:
                self._expected[node_id] = ExpectedHours(hours)
            else:
                self._expected.pop(node_id, None)
            node = self.registry.get(node_id)
            if node is not None:
                self._changed(node)

    def republish(self, node: Node) -> None:
        """Say again what a node is, and its state (after its class or room changed)."""
        with self.lock:
            self._changed(node)
            self._publish_state(node.node_id, time.time())

    def changed(self, node: Node) -> None:
        with self.lock:
            self._changed(node)

    # ------------------------------------------------------------ what goes out (caller holds the lock)

    def _publish_state(self, node_id: int, now: float, *, force: bool = True) -> None:
        """The node's state as its reporting policy says it (retained); unless `force`, only when
        that changed or the refresh is due (HA's expire_after, a fresh last_seen)."""
        node, view = self.registry.get(node_id), self.views.get(node_id)
        if node is None or view is None:
            return
        fields = view.fields()
        fields["rssi"], fields["packet_loss"] = node.rssi, node.packet_loss
        fields = view.reporter.report(self.gate.redact(node_id, fields), now)
        state = {"node_id": node_id, "name": node.name, "room": node.room,
                 "privacy_class": self.gate.class_of(node_id).label, **fields,
                 **({"bridge": self.topics.instance} if self.topics.share_group else {}),
                 "thresholds": {k: getattr(view.engine.settings, k) for k in THRESHOLD_RANGES}}
        if not force and state == view.published and now - view.published_at < view.reporter.policy.refresh:
            return  # still pending: its clock fields go out when the refresh is due, or it falls silent
        view.dirty_since = None
        view.published, view.published_at = dict(state), now
        state["last_seen"], state["frames"] = _iso(node.last_seen), dict(node.frames)
        # latest wins (docs/mqtt-api.md): QoS 0, as a newer state supersedes it; the client keeps the
        # newest retained state and sends it again after a reconnect, so none waits in the outbox
        self.ctx.mqtt.publish(self.topics.node(node.name), dumps(state), qos=0, retain=True)
        for key in HOME_STATE_KEYS:
            if fields.get(key) is not None:
                self.ctx.states.set(names.node_entity_id("binary_sensor", node.name, key),
                                    "on" if fields[key] else "off", {"node_id": node_id, "room": node.room})
        self.directory.update(node_id, state=state)

    def _availability(self, node: Node) -> None:
        self._list_changed()
        view = self.views.get(node.node_id)
        if view is not None:
            view.published = None  # its state goes out again on the next beat (home state back from unavailable)
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

    def _clear(self, node: Node) -> None:
        for topic in (self.topics.node(node.name), self.topics.node_availability(node.name)):
            self.ctx.mqtt.publish(topic, b"", qos=1, retain=True)
        for key in HOME_STATE_KEYS:
            self.ctx.states.remove(names.node_entity_id("binary_sensor", node.name, key))

    def _publish_list(self) -> None:
        """`<base>/bridge/nodes`: every node, what it is and whether it is online (retained)."""
        self._list_dirty = False
        self.ctx.mqtt.publish(self.topics.bridge_nodes, dumps(
            [self._listed(n) for n in sorted(self.registry.all(), key=lambda n: n.node_id)]), qos=1, retain=True)

    def _listed(self, node: Node) -> dict[str, Any]:
        return {"node_id": node.node_id, "name": node.name, "room": node.room,
                "privacy_class": self.gate.class_of(node.node_id).label, "online": bool(node.online),
                "last_seen": _iso(node.last_seen) if node.heard else None,
                "address": node.address if node.heard else None, "firmware": node.firmware,
                "conflict": node.conflict}

    def _changed(self, node: Node) -> None:
        """Tell other features (through the node directory) what a node is now."""
        self._list_changed()
        current = self.directory.get(node.node_id)
        hours = self._expected.get(node.node_id)
        self.directory.put(NodeInfo(node.node_id, node.name, node.room, self.gate.class_of(node.node_id),
                                    node.mode, bool(node.online), known_only=not node.heard,
                                    offline_after=self.cfg.offline_after,
                                    expected_hours=tuple(hours.text) if hours else (),
                                    state=current.state if current else None))

    # ------------------------------------------------------------ reporting

    def counters(self) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, Any]], int]:
        """Decode errors by source, per-node counters, node count: copied under the lock, as the
        ingest threads write them."""
        with self.lock:
            errors = {src: dict(c) for src, c in self.errors.items()}
            per_node = {n.name: {"frames": dict(n.frames), "lost": n.lost, "reboots": n.reboots,
                                 "online": n.online, "conflicts": n.conflicts, "conflict": n.conflict}
                        for n in self.registry.all()}
            return errors, per_node, len(self.registry)
