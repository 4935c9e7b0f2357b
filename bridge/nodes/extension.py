"""The nodes feature: ingest (UDP, serial) into the pipeline, the beat, and what users ask.

The parts, one idea each: `pipeline.py` (datagrams in, gated state, availability and events
out; owns the pipeline lock), `control.py` (request verbs and `/set`), `recovery.py` (nodes an
earlier run left retained). This module wires them: the ingest threads call the pipeline; the
beat and the offline check are timers on this extension's inbox, as are the requests.

Presence comes from the per-node PresenceEngine (presence.py) fed with the
feature-state presence_score (or the vitals score for nodes that send no
feature state); the firmware's own presence flag is not trusted.

A node the bridge knows — configured in `nodes.devices`, or with retained state
under `<base>/node/+` from an earlier run — exists from the start (offline until
it speaks), so a restart while it is quiet keeps its Home Assistant entities;
only `node/remove`, a rename or the privacy class clears them. A node that goes
offline has its home-state entities read `unavailable`, as HA's do; at a clean stop
every node goes offline, before the bridge does.
"""

from __future__ import annotations

import time
from typing import Any

from bridge.core.rate import RateMeter
from bridge.extension import Extension, ExtensionContext
from bridge.nodes.config import NodesConfig
from bridge.nodes.control import NodeControl
from bridge.nodes.pipeline import NodePipeline
from bridge.nodes.recovery import RetainedNodes
from bridge.nodes.registry import NodeRegistry
from bridge.nodes.serial_ingest import SerialIngest
from bridge.nodes.udp import UdpIngest
from bridge.privacy import PrivacyGate

OFFLINE_CHECK = 1.0  # seconds between looks for nodes gone silent (at most a quarter of offline_after)


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
        devices = cfg.devices
        gate = PrivacyGate(cfg.privacy_class, {n: d.privacy_class for n, d in devices.items()
                                               if d.privacy_class is not None})
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
        NodeControl(ctx, self.pipeline).start()
        started = time.time()
        for node_id in devices:
            self.pipeline.changed(self.registry.remember(node_id, started))
        RetainedNodes(ctx, self.pipeline).start()
        if self.udp:
            self.udp.start()
        for link in self.serial:
            link.start()
        clock = time.monotonic()
        self._beat_period = min(cfg.publish_interval, cfg.max_delay)
        self._check_period = min(OFFLINE_CHECK, cfg.offline_after / 4)  # offline within a quarter of offline_after
        ctx.call_later(0.0, lambda: self._beat(clock))
        ctx.call_later(0.0, lambda: self._check(clock))

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
        self.ctx.call_later(following - time.monotonic(), lambda: self._beat(following))
        self.pipeline.flush_due(time.time())

    def _check(self, due: float) -> None:
        """Mark nodes gone silent offline."""
        following = _next(due, self._check_period, time.monotonic())
        self.ctx.call_later(following - time.monotonic(), lambda: self._check(following))
        self.pipeline.mark_silent_offline(time.time())

    def health(self) -> dict[str, Any]:
        errors, per_node, count = self.pipeline.counters()
        return {
            "count": count,
            "frames_per_second": round(self._fps.rate(), 1),
            "crc_errors": sum(c.get("crc", 0) for c in errors.values()),
            "udp": self.udp.stats() if self.udp else None,
            "decode_errors": errors,
            "privacy": self.pipeline.gate.stats(),
            "per_node": per_node,
        }
