"""The nodes feature: ingest (UDP, serial) into the pipeline, the beat, and what users ask.

The parts, one idea each: `pipeline.py` (datagrams in, gated state, availability and events
out; owns the pipeline lock), `control.py` (request verbs and `/set`), `recovery.py` (nodes an
earlier run left retained). This module wires them: the ingest threads call the pipeline; the
beat and the offline check are timers on this extension's inbox, as are the requests.

Presence comes from the per-node PresenceEngine (presence.py) fed with the
feature-state presence_score (or the vitals score for nodes that send no
feature state); the firmware's own presence flag is not trusted.

A node the bridge knows — configured in `nodes.devices`, or with settings in the
state store from an earlier run (settings.py) — exists from the start (offline
until it speaks), so a restart while it is quiet keeps its Home Assistant entities;
only `node/remove`, a rename or the privacy class clears them. What was stored is
applied before ingest starts: no frame passes the gate before its node's stored
class is known. A node that goes
offline has its home-state entities read `unavailable`, as HA's do; at a clean stop
every node goes offline, before the bridge does.
"""

from __future__ import annotations

import time
from typing import Any

from bridge.core.rate import RateMeter
from bridge.core.store import StoreError
from bridge.extension import Extension, ExtensionContext
from bridge.nodes.config import NodesConfig
from bridge.nodes.control import NodeControl
from bridge.nodes.pipeline import NodePipeline
from bridge.nodes.recovery import RetainedNodes
from bridge.nodes.registry import NodeRegistry
from bridge.nodes.serial_ingest import SerialIngest
from bridge.nodes.settings import NodeSettings, baseline_record
from bridge.nodes.udp import UdpIngest
from bridge.privacy import PrivacyClass, PrivacyGate

OFFLINE_CHECK = 1.0  # seconds between looks for nodes gone silent (at most a quarter of offline_after)
DRIFT_SAVE = 600.0  # seconds between saves of baselines that drifted (a calibration is saved at once)
DRIFT_STEP = 0.05  # a drifted baseline is saved when it moved this much (relative) since it was stored


def _next(due: float, period: float, clock: float) -> float:
    """The next time on a fixed-rate schedule; after a stall, one period from now (no catch-up burst)."""
    due += period
    return due if due > clock else clock + period


