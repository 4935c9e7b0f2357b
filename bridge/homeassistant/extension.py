"""Home Assistant: announce the bridge and its nodes, and keep the announcements true.

- On the first MQTT session (however late the broker comes up), collect the
  retained configs under the discovery prefix for `collect_seconds`, then
  clear those that are ours (our origin and our bridge's availability topic)
  and no longer expected (removed nodes, forbidden or renamed entities), and
  announce. A session lost during collection starts collection again.
- Nodes come from the node directory: a snapshot of every node at start, then
  each change; one that is added, demoted or removed is re-announced or
  cleared; a rename clears, waits `rename_pause` so HA forgets the entity
  (else it makes `_2` duplicates), then re-announces.
- When HA comes back (`homeassistant/status` = `online`) configs and then
  states are re-published after a random few seconds, as HA's docs ask.

Everything here runs on the extension's own inbox, one call at a time, so the
ledger of published configs needs no lock; a full announcement is paced with
timers instead of sleeps, so the inbox keeps serving in between.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

import orjson

from bridge.core.directory import NodeChange, NodeInfo
from bridge.core.eventdata import PluginEntities
from bridge.core.payload import dumps
from bridge.extension import Extension, ExtensionContext
from bridge.homeassistant.config import HomeAssistantConfig
from bridge.homeassistant.devices import OUR_ORIGIN, DeviceRegistry
from bridge.homeassistant.entities import expand
from bridge.homeassistant.discovery import (bridge_configs, bridge_key, device_triggers, node_configs,
                                            node_key, plugin_configs, plugin_key)
from bridge.mqtt.router import Message
from bridge.topics import DiscoveryTopics

PACE_SECONDS = 0.1  # between nodes in a full announcement: about 200 configs/s


def _digest(payload: bytes) -> bytes:
    """What the ledger keeps of a config: enough to tell a change, 16 bytes instead of ~700."""
    return hashlib.blake2b(payload, digest_size=16).digest()



def expire_after(node: NodeInfo) -> int:
    """Seconds HA keeps a node's measurements before it shows them unavailable: two offline spans."""
    return int(max(60, 2 * node.offline_after))

