"""Nodes from a version before the state store: once, on the first session, the node states it
left retained under `<base>/node/+` are read, checked like any request (names, rooms, ids), and
kept in the store (settings.py), which is the source of truth from then on. Retained state is a
mirror for others: after this one migration, whatever is retained there is never read again,
so a stranger's retained garbage cannot become a node. Listening stops after
RETAINED_READ_SECONDS; it runs on the nodes inbox.
"""

from __future__ import annotations

import time

from bridge import names
from bridge.core.payload import PayloadError, parse_json
from bridge.core.store import StoreError
from bridge.extension import ExtensionContext
from bridge.mqtt.router import Message, Route
from bridge.nodes.config import NodesConfig
from bridge.nodes.pipeline import NodePipeline
from bridge.nodes.settings import NodeSettings
from bridge.privacy import PrivacyClass

RETAINED_READ_SECONDS = 5.0  # how long after the first session retained node states are read
MIGRATED = "retained-state-migrated"  # the store's mark that the migration ran


class RetainedNodes:
    def __init__(self, ctx: ExtensionContext[NodesConfig], pipeline: NodePipeline, stored: set[int]) -> None:
        self.ctx, self.pipeline, self.topics = ctx, pipeline, ctx.topics
        self.stored = stored  # node ids the store knows: it wins
        self._route: Route | None = None
        self._done = False

    def start(self) -> None:
        if self.ctx.store.get(MIGRATED) is None:
            self.ctx.mqtt.on_session(self._read)

    def _read(self) -> None:
        """On the first session, learn the nodes an earlier run left retained (then stop listening)."""
        if self._route is not None or self._done:
            return
        self._route = self.ctx.mqtt.subscribe(self.topics.node_state_filter, self._on_state, no_local=True)
        self.ctx.call_later(RETAINED_READ_SECONDS, self._stop_reading)

    def _stop_reading(self) -> None:
        if self._route is not None:
            self.ctx.mqtt.unsubscribe(self._route)
            self._route = None
            self._done = True
            try:
                self.ctx.store.put(MIGRATED, time.time())
            except StoreError as exc:
                self.ctx.log.error("retained node states read, but not marked as read: %s", exc)

    def _on_state(self, msg: Message) -> None:
        if not msg.retain or not msg.payload:
            return  # a live publish (ours, or an empty one clearing a topic)
        name = msg.topic.rsplit("/", 1)[1]
        try:
            state = parse_json(msg.payload)
        except PayloadError:
            return
        node_id = state.get("node_id")
        if not names.is_node_id(node_id) or state.get("name") != name or not names.is_node_name(name) \
                or node_id in self.stored:
            return
        owner = state.get("bridge")
        if self.topics.share_group and owner != self.topics.instance:
            return  # another instance's node
        room = state.get("room")
        try:
            room = names.check_room(room) if room is not None else None
        except names.InvalidName:
            room = None  # checked like a request's room: no control or direction characters, 64 at most
        pipeline = self.pipeline
        with pipeline.lock:
            known = pipeline.registry.get(node_id)
            if known is not None and known.heard:
                return  # it spoke already in this run
            configured = self.ctx.config.devices.get(node_id)
            if configured is not None and configured.room is not None:
                room = None  # config.yaml says where it is: retained state never overrides the operator
            holder = pipeline.registry.name_holder(name)
            keep_name = name if holder in (None, node_id) and not (configured and configured.name) else None
            restricted = state.get("privacy_class") == "restricted" and \
                pipeline.gate.class_of(node_id) < PrivacyClass.RESTRICTED
            changes = {"name": keep_name, "room": room, "privacy_class": "restricted" if restricted else None}
            try:
                NodeSettings(self.ctx.store, self.ctx.config).save(
                    node_id, **{k: v for k, v in changes.items() if v is not None})
            except StoreError as exc:
                self.ctx.log.error("node %d from the retained state: not kept (%s)", node_id, exc)
            node = pipeline.registry.remember(node_id, time.time(), name=keep_name, room=room)
            if restricted:
                pipeline.gate.demote(node_id, PrivacyClass.RESTRICTED)
            if node.name != name:  # renamed in config while the bridge was down: clear the old topics
                for topic in (self.topics.node(name), self.topics.node_availability(name)):
                    self.ctx.mqtt.publish(topic, b"", qos=1, retain=True)
            pipeline.changed(node)