class NodesExtension(Extension[NodesConfig]):
    name = "nodes"
    Config = NodesConfig

    def start(self, ctx: ExtensionContext[NodesConfig]) -> None:
        self.ctx = ctx
        self.cfg = cfg = ctx.config
        self._saved: dict[int, tuple[int, float]] = {}  # node id -> (engine.learned, baseline) last stored
        self._failed: dict[int, tuple[int, float]] = {}  # the same, for a baseline the store refused
        devices = cfg.devices
        default: int = cfg.privacy_class
        classes: dict[int, int] = {n: d.privacy_class for n, d in devices.items() if d.privacy_class is not None}
        if not ctx.store.store.complete:  # a demotion may be among what cannot be read: fail closed
            ctx.log.error("nodes: the state store could not be read whole (%s); every node is restricted until "
                          "it can be", ctx.store.store.problem or ctx.store.store.path)
            default, classes = PrivacyClass.RESTRICTED, {n: int(PrivacyClass.RESTRICTED) for n in classes}
        gate = PrivacyGate(default, classes)
        self.registry = NodeRegistry({n: {"name": d.name, "room": d.room} for n, d in devices.items()})
        self.pipeline = NodePipeline(ctx, gate, self.registry, ctx.node_directory())
        spawn = lambda name, target, stop: ctx.spawn(name, target, stop)  # noqa: E731
        self.udp = UdpIngest(cfg.udp.bind, cfg.udp.port, self.pipeline.handle, cfg.udp.queue,
                             spawn=spawn) if cfg.udp.enabled else None
        self.serial = [SerialIngest(label, link.url, link.baudrate, self.pipeline.handle_serial,
                                    self.pipeline.log_line, spawn=spawn)  # the boot log says the firmware
                       for label, link in cfg.serial.items()]
        self._fps = RateMeter(lambda: self.frames_received)
        ctx.add_health("nodes", self.health)
        ctx.add_info("nodes", lambda: [n.summary() for n in self.registry.all()])
        ctx.add_info("node_count", lambda: len(self.registry))
        self.settings = NodeSettings(ctx.store, cfg)
        NodeControl(ctx, self.pipeline, self.settings).start()
        started = time.time()
        stored = self._restore(gate, started)
        for node_id in devices:
            self.pipeline.changed(self.registry.remember(node_id, started))
        ctx.add_health("store", lambda: ctx.store.store.health())
        RetainedNodes(ctx, self.pipeline, stored).start()
        if self.udp:
            self.udp.start()
        for link in self.serial:
            link.start()
        clock = time.monotonic()
        self._beat_period = min(cfg.publish_interval, cfg.max_delay)
        self._check_period = min(OFFLINE_CHECK, cfg.offline_after / 4)  # offline within a quarter of offline_after
        ctx.call_later(0.0, lambda: self._beat(clock))
        ctx.call_later(0.0, lambda: self._check(clock))
        self._drift_saved_at = clock

    def stop(self) -> None:
        """Stop ingest, then say every node is offline: a clean stop leaves none `online`
        (this runs before the core stops MQTT, which then publishes the bridge's own `offline`)."""
        udp: UdpIngest | None = getattr(self, "udp", None)  # (after a failed start, what it got to)
        if udp is not None:
            udp.stop()
        for link in getattr(self, "serial", []):
            link.stop()
        if hasattr(self, "pipeline"):
            self.pipeline.all_offline()
            self._save_baselines(drifted=True)

    @property
    def frames_received(self) -> int:
        """Frames taken from UDP and serial so far (the console's frames/s)."""
        return (self.udp.received if self.udp else 0) + sum(link.frames for link in self.serial)

    def _beat(self, due: float) -> None:
        """Publish pending state on one beat for every node.

        The beat is min(publish_interval, max_delay) seconds, so a node publishes a non-urgent
        change at most once a beat and no change waits longer than max_delay. One beat for all
        nodes, not a schedule per node: each beat costs this inbox and the MQTT network thread
        a wakeup or two however many nodes publish on it.
        """
        following = _next(due, self._beat_period, time.monotonic())
        timer = self.ctx.call_later(following - time.monotonic(), lambda: self._beat(following))
        if not self.pipeline.flush_due(time.time(), idle=lambda: self.ctx.call_later(  # (from any thread)
                self._beat_period, lambda: self._beat(time.monotonic()))):
            timer.cancel()  # nothing pending: the next frame or change starts the beat again (issue 38)

    def _check(self, due: float) -> None:
        """Mark nodes gone silent offline."""
        following = _next(due, self._check_period, time.monotonic())
        timer = self.ctx.call_later(following - time.monotonic(), lambda: self._check(following))
        if self.pipeline.mark_silent_offline(time.time(), idle=lambda: self.ctx.call_later(
                self._check_period, lambda: self._check(time.monotonic()))) is None:
            timer.cancel()  # no node online: the next to come online starts the checks again (issue 38)
        drifted = following - self._drift_saved_at >= DRIFT_SAVE
        if drifted:
            self._drift_saved_at = following
        self._save_baselines(drifted)

    # ------------------------------------------------------------ what the state store keeps

    def _restore(self, gate: PrivacyGate, now: float) -> set[int]:
        """Apply every node's stored settings before ingest starts; the node ids restored."""
        stored = self.settings.load()
        for node_id, settings in stored.items():
            cls = settings.get("privacy_class")
            if cls is not None and gate.class_of(node_id).label != cls:
                try:
                    gate.demote(node_id, cls)  # only ever toward more privacy (rule 4)
                except ValueError:
                    pass  # config.yaml says more private now: it stands
            name = settings.get("name")
            others = {d.name for n, d in self.cfg.devices.items() if n != node_id} | \
                {s.get("name") for n, s in stored.items() if n != node_id}
            if name is not None and name in others:
                self.ctx.log.warning("node %d: its stored name %r is another node's in config.yaml now; "
                                     "rename one of them", node_id, name)
                name = None
            self.registry.configure(node_id, name=name, room=settings.get("room"), clear_room="room" in settings)
            node = self.registry.remember(node_id, now)
            engine = self.pipeline.engine(node_id)
            for key in ("enter_ratio", "exit_ratio", "hold"):
                if key in settings:
                    setattr(engine.settings, key, settings[key])
            if engine.settings.exit_ratio > engine.settings.enter_ratio:  # a config edit since made them cross
                self.ctx.log.warning("node %d: exit_ratio %.2f above enter_ratio %.2f after the config edit; "
                                     "using enter_ratio for both", node_id, engine.settings.exit_ratio,
                                     engine.settings.enter_ratio)
                engine.settings.exit_ratio = engine.settings.enter_ratio
            if "baseline" in settings:
                engine.restore(settings["baseline"]["score"])
                self._saved[node_id] = (engine.learned, settings["baseline"]["score"])
            if "expected_hours" in settings:  # null: none, whatever config.yaml says
                self.pipeline.set_expected_hours(node_id, settings["expected_hours"])
            self.pipeline.changed(node)
        return set(stored)

    def _save_baselines(self, drifted: bool) -> None:
        """Store each baseline learned since the last look (and, every DRIFT_SAVE, those that drifted)."""
        due: list[tuple[int, int, float, str]] = []
        with self.pipeline.lock:
            for node_id, view in self.pipeline.views.items():
                engine = view.engine
                baseline = engine.baseline
                if baseline is None:
                    continue
                learned, saved = self._saved.get(node_id, (0, 0.0))
                if self._failed.get(node_id, (None,))[0] == engine.learned:
                    continue  # this one could not be stored: said once already
                if engine.learned != learned:
                    due.append((node_id, engine.learned, baseline, engine.learned_by or "warm-up"))
                elif drifted and saved and abs(baseline - saved) > DRIFT_STEP * saved:
                    due.append((node_id, learned, baseline, "drift"))
        for node_id, learned, baseline, how in due:
            if self.registry.get(node_id) is None:
                continue  # removed meanwhile
            try:
                self.settings.save(node_id, baseline=baseline_record(baseline, how))
            except StoreError as exc:
                self.ctx.log.error("node %d's %s baseline was not kept: %s", node_id, how, exc)
                self._failed[node_id] = (learned, baseline)  # said once; tried again at the next calibration
                continue
            self._failed.pop(node_id, None)
            self._saved[node_id] = (learned, baseline)

    def health(self) -> dict[str, Any]:
        errors, per_node, count = self.pipeline.counters()
        return {
            "count": count,
            "frames_per_second": round(self._fps.rate(), 1),
            "crc_errors": sum(c.get("crc", 0) for c in errors.values()),
            "udp": self.udp.stats() if self.udp else None,
            "decode_errors": errors,
            "privacy": self.pipeline.gate.stats(),
            "baselines_kept": sorted(self._saved),  # node ids whose newest baseline is in the state store
            "per_node": per_node,
        }