class HomeAssistantExtension(Extension[HomeAssistantConfig]):
    name = "homeassistant"
    Config = HomeAssistantConfig

    def start(self, ctx: ExtensionContext[HomeAssistantConfig]) -> None:
        self.ctx = ctx
        self.cfg = cfg = ctx.config
        self.topics = ctx.topics
        self.dt = DiscoveryTopics(cfg.discovery_prefix)
        self.mode = cfg.mode
        self.devices = DeviceRegistry(ctx, cfg) if cfg.discover_devices else None
        self.nodes: dict[int, NodeInfo] = {}
        self.published: dict[str, bytes] = {}  # config topic -> digest of the payload we hold retained
        self._found: dict[str, bytes] = {}  # retained configs seen while collecting
        self._collecting = True
        self._collect_routes: list = []
        self._session = 0
        self._pending: list[int | str | None] = []  # paced announcement: node ids, plugin domains, None = the bridge
        self._pacing = False
        self._force = self._then_states = False
        ctx.add_health("homeassistant", self.health)
        ctx.mqtt.subscribe(cfg.status_topic, self._on_ha_status)
        if self.devices:
            self.devices.start()
        self.plugin_entities: dict[str, tuple[str, list[dict[str, Any]]]] = {}  # domain -> (title, entities)
        ctx.nodes.watch(self._on_node, states=False)
        ctx.listen(PluginEntities, self._on_plugin_entities)
        ctx.mqtt.on_session(self._on_session)

    # ------------------------------------------------------------ expected configs

    def expected(self, node_id: int | None = None) -> dict[str, dict[str, Any]]:
        """Every config we should hold, or only one node's."""
        out = bridge_configs(self.dt, self.mode, self.topics) if node_id is None else {}
        for node in self.nodes.values() if node_id is None else filter(None, [self.nodes.get(node_id)]):
            out.update(self._node_configs(node))
        if node_id is None:
            for domain in self.plugin_entities:
                out.update(self._plugin_configs(domain))
        return out

    def _plugin_configs(self, domain: str) -> dict[str, dict[str, Any]]:
        title, entities = self.plugin_entities.get(domain, ("", []))
        return plugin_configs(self.dt, self.mode, self.topics, domain, title, entities)

    def _node_configs(self, node: NodeInfo) -> dict[str, dict[str, Any]]:
        return {**node_configs(self.dt, self.mode, self.topics, node, expire_after(node)),
                **device_triggers(self.dt, self.topics, node)}

    def _sync(self, node_id: int | str | None = None, *, force: bool = False) -> None:
        """Bring one node's configs (with None the bridge's own; with a str, a plugin's) in line."""
        if isinstance(node_id, str):
            mine, expected = plugin_key(self.topics, node_id), self._plugin_configs(node_id)
        elif node_id is None:
            mine, expected = bridge_key(self.topics), bridge_configs(self.dt, self.mode, self.topics)
        else:
            node = self.nodes.get(node_id)
            mine, expected = node_key(self.topics, node_id), self._node_configs(node) if node else {}
        self._apply(mine, expected, force)

    def _apply(self, mine: str, expected: dict[str, dict[str, Any]], force: bool) -> None:
        """Publish what one device (key `mine`) should have, clear what it should not."""
        payloads = {t: dumps(c) for t, c in expected.items()}
        for topic in [t for t in self.published if self.dt.owner_key(t) == mine and t not in payloads]:
            self._clear(topic)
        for topic, payload in payloads.items():
            digest = _digest(payload)
            if force or self.published.get(topic) != digest:
                self.published[topic] = digest
                # not kept by the client: after a reconnect _on_session announces again
                self.ctx.mqtt.publish(topic, payload, qos=1, retain=True, cache=False)

    def _announce_all(self, *, force: bool = False, then_states: bool = False) -> None:
        """Announce everything, a node at a time.

        Paced: a burst of thousands of QoS 1 configs, and the CPU to build them,
        would hold node state back on the one connection (measured with 100
        nodes at 10 Hz: p99 state latency 1.3 s in one burst).
        """
        self._pending = [None, *sorted(self.nodes), *sorted(self.plugin_entities)]
        self._force, self._then_states = force, then_states
        if not self._pacing:
            self._pacing = True
            self._announce_next()

    def _announce_next(self) -> None:
        if not self._pending:
            then_states, self._pacing, self._force, self._then_states = self._then_states, False, False, False
            if then_states:
                self.ctx.mqtt.republish_retained(f"{self.topics.base}/")
            return
        self._sync(self._pending.pop(0), force=self._force)
        self.ctx.call_later(PACE_SECONDS, self._announce_next)

    def _sync_in_turn(self, node_id: int) -> None:
        """One node's configs, paced with the rest: 255 nodes heard in the first second after a
        start would otherwise queue 5,000 configs at once, and the memory peak stays
        (bench/nodes_memory.py: 55-81 KB a node with discovery on, 24.5 KB paced)."""
        if node_id in self._pending:
            return
        self._pending.append(node_id)
        if not self._pacing:
            self._pacing = True
            self._announce_next()

    def _clear(self, topic: str) -> None:
        self.ctx.mqtt.publish(topic, b"", qos=1, retain=True)
        self.published.pop(topic, None)

    # ------------------------------------------------------------ start-up, on every session until done

    def _on_session(self) -> None:
        if not self._collecting:
            # a broker that restarted without persistence lost our configs: announce them again
            # (paced; unchanged configs are harmless to HA)
            self._announce_all(force=True)
            return
        self._session += 1
        if not self._collect_routes:
            self._collect_routes = [self.ctx.mqtt.subscribe(pattern, self._on_config) for pattern in
                                    (self.dt.node_component_filter, self.dt.device_filter)]
        self._found.clear()
        session = self._session
        self.ctx.call_later(self.cfg.collect_seconds, lambda: self._finish_collecting(session))

    def _finish_collecting(self, session: int) -> None:
        if session != self._session or not self._collecting:
            return  # the broker went away meanwhile; the next session collects again
        if not self.ctx.mqtt.connected:
            return
        for route in self._collect_routes:
            self.ctx.mqtt.unsubscribe(route)
        self._collect_routes = []
        self._collecting = False
        expected = self.expected()
        for topic, payload in self._found.items():
            if not self._ours(topic, payload):
                continue  # another program's entity, or another bridge instance's: never touched
            if topic in expected:
                self.published[topic] = _digest(payload)  # HA holds it already; resent only if changed
            else:
                self.ctx.log.info("clearing stale discovery config %s", topic)
                self._clear(topic)
        self._found.clear()
        self._announce_all()

    def _on_config(self, msg: Message) -> None:
        if msg.retain and self._collecting and msg.payload:
            self._found[msg.topic] = msg.payload

    def _ours(self, topic: str, payload: bytes) -> bool:
        """Under one of our device keys, with our origin, and (when several bridges share the
        broker) naming this instance's availability topic: only then may we clear it."""
        key = self.dt.owner_key(topic) or ""
        if key != bridge_key(self.topics) and not key.startswith(node_key(self.topics, 0)[:-1]):
            return False
        try:
            body = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return False
        origin = expand(body).get("origin") if isinstance(body, dict) else None
        if not (isinstance(origin, dict) and origin.get("name") == OUR_ORIGIN):
            return False
        return not self.topics.share_group or f'"{self.topics.bridge_state}"'.encode() in payload

    def _on_ha_status(self, msg: Message) -> None:
        if msg.payload.strip().lower() != b"online" or self._collecting:
            return
        delay = random.uniform(0, self.cfg.birth_delay)
        self.ctx.log.info("Home Assistant is online: re-announcing in %.1f s", delay)
        self.ctx.call_later(delay, lambda: self._announce_all(force=True, then_states=True))

    # ------------------------------------------------------------ nodes

    def _on_node(self, change: NodeChange) -> None:
        if not change.identity_changed:
            return  # availability or state only: the configs do not change
        node_id = change.node.node_id
        if change.removed:
            self.nodes.pop(node_id, None)
        else:
            self.nodes[node_id] = change.node
        if self._collecting:
            return
        if change.renamed_from and not change.removed:
            key = node_key(self.topics, node_id)
            for topic in [t for t in self.published if self.dt.owner_key(t) == key]:
                self._clear(topic)
            self.ctx.call_later(self.cfg.rename_pause, lambda: self._sync(node_id))
            return
        if change.removed:
            self._sync(node_id)
        else:
            self._sync_in_turn(node_id)

    # ------------------------------------------------------------ plugins' entities

    def _on_plugin_entities(self, announced: PluginEntities) -> None:
        domain = announced.plugin
        if announced.entities:
            self.plugin_entities[domain] = (announced.title or domain, [dict(e) for e in announced.entities])
        else:
            self.plugin_entities.pop(domain, None)
        if not self._collecting:
            self._sync(domain)

    def health(self) -> dict[str, Any]:
        return {"configs": len(self.published), "collecting": self._collecting,
                "discovered": len(self.devices.entities) if self.devices else 0,
                **({"refused": self.devices.rejected} if self.devices else {})}
