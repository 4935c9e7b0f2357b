"""Nodes from an earlier run: on the first session, the node states left retained under
`<base>/node/+` make their nodes known again (offline until they speak), so a restart while a
node is quiet keeps its name, room, Home Assistant entities, and a privacy demotion (privacy
rule 4). Listening stops after RETAINED_READ_SECONDS; it runs on the nodes inbox.
"""

from __future__ import annotations

import time

from bridge import names
from bridge.core.payload import PayloadError, parse_json
from bridge.extension import ExtensionContext
from bridge.mqtt.router import Message, Route
from bridge.nodes.config import NodesConfig
from bridge.nodes.pipeline import NodePipeline
from bridge.privacy import PrivacyClass

RETAINED_READ_SECONDS = 5.0  # how long after the first session retained node states are read


class RetainedNodes:
    def __init__(self, ctx: ExtensionContext[NodesConfig], pipeline: NodePipeline) -> None:
        self.ctx, self.pipeline, self.topics = ctx, pipeline, ctx.topics
        self._route: Route | None = None
        self._done = False

    def start(self) -> None:
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

    def _on_state(self, msg: Message) -> None:
        if not msg.retain or not msg.payload:
            return  # a live publish (ours, or an empty one clearing a topic)
        name = msg.topic.rsplit("/", 1)[1]
        try:
            state = parse_json(msg.payload)
        except PayloadError:
            return
        node_id = state.get("node_id")
        if not names.is_node_id(node_id) or state.get("name") != name or not names.is_node_name(name):
            return
        owner = state.get("bridge")
        if self.topics.share_group and owner != self.topics.instance:
            return  # another instance's node
        pipeline = self.pipeline
        with pipeline.lock:
            known = pipeline.registry.get(node_id)
            if known is not None and known.heard:
                return  # it spoke already in this run
            taken = pipeline.registry.by_name(name)
            room = state.get("room")
            node = pipeline.registry.remember(node_id, time.time(),
                                              name=name if taken is None or taken.node_id == node_id else None,
                                              room=room if isinstance(room, str) else None)
            if state.get("privacy_class") == "restricted" and \
                    pipeline.gate.class_of(node_id) < PrivacyClass.RESTRICTED:
                pipeline.gate.demote(node_id, PrivacyClass.RESTRICTED)
            if node.name != name:  # renamed in config while the bridge was down: clear the old topics
                for topic in (self.topics.node(name), self.topics.node_availability(name)):
                    self.ctx.mqtt.publish(topic, b"", qos=1, retain=True)
            pipeline.changed(node)
